"""A task: examples, how they are formatted, and how answers are scored."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SoftPromptError


@dataclass(frozen=True)
class Example:
    """One formatted example. With choices it is scored by the log-likelihood of each choice."""

    text: str  # the input as the model reads it (formatted)
    choices: tuple[str, ...] = ()  # candidate continuations; empty for generation tasks
    label: int | None = None  # index of the true choice
    completion: str = ""  # the reference continuation of a generation task

    @property
    def is_choice(self) -> bool:
        return bool(self.choices)

    @property
    def target(self) -> str:
        """What the model should continue with: the true choice, or the reference completion."""
        return self.choices[self.label] if self.is_choice else self.completion


@dataclass
class Task:
    name: str
    train: list[Example]
    test: list[Example]
    description: str
    """One sentence saying what the task is; also the default text that initialises a prompt."""
    split_note: str = ""
    """How train/test were obtained (shown with every reported number)."""
    length_normalized: bool = False
    """Score choices by mean (not summed) token log-likelihood: fairer between answers of unequal length."""
    max_new_tokens: int = 64
    metadata: dict = field(default_factory=dict)
    parts: list[Task] = field(default_factory=list)
    """The tasks a multi-task training set was combined from (empty for a single task)."""

    def subtasks(self) -> list[Task]:
        """The tasks trained on together: the parts of a combined task, else the task itself."""
        return self.parts or [self]

    @property
    def label_words(self) -> tuple[str, ...]:
        """The answer choices every example shares (a classification task's labels); empty when the
        choices differ from example to example (multiple choice: copa, piqa, arc) or there are none."""
        first = self.train[0].choices
        same = all(e.choices == first for e in (*self.train, *self.test))
        return first if same else ()

    def __post_init__(self):
        if not self.train or not self.test:
            empty = "train" if not self.train else "test"
            raise SoftPromptError(f"task {self.name!r} has an empty {empty} set: nothing to train or evaluate on")
        for part, examples in (("train", self.train), ("test", self.test)):
            for index, example in enumerate(examples):
                _check_choices(example, f"task {self.name!r}, {part} example {index}")


def _check_choices(example: Example, where: str) -> None:
    choices = example.choices
    if not choices:
        return
    if len(choices) < 2:
        raise SoftPromptError(f"{where}: a single answer choice {choices[0]!r} leaves nothing to decide; a task needs at least two labels")
    if any(not choice.strip() for choice in choices) or len(set(choices)) < len(choices):
        raise SoftPromptError(f"{where}: answer choices {choices} must be distinct and non-empty")
    if not isinstance(example.label, int) or not 0 <= example.label < len(choices):
        raise SoftPromptError(f"{where}: label {example.label!r} is not the index of one of its {len(choices)} choices")


def combine_tasks(tasks: list[Task]) -> Task:
    """Several tasks trained at once (multi-task). Each keeps its own examples, answers and metric in `parts`;
    the combined train/test sets are their union and its description (the default init text) joins theirs."""
    names = [t.name for t in tasks]
    if len(set(names)) < len(names):
        raise SoftPromptError(f"a task is listed twice in {','.join(names)}")
    return Task("+".join(names), [e for t in tasks for e in t.train], [e for t in tasks for e in t.test],
                " ".join(t.description for t in tasks), "; ".join(f"{t.name}: {t.split_note}" for t in tasks), parts=tasks)


def seeded_carve(rows: list, train_size: int, seed: int = 0) -> tuple[list, list]:
    """Deterministic train/test split: permute with numpy default_rng(seed), first train_size are train."""
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in order[:train_size]], [rows[i] for i in order[train_size:]]
