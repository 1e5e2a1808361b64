"""Prompt files and training checkpoints, written atomically and verified on load.

A prompt file is one safetensors file holding the method's tensors and, in its header, JSON metadata
(method and config, base model name and fingerprint, task, label words, metrics, a checksum of the
tensors and the metadata). A checkpoint is a `torch.save` of tensors and plain data with a checksum of
its contents, read back with `weights_only=True`: no file can make softprompt run code.

Every write goes to a temporary file that is renamed into place, so a killed process never leaves a
half-written file.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import SoftPromptError

FORMAT = "softprompt/1"
METADATA_KEY = "softprompt"
CHECKPOINT_FORMAT = "softprompt-checkpoint/2"  # 2: the optimizer state is one entry (optimizers.py)


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


def existing_file(path, kind: str) -> Path:
    """`path` as a Path, or a SoftPromptError saying why it is not a readable file of this kind."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise SoftPromptError(f"{kind} must be a file path, got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise SoftPromptError(f"{kind} {str(path)!r} is a directory, not a file")
    if not path.is_file():
        raise SoftPromptError(f"{kind} {str(path)!r} does not exist")
    return path


def content_checksum(value, digest=None) -> str:
    """sha256 of nested dicts/lists of tensors and plain values: their structure, types and bytes."""
    digest = digest or hashlib.sha256()
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor {tensor.dtype} {tuple(value.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)};".encode())
        for key in sorted(value, key=repr):
            digest.update(f"{key!r}:".encode())
            content_checksum(value[key], digest)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            content_checksum(item, digest)
    else:
        digest.update(f"{type(value).__name__} {value!r};".encode())
    return digest.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Write tensors + metadata (with a checksum of both) atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = json.loads(json.dumps({**metadata, "format": FORMAT}))  # checksum exactly what a reader will see
    header["checksum"] = content_checksum([tensors, header])
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={METADATA_KEY: json.dumps(header)})


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a prompt file; any damage is reported with the file's name and what is wrong."""
    path = existing_file(path, "prompt file")
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
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise SoftPromptError(f"prompt file {path} has format {found!r}; this version reads {FORMAT!r}")
    checksum = metadata.pop("checksum", None)
    if content_checksum([tensors, metadata]) != checksum:
        raise SoftPromptError(f"prompt file {path} was altered: its tensors or metadata do not match the checksum stored in it")
    return tensors, metadata


def write_checkpoint(path: str | Path, state: dict) -> None:
    """Write a training state (tensors and plain data only) with a checksum of its contents, atomically."""
    with atomic_path(path) as temporary:
        torch.save({"format": CHECKPOINT_FORMAT, "state": state, "checksum": content_checksum(state)}, temporary)


def read_checkpoint(path: str | Path) -> dict:
    """Read and verify a checkpoint. Never unpickles arbitrary objects: a file holding any is refused."""
    path = existing_file(path, "checkpoint")
    try:
        saved = torch.load(path, weights_only=True, map_location="cpu")  # any device: the trainer moves what it reads
    except pickle.UnpicklingError as error:
        named = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        raise SoftPromptError(f"checkpoint {path} is refused: it holds Python objects other than tensors and plain data"
                              f"{f' ({named.group(1)})' if named else ''}, which could run code when loaded") from error
    except Exception as error:  # torch reports a damaged zip archive as a RuntimeError, other damage otherwise
        raise SoftPromptError(f"checkpoint {path} is truncated or corrupted (not a readable checkpoint: {error})") from error
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise SoftPromptError(f"checkpoint {path} is not a softprompt checkpoint of format {CHECKPOINT_FORMAT!r}")
    if content_checksum(saved.get("state")) != saved.get("checksum"):
        raise SoftPromptError(f"checkpoint {path} was altered: its contents do not match the checksum stored in it")
    return saved["state"]
