"""One training loop for every method: AdamW, warmup + linear decay, accumulation, clipping, a dev
evaluation each epoch keeping the best prompt, checkpoints that resume exactly, a JSONL log and a plot."""
from __future__ import annotations

import functools
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .api import TunedPrompt, evaluate_prompt
from .configs import at_least, check_types, from_options
from .engine import Encoded, accuracy, bucketed_batches, choice_loss, encode, lm_loss, no_prompt
from .errors import SoftPromptError, unknown_choice
from .files import read_checkpoint, write_checkpoint, write_text_atomic
from .methods import build_method
from .models import DEFAULT_MODEL, FrozenModel, load_model
from .plots import plot_curves
from .tasks import FileTaskOptions, Task, load_task, seeded_carve

CHECKPOINT = "checkpoint.pt"
OBJECTIVES = ("choice", "lm")
PROMPT = "prompt.safetensors"


@dataclass
class TrainConfig:
    task: str = "sst2"
    """A built-in task name or a .jsonl/.csv file."""
    method: str = "prompt-tuning"
    """A registered method (see `softprompt list`)."""
    model: str = DEFAULT_MODEL
    """An embedded model name, a local folder, or a hub id."""
    output_dir: str = ""
    """Where the prompt, checkpoint, log and plot go; empty means runs/<task>-<method>."""
    epochs: int = 3
    """Passes over the training examples."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: run all epochs)."""
    batch_size: int = 8
    gradient_accumulation: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size x this)."""
    learning_rate: float = 0.0
    """0 uses the method's own default."""
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 256
    """Longest text in tokens (context + answer; the prompt comes on top); longer contexts lose their beginning."""
    dev_size: int = 0
    """Training examples held out to pick the best epoch (0: train on all, keep the last prompt). A dev
    set of a few dozen examples picks noise, so this only pays on larger training sets."""
    objective: str = "choice"
    """choice: cross-entropy over the answer choices (classification / multiple choice); lm: likelihood
    of the true answer's tokens. Generation tasks always use lm."""
    eval_batch_size: int = 16
    checkpoint_every: int = 50
    """Save a resumable checkpoint every N optimizer steps (and at every epoch end)."""
    resume: bool = False
    """Continue from output_dir's checkpoint."""
    zero_shot: bool = True
    """Also score the bare frozen model on the test set, for comparison."""
    seed: int = 0
    method_options: dict = field(default_factory=dict)
    """The method's own options (see its config)."""
    file_options: dict = field(default_factory=dict)
    """Field names etc. for tasks read from files (see FileTaskOptions)."""

    def __post_init__(self):
        check_types(self)
        at_least(self, 1, "epochs", "batch_size", "gradient_accumulation", "max_length", "eval_batch_size", "checkpoint_every")
        at_least(self, 0, "max_steps", "dev_size", "seed", "learning_rate", "warmup_ratio", "weight_decay", "max_grad_norm")
        if self.warmup_ratio >= 1 or self.max_grad_norm == 0:
            raise SoftPromptError(f"need warmup_ratio < 1 and max_grad_norm > 0, got {self.warmup_ratio!r} and {self.max_grad_norm!r}")

    def resolved_output_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{Path(self.task).stem}-{self.method}")


@dataclass
class TrainResult:
    prompt: TunedPrompt
    metrics: dict
    output_dir: Path


def _split_dev(task: Task, dev_size: int, seed: int) -> tuple[list, list]:
    if dev_size <= 0:
        return task.train, []
    if dev_size >= len(task.train):
        raise SoftPromptError(f"dev_size {dev_size} leaves no training examples (the task has {len(task.train)})")
    dev, train = seeded_carve(task.train, dev_size, seed=seed)
    return train, dev


