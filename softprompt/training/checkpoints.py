"""A run's resumable state: method, optimizer, RNG and position in the seeded data order, in one verified
file (`storage.write_checkpoint`) that a killed process never leaves half-written."""
from __future__ import annotations

import json
from dataclasses import asdict

import torch

from ..errors import SoftPromptError
from ..storage import read_checkpoint, write_checkpoint, write_text_atomic
from .config import TrainConfig

CHECKPOINT = "checkpoint.pt"
# Options a resumed run must share with the checkpoint: anything else would train another run.
MUST_MATCH = ("task", "method", "model", "seed", "batch_size", "method_options", "optimizer", "optimizer_options")


def save(trainer) -> None:
    if not trainer.accelerator.is_main_process:
        return
    state = {
        "method": trainer.method.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "position": [trainer.step, trainer.epoch, trainer.batch_in_epoch],
        "best_score": trainer.best_score,
        "best_state": trainer.best_state,
        "history": json.dumps(trainer.history),
        "config": json.dumps(asdict(trainer.config)),
    }
    write_checkpoint(trainer.output_dir / CHECKPOINT, state)
    write_log(trainer)


def load(trainer) -> None:
    """Restore `trainer` to where its output_dir's checkpoint left off, refusing one made by another run."""
    path = trainer.output_dir / CHECKPOINT
    if not path.is_file():
        raise SoftPromptError(f"--resume: no checkpoint at {path}")
    state = read_checkpoint(path)
    # an option a checkpoint predates had its default when the checkpoint was made
    saved, current = {**asdict(TrainConfig()), **json.loads(state["config"])}, asdict(trainer.config)
    for key in MUST_MATCH:
        if saved.get(key) != current[key]:
            raise SoftPromptError(f"--resume: checkpoint {path} was made with {key}={saved.get(key)!r}, not {current[key]!r}")
    trainer.method.load_state_dict(state["method"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    trainer.step, trainer.epoch, trainer.batch_in_epoch = state["position"]
    trainer.best_score, trainer.best_state = state["best_score"], state["best_state"]
    trainer.history = json.loads(state["history"])


def end_of_run(trainer) -> dict:
    """Where a trained run ended, as JSON: with its best state and score, all that finish() reads of it. A slim
    checkpoint for a run kept past its output folder (compare.py's shelf); restore_end_of_run puts it back."""
    return {"step": trainer.step, "history": trainer.history}


def restore_end_of_run(trainer, best_state: dict, best_score: float, end: dict) -> None:
    """Put a fresh trainer where a trained run ended (end_of_run), so that finish() tests that run's best prompt."""
    trainer.best_state, trainer.best_score = best_state, best_score
    trainer.step, trainer.history = end["step"], end["history"]


def write_log(trainer) -> None:
    if trainer.accelerator.is_main_process:
        write_text_atomic(trainer.output_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in trainer.history))
