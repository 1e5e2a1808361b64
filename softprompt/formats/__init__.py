"""Formats a prompt file can be exported to: name -> function(prompt, output path). A new format is one entry."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import SoftPromptError, unknown_choice
from ..tuned import TunedPrompt
from .peft import export_peft

EXPORT_FORMATS: dict[str, Callable[[TunedPrompt, Path], None]] = {
    "peft": export_peft,  # a folder PeftModel.from_pretrained(model, folder) loads
}


def export_prompt(prompt: TunedPrompt, format: str, output: str | Path) -> None:
    if format not in EXPORT_FORMATS:
        raise unknown_choice("export format", format, EXPORT_FORMATS)
    if prompt.base.kind != "text":
        raise SoftPromptError(f"a {prompt.method.name!r} prompt runs on a ViT with its own classifier head; the export "
                              f"formats ({', '.join(EXPORT_FORMATS)}) are for causal language models")
    EXPORT_FORMATS[format](prompt, Path(output))
