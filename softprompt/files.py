"""Prompt files: one safetensors file holding the method's tensors and, in its header, JSON metadata
(method and config, base model name and fingerprint, task, label words, metrics, a checksum).

Nothing is ever unpickled. Every write goes to a temporary file that is renamed into place, so a
killed process never leaves a half-written file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import SoftPromptError

FORMAT = "softprompt/1"
METADATA_KEY = "softprompt"


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Write tensors + metadata (with a checksum of the tensors) atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {**metadata, "format": FORMAT, "checksum": tensors_checksum(tensors)}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={METADATA_KEY: json.dumps(header)})


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a prompt file; any damage is reported with the file's name and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise SoftPromptError(f"prompt file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise SoftPromptError(f"prompt file {path} is truncated or corrupted (not a readable safetensors file: {error})") from error
    try:
        metadata = json.loads(header[METADATA_KEY])
    except (KeyError, json.JSONDecodeError) as error:
        raise SoftPromptError(f"prompt file {path} has no valid softprompt metadata; was it written by softprompt?") from error
    if metadata.get("format") != FORMAT:
        raise SoftPromptError(f"prompt file {path} has format {metadata.get('format')!r}; this version reads {FORMAT!r}")
    if tensors_checksum(tensors) != metadata.get("checksum"):
        raise SoftPromptError(f"prompt file {path} was altered: its tensors do not match the checksum stored in it")
    return tensors, metadata
