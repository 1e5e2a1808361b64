"""Task registry: a built-in name, a path to the user's JSONL/CSV file, or a folder of images by class."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from ..errors import SoftPromptError, unknown_choice
from .base import Example, Task, combine_tasks, seeded_carve
from .builtin import TASKS, load_builtin
from .fashion_mnist import SHOTS as IMAGE_TASKS
from .fashion_mnist import DESCRIPTION as IMAGE_TASK_DESCRIPTION
from .fashion_mnist import load_fashion_mnist
from .images import ImageExample, load_image_folder
from .user_data import FileTaskOptions, load_file_task


def load_task(name: str, file_options: FileTaskOptions | None = None) -> Task:
    """A built-in task, a JSONL/CSV file, a folder with one sub-folder of images per class, or several of these
    separated by commas (trained together)."""
    changed = [f.name for f in fields(FileTaskOptions) if file_options and getattr(file_options, f.name) != f.default]
    if changed and all(part.strip() in {*TASKS, *IMAGE_TASKS} for part in name.split(",")):
        raise SoftPromptError(f"{', '.join(changed)}: options of tasks read from .jsonl/.csv files; {name!r} is built in "
                              "and has its own format")
    if "," in name:
        return combine_tasks([load_task(part.strip(), file_options) for part in name.split(",")])
    if name in TASKS:
        return load_builtin(name)
    if name in IMAGE_TASKS:
        return load_fashion_mnist(name)
    if Path(name).suffix in (".jsonl", ".json", ".csv"):
        return load_file_task(name, file_options)
    if Path(name).is_dir():
        return load_image_folder(name, file_options.test_file if file_options else "")
    raise unknown_choice("task", name, [*TASKS, *IMAGE_TASKS, "<file.jsonl>", "<file.csv>", "<folder of images by class>"])


__all__ = ["IMAGE_TASKS", "IMAGE_TASK_DESCRIPTION", "TASKS", "Example", "FileTaskOptions", "ImageExample", "Task",
           "combine_tasks", "load_task", "seeded_carve"]
