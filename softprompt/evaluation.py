"""The one home of metrics: accuracy over answer choices and exact match of a generated final number,
for a prompt (any callable giving an `Injection`) or for the bare model."""
from __future__ import annotations

import re

import torch

from .backbones import FrozenModel
from .errors import SoftPromptError
from .runtime.batching import Encoded, bucketed_batches
from .runtime.generation import generate_ids
from .runtime.kinds import kind_of
from .runtime.scoring import no_prompt
from .tasks import Task


def evaluate(base: FrozenModel, prompt_fn, task: Task, batch_size: int = 16, max_length: int = 256,
             features: torch.Tensor | None = None, progress=None, per_example: bool = False) -> dict:
    """The task's test metric: accuracy for choice tasks, exact match of the final number for generation.
    `features` are the method's per-example features of task.test, if it uses any. With `per_example`, also
    "correct": one '1' or '0' per test row, in order (what a paired test of two prompts compares)."""
    if not (isinstance(batch_size, int) and batch_size >= 1 and isinstance(max_length, int) and max_length >= 1):
        raise SoftPromptError(f"batch_size and max_length must be integers >= 1, got {batch_size!r} and {max_length!r}")
    encoded = kind_of(base).encode(base, task.test, max_length)
    judge = choice_correctness if task.test[0].is_choice else exact_match_correctness
    correct = judge(base, prompt_fn, encoded, task, batch_size, features, progress)
    metrics = {"accuracy" if task.test[0].is_choice else "exact_match": sum(correct) / len(correct)}
    return {**metrics, "correct": "".join("1" if c else "0" for c in correct)} if per_example else metrics


def zero_shot(base: FrozenModel, task: Task, batch_size: int = 16, max_length: int = 256) -> dict:
    """The bare frozen model's test metric on `task`."""
    return evaluate(base, no_prompt, task, batch_size, max_length)


@torch.no_grad()
def accuracy(base: FrozenModel, prompt_fn, encoded: list[Encoded], task: Task, batch_size: int,
             features: torch.Tensor | None = None, progress=None) -> float:
    """Share of examples whose highest-scoring choice is the true one."""
    correct = choice_correctness(base, prompt_fn, encoded, task, batch_size, features, progress)
    return sum(correct) / len(correct)


@torch.no_grad()
def choice_correctness(base: FrozenModel, prompt_fn, encoded: list[Encoded], task: Task, batch_size: int,
                       features: torch.Tensor | None = None, progress=None) -> list[bool]:
    """Per example, in order: is its highest-scoring choice the true one? (Batches go by length.)"""
    correct, kind = [False] * len(encoded), kind_of(base)
    for batch in bucketed_batches([kind.eval_length(e) for e in encoded], batch_size, 0, 0, shuffle=False):
        items = [encoded[i] for i in batch]
        batch_features = features[[e.index for e in items]] if features is not None else None
        scores = kind.choice_scores(base, prompt_fn, items, task.length_normalized, batch_features)
        for row, prediction in zip(batch, scores.argmax(-1).tolist()):
            correct[row] = prediction == encoded[row].label
        if progress is not None:
            progress.update(len(items))
    return correct


@torch.no_grad()
def exact_match_correctness(base: FrozenModel, prompt_fn, encoded: list[Encoded], task: Task, batch_size: int,
                            features: torch.Tensor | None = None, progress=None) -> list[bool]:
    """Per example, in order: does its greedy generation end in the reference's final number?"""
    correct = []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start:start + batch_size]
        batch_features = features[[e.index for e in batch]] if features is not None else None
        outputs = generate_ids(base, prompt_fn, [e.context for e in batch], task.max_new_tokens, features=batch_features)
        for ids, example in zip(outputs, batch):
            correct.append(final_number(base.tokenizer.decode(ids)) == final_number(task.test[example.index].completion))
        if progress is not None:
            progress.update(len(batch))
    return correct


NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")


def final_number(text: str) -> str | None:
    """The last number in a text, without thousands separators (GSM8K's answer convention)."""
    found = NUMBER.findall(text.split("####")[-1]) or NUMBER.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None
