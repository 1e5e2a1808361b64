"""Tasks from the user's own JSONL or CSV files.

Classification: a text field and a label field; the label values are the answers the model learns to
continue with (choices = the sorted distinct labels). Generation: a prompt field and a completion field.
"""
from __future__ import annotations

import csv
import json
import string
from dataclasses import dataclass
from pathlib import Path

from ..errors import SoftPromptError
from ..storage import existing_file
from .base import Example, Task, seeded_carve


@dataclass
class FileTaskOptions:
    text_field: str = "text"
    """Classification: the field holding the input text."""
    label_field: str = "label"
    """Classification: the field holding the label (any string; it becomes the answer word)."""
    prompt_field: str = "prompt"
    """Generation: the field holding the input."""
    completion_field: str = "completion"
    """Generation: the field holding the reference continuation."""
    template: str = "{text}\nAnswer:"
    """How a classification input is shown to the model ({text} is replaced; write {{ and }} for braces)."""
    test_file: str = ""
    """A separate test file; empty carves 20% of the data (seeded) as test."""


def check_template(template: str) -> None:
    """A template must show the text exactly through {text} and name no other field."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise SoftPromptError(f"template {template!r} is not a valid format string ({error}); write {{{{ and }}}} for literal braces") from error
    unknown = sorted({name for name in fields if name != "text"})
    if unknown:
        raise SoftPromptError(f"template {template!r} names unknown field(s) {unknown}: only {{text}} is filled in")
    if "text" not in fields:
        raise SoftPromptError(f"template {template!r} has no {{text}} field: every example would read the same input")


def read_records(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) pairs from a .jsonl or .csv file, with clear errors for bad lines."""
    path = existing_file(path, "data file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is not data
    except UnicodeDecodeError as error:
        raise SoftPromptError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    if path.suffix == ".csv":
        return [(number, row) for number, row in enumerate(csv.DictReader(text.splitlines()), start=2)]
    if path.suffix not in (".jsonl", ".json"):
        raise SoftPromptError(f"{path}: unsupported data file type {path.suffix!r}; use .jsonl or .csv")
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SoftPromptError(f"{path} line {number}: not valid JSON ({error.msg})") from error
        if not isinstance(record, dict):
            raise SoftPromptError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
        records.append((number, record))
    return records


def _field(path: Path, number: int, record: dict, name: str) -> str:
    value = record.get(name)
    if value is None or str(value).strip() == "":
        raise SoftPromptError(f"{path} line {number}: missing field {name!r} (fields present: {', '.join(record) or 'none'})")
    return str(value)


def _examples(path: Path, options: FileTaskOptions) -> list[Example]:
    records = read_records(path)
    if not records:
        raise SoftPromptError(f"{path}: the dataset is empty")
    if options.completion_field in records[0][1]:
        return [Example(_field(path, n, r, options.prompt_field), completion=" " + _field(path, n, r, options.completion_field).lstrip())
                for n, r in records]
    rows = [(options.template.format(text=_field(path, n, r, options.text_field)), _field(path, n, r, options.label_field).strip())
            for n, r in records]
    choices = tuple(" " + label for label in sorted({label for _, label in rows}))
    return [Example(text, choices, choices.index(" " + label)) for text, label in rows]


def load_file_task(path: str, options: FileTaskOptions | None = None) -> Task:
    options = options or FileTaskOptions()
    check_template(options.template)
    examples = _examples(Path(path), options)
    if options.test_file:
        train, test = examples, _examples(Path(options.test_file), options)
        if train[0].choices != test[0].choices and train[0].is_choice:
            raise SoftPromptError(f"{options.test_file}: labels {test[0].choices} differ from the train file's {train[0].choices}")
        note = f"{path}: {len(train)} train / {options.test_file}: {len(test)} test"
    else:
        train, test = seeded_carve(examples, max(1, round(0.8 * len(examples))), seed=0)
        note = f"{path}: seeded 80/20 carve, {len(train)} train / {len(test)} test (numpy default_rng(0))"
    kind = f"one of: {', '.join(c.strip() for c in train[0].choices)}" if train[0].is_choice else "the completion"
    return Task(Path(path).stem, train, test, f"Read the input and answer with {kind}.", note)
