"""Task registry: a built-in name, or a path to the user's JSONL/CSV file."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from ..errors import SoftPromptError, unknown_choice
from .base import Example, Task, combine_tasks, seeded_carve
from .builtin import TASKS, load_builtin
from .user_data import FileTaskOptions, load_file_task


def load_task(name: str, file_options: FileTaskOptions | None = None) -> Task:
    """A built-in task, a JSONL/CSV file, or several of either separated by commas (trained together)."""
    changed = [f.name for f in fields(FileTaskOptions) if file_options and getattr(file_options, f.name) != f.default]
    if changed and all(part.strip() in TASKS for part in name.split(",")):
        raise SoftPromptError(f"{', '.join(changed)}: options of tasks read from .jsonl/.csv files; {name!r} is built in "
                              "and has its own format")
    if "," in name:
        return combine_tasks([load_task(part.strip(), file_options) for part in name.split(",")])
    if name in TASKS:
        return load_builtin(name)
    if Path(name).suffix in (".jsonl", ".json", ".csv"):
        return load_file_task(name, file_options)
    raise unknown_choice("task", name, [*TASKS, "<file.jsonl>", "<file.csv>"])


__all__ = ["TASKS", "Example", "FileTaskOptions", "Task", "combine_tasks", "load_task", "seeded_carve"]