class Trainer:
    """Holds the state of one run: `train()` runs the loop (resumable), `finish()` scores and saves."""

    def __init__(self, config: TrainConfig, base: FrozenModel | None = None, task: Task | None = None):
        self.config = config
        self.output_dir = config.resolved_output_dir()
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise SoftPromptError(f"output_dir {str(self.output_dir)!r} is a file, not a folder")
        self.task = task or load_task(config.task, from_options(FileTaskOptions, config.file_options, "file_options"))
        self.base = base or load_model(config.model)  # after the task: bad data is refused before a slow load
        if config.objective not in OBJECTIVES:
            raise unknown_choice("objective", config.objective, OBJECTIVES)
        choice_task = self.task.train[0].is_choice
        self.loss_fn = lm_loss
        if config.objective == "choice" and choice_task:
            self.loss_fn = functools.partial(choice_loss, length_normalized=self.task.length_normalized)
        torch.manual_seed(config.seed)
        self.method = build_method(config.method, self.base, config.method_options)
        self.method.initialize(self.base, self.task)
        train, dev = _split_dev(self.task, config.dev_size, config.seed)
        self.train_set, self.train_features = self._prepare(train)
        self.dev_set, self.dev_features = self._prepare(dev)
        groups = self.method.parameter_groups()
        if config.learning_rate:
            groups = [{**g, "lr": config.learning_rate} for g in groups]
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self.batches_per_epoch = math.ceil(len(self.train_set) / config.batch_size)
        steps_per_epoch = math.ceil(self.batches_per_epoch / config.gradient_accumulation)
        self.total_steps = config.max_steps or config.epochs * steps_per_epoch
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(config.warmup_ratio * self.total_steps), self.total_steps)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_score, self.best_state, self.history = -math.inf, None, []

    def _prepare(self, examples: list) -> tuple[list[Encoded], torch.Tensor | None]:
        if not examples:
            return [], None
        return encode(self.base, examples, self.config.max_length), self._features(examples)

    def _features(self, examples: list) -> torch.Tensor | None:
        with torch.no_grad():  # frozen encoders run once per example, not once per step
            return self.method.instance_features(self.base, [e.prompt for e in examples])

    # ---- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        state = {
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "position": [self.step, self.epoch, self.batch_in_epoch],
            "best_score": self.best_score,
            "best_state": self.best_state,
            "history": json.dumps(self.history),
            "config": json.dumps(asdict(self.config)),
        }
        write_checkpoint(self.output_dir / CHECKPOINT, state)
        self._write_log()

    def load_checkpoint(self) -> None:
        path = self.output_dir / CHECKPOINT
        if not path.is_file():
            raise SoftPromptError(f"--resume: no checkpoint at {path}")
        state = read_checkpoint(path)
        saved = json.loads(state["config"])
        for key in ("task", "method", "model", "seed", "batch_size", "method_options"):
            if saved[key] != asdict(self.config)[key]:
                raise SoftPromptError(f"--resume: checkpoint {path} was made with {key}={saved[key]!r}, not {asdict(self.config)[key]!r}")
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.step, self.epoch, self.batch_in_epoch = state["position"]
        self.best_score, self.best_state = state["best_score"], state["best_state"]
        self.history = json.loads(state["history"])

    def _write_log(self) -> None:
        write_text_atomic(self.output_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    # ---- the loop ----------------------------------------------------------------------------
    def _dev_score(self) -> float | None:
        if not self.dev_set:
            return None
        self.method.eval()
        if self.dev_set[0].label is not None:
            score = accuracy(self.base, self.method, self.dev_set, self.task, self.config.eval_batch_size, self.dev_features)
        else:  # generation: lower dev loss is better; generating the dev set every epoch costs too much
            with torch.no_grad():
                score = -lm_loss(self.base, self.method, self.dev_set, self.dev_features)[0].item()
        self.method.train()
        return score

    def _micro_step(self, indices: list[int]) -> tuple[float, int]:
        batch = [self.train_set[i] for i in indices]
        features = self.train_features[indices] if self.train_features is not None else None
        loss, tokens = self.loss_fn(self.base, self.method, batch, features)
        if not torch.isfinite(loss):
            self._stop(f"loss became {loss.item()}")
        (loss / self.config.gradient_accumulation).backward()
        return loss.item(), tokens

    def _stop(self, what: str) -> None:
        checkpoint = self.output_dir / CHECKPOINT
        kept = (f"the last good checkpoint ({checkpoint}) is untouched: lower the learning rate and --resume"
                if checkpoint.exists() else "no checkpoint was written yet: lower the learning rate")
        raise SoftPromptError(f"{what} at step {self.step + 1}; stopping, {kept}")

    def _optimizer_step(self) -> None:
        norm = torch.nn.utils.clip_grad_norm_(self.method.parameters(), self.config.max_grad_norm)
        if not torch.isfinite(norm):  # stop before the update: a checkpoint of non-finite weights must never be saved
            self._stop(f"the gradient norm became {norm.item()}")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def _end_epoch(self) -> None:
        score = self._dev_score()
        record = {"epoch": self.epoch + 1, "step": self.step, "dev_score": score}
        if score is None or score > self.best_score:
            self.best_score = score if score is not None else self.best_score
            self.best_state = {k: v.detach().clone() for k, v in self.method.state_dict().items()}
        self.history.append(record)
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def train(self) -> None:
        config = self.config
        lengths = [len(e.context) + len(e.target) for e in self.train_set]
        self.method.train()
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"{config.method} on {self.task.name}", unit="step")
        window_loss, window_tokens, window_start, accumulated = [], 0, time.perf_counter(), 0
        while self.step < self.total_steps and (config.max_steps or self.epoch < config.epochs):
            batches = bucketed_batches(lengths, config.batch_size, config.seed, self.epoch)
            while self.batch_in_epoch < len(batches) and self.step < self.total_steps:
                loss, tokens = self._micro_step(batches[self.batch_in_epoch])
                self.batch_in_epoch += 1
                accumulated += 1
                window_loss.append(loss)
                window_tokens += tokens
                if accumulated < config.gradient_accumulation and self.batch_in_epoch < len(batches):
                    continue
                self._optimizer_step()
                accumulated = 0
                elapsed = time.perf_counter() - window_start
                record = {"step": self.step, "epoch": self.epoch + 1, "loss": sum(window_loss) / len(window_loss),
                          "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": window_tokens / elapsed, "seconds": elapsed}
                self.history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
                bar.update(1)
                window_loss, window_tokens, window_start = [], 0, time.perf_counter()
                if self.step % config.checkpoint_every == 0:
                    self.save_checkpoint()
            if self.batch_in_epoch >= len(batches):
                self._end_epoch()
                self.save_checkpoint()
        bar.close()
        if self.batch_in_epoch:  # stopped by max_steps inside an epoch: judge the prompt where it stands
            self._end_epoch()
            self.save_checkpoint()

    def finish(self) -> TrainResult:
        """Keep the best prompt, score it (and the bare model) on the test set, and write the outputs."""
        config = self.config
        self.method.load_state_dict(self.best_state)
        self.method.eval()
        prompt = TunedPrompt(self.base, self.method, {})
        features = self._features(self.task.test)
        with tqdm(total=len(self.task.test), desc="test", unit="ex") as bar:
            metrics = evaluate_prompt(self.base, self.method, self.task, config.eval_batch_size, config.max_length, features, bar)
        if config.zero_shot:
            with tqdm(total=len(self.task.test), desc="zero-shot", unit="ex") as bar:
                bare = evaluate_prompt(self.base, no_prompt, self.task, config.eval_batch_size, config.max_length, None, bar)
            metrics.update({f"zero_shot_{k}": v for k, v in bare.items()})
        train_steps = [r for r in self.history if "loss" in r]
        if train_steps:
            metrics["seconds_per_step"] = statistics.median(r["seconds"] for r in train_steps)
        metrics["trainable_parameters"] = sum(p.numel() for p in self.method.parameters())
        metrics["steps"] = self.step
        prompt.info = {"task": config.task, "split": self.task.split_note, "label_words": list(self.task.label_words),
                       "max_length": config.max_length, "metrics": metrics, "train_config": asdict(config)}
        prompt.save(self.output_dir / PROMPT)
        write_text_atomic(self.output_dir / "train_config.json", json.dumps(asdict(config), indent=2))
        self.history.append({"test": metrics})
        self._write_log()
        plot_curves(self.history, self.output_dir / "curves.png", f"{config.method} on {self.task.name}")
        return TrainResult(prompt, metrics, self.output_dir)


def train(config: TrainConfig | None = None, base: FrozenModel | None = None, **overrides) -> TrainResult:
    """Train a soft prompt: `softprompt.train(task="sst2", method="prompt-tuning")`."""
    config = config or from_options(TrainConfig, overrides, "train()")
    trainer = Trainer(config, base)
    if config.resume:
        trainer.load_checkpoint()
    trainer.train()
    return trainer.finish()
