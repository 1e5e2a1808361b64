"""One training loop for every method: AdamW, warmup + linear decay, accumulation, clipping, a dev
evaluation each epoch keeping the best prompt, checkpoints that resume exactly, a JSONL log and a plot."""
from __future__ import annotations

import functools
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .api import TunedPrompt, evaluate_prompt
from .cards import model_card
from .configs import at_least, check_types, from_options, to_yaml
from .engine import (
    Encoded,
    accuracy,
    bucketed_batches,
    choice_loss,
    encode,
    lm_loss,
    no_prompt,
)
from .errors import SoftPromptError, unknown_choice
from .files import read_checkpoint, write_checkpoint, write_text_atomic
from .methods import PromptMethod, build_method
from .models import DEFAULT_MODEL, FrozenModel, load_model
from .plots import plot_curves
from .prefix_cache import inference_prompt
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
    log_with: str = ""
    """Also send the training curves to an experiment tracker through accelerate: tensorboard (event files
    under output_dir/logs; needs tensorboardX or tensorboard), wandb, mlflow... Empty: none."""
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
        tasks = "+".join(Path(name).stem for name in self.task.split(","))
        return Path(self.output_dir or f"runs/{tasks}-{self.method}")


@dataclass
class TrainResult:
    prompts: dict[str, TunedPrompt]
    """One trained prompt per task (several when trained on several tasks at once)."""
    output_dir: Path

    @property
    def prompt(self) -> TunedPrompt:
        """The trained prompt of a single-task run."""
        if len(self.prompts) > 1:
            raise SoftPromptError(f"this run trained {len(self.prompts)} tasks: use result.prompts[name], name in {list(self.prompts)}")
        return next(iter(self.prompts.values()))

    @property
    def metrics(self) -> dict:
        """Test metrics of a single-task run."""
        return self.prompt.info["metrics"]


@dataclass
class TaskData:
    """One task of a run: its encoded examples, cached features, loss, and the method's prompt for it."""

    task: Task
    prompt: PromptMethod
    loss_fn: Callable
    train_set: list[Encoded]
    train_features: torch.Tensor | None
    dev_set: list[Encoded]
    dev_features: torch.Tensor | None


def _split_dev(task: Task, dev_size: int, seed: int) -> tuple[list, list]:
    if dev_size <= 0:
        return task.train, []
    if dev_size >= len(task.train):
        raise SoftPromptError(f"dev_size {dev_size} leaves no training examples (the task has {len(task.train)})")
    dev, train = seeded_carve(task.train, dev_size, seed=seed)
    return train, dev


class Trainer:
    """Holds the state of one run: `train()` runs the loop (resumable), `finish()` scores and saves.

    Under `accelerate launch` / torchrun every process trains on its share of each batch and the prompt's
    gradients are summed across processes before each step (DDP on the prompt parameters: the frozen model
    needs no synchronisation), so N processes compute what one does with the same batch size. Every process
    evaluates; only the main process writes files.
    """

    def __init__(self, config: TrainConfig, base: FrozenModel | None = None, task: Task | None = None):
        self.config = config
        self.output_dir = config.resolved_output_dir()
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise SoftPromptError(f"output_dir {str(self.output_dir)!r} is a file, not a folder")
        if config.log_with and config.log_with not in LOGGER_TYPE_TO_CLASS:
            raise unknown_choice("tracker (log_with)", config.log_with, LOGGER_TYPE_TO_CLASS)
        if config.log_with and config.log_with not in {t.value for t in get_available_trackers()}:  # else skipped silently
            raise SoftPromptError(f"log_with {config.log_with!r} needs its package installed (tensorboard: pip install tensorboardX==2.6.5)")
        self.task = task or load_task(config.task, from_options(FileTaskOptions, config.file_options, "file_options"))
        self.base = base or load_model(config.model)  # after the task: bad data is refused before a slow load
        if config.objective not in OBJECTIVES:
            raise unknown_choice("objective", config.objective, OBJECTIVES)
        torch.manual_seed(config.seed)
        self.method = build_method(config.method, self.base, config.method_options)
        self.method.initialize(self.base, self.task)
        self.parts = [self._task_data(task) for task in self.task.subtasks()]
        groups = self.method.parameter_groups()
        if config.learning_rate:
            groups = [{**g, "lr": config.learning_rate} for g in groups]
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self.batches_per_epoch = sum(math.ceil(len(p.train_set) / config.batch_size) for p in self.parts)
        steps_per_epoch = math.ceil(self.batches_per_epoch / config.gradient_accumulation)
        self.total_steps = config.max_steps or config.epochs * steps_per_epoch
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(config.warmup_ratio * self.total_steps), self.total_steps)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_score, self.best_state, self.history = -math.inf, None, []
        self.accelerator = Accelerator(cpu=self.base.model.device.type == "cpu", log_with=config.log_with or None,
                                       project_dir=str(self.output_dir / "logs"))
        if config.batch_size < self.accelerator.num_processes:
            raise SoftPromptError(f"batch_size {config.batch_size} is the global batch: it must be at least the "
                                  f"number of processes ({self.accelerator.num_processes})")

    def _task_data(self, task: Task) -> TaskData:
        loss_fn = lm_loss
        if self.config.objective == "choice" and task.train[0].is_choice:
            loss_fn = functools.partial(choice_loss, length_normalized=task.length_normalized)
        train, dev = _split_dev(task, self.config.dev_size, self.config.seed)
        return TaskData(task, self.method.for_task(task.name), loss_fn, *self._prepare(train), *self._prepare(dev))

    def _prepare(self, examples: list) -> tuple[list[Encoded], torch.Tensor | None]:
        if not examples:
            return [], None
        return encode(self.base, examples, self.config.max_length), self._features(examples)

    def _features(self, examples: list) -> torch.Tensor | None:
        with torch.no_grad():  # frozen encoders run once per example, not once per step
            return self.method.instance_features(self.base, [e.prompt for e in examples])

    def _epoch_batches(self) -> list[tuple[int, list[int]]]:
        """(task number, example indices) for every batch of this epoch. A batch holds one task's examples;
        the tasks' batches are interleaved in a seeded order, a pure function of (seed, epoch)."""
        batches = [(k, batch) for k, part in enumerate(self.parts)
                   for batch in bucketed_batches([len(e.context) + len(e.target) for e in part.train_set],
                                                 self.config.batch_size, self.config.seed, self.epoch)]
        if len(self.parts) == 1:
            return batches
        order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(self.config.seed * 100_003 + self.epoch))
        return [batches[i] for i in order.tolist()]

    # ---- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if not self.accelerator.is_main_process:
            return
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
        if self.accelerator.is_main_process:
            write_text_atomic(self.output_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    # ---- the loop ----------------------------------------------------------------------------
    def _dev_score(self) -> float | None:
        """Mean over tasks of the dev metric (accuracy, or minus the loss for generation tasks)."""
        scores = [self._task_dev_score(part) for part in self.parts if part.dev_set]
        return sum(scores) / len(scores) if scores else None

    def _task_dev_score(self, part: TaskData) -> float:
        self.method.eval()
        prompt_fn = functools.partial(inference_prompt, self.base, part.prompt)  # a task-level prefix: its cached keys/values
        with torch.no_grad():
            if part.dev_set[0].label is not None:
                score = accuracy(self.base, prompt_fn, part.dev_set, part.task, self.config.eval_batch_size, part.dev_features)
            else:  # generation: lower dev loss is better; generating the dev set every epoch costs too much
                score = -lm_loss(self.base, prompt_fn, part.dev_set, part.dev_features)[0].item()
        self.method.train()
        return score

    def _micro_step(self, part: TaskData, indices: list[int]) -> tuple[float, int]:
        """Forward and backward this process's share of the batch; returns the whole batch's loss."""
        share = indices[self.accelerator.process_index::self.accelerator.num_processes]
        if not share:  # a last batch smaller than the number of processes: this one only joins the sum
            return self._batch_mean(torch.zeros(())), 0
        batch = [part.train_set[i] for i in share]
        features = part.train_features[share] if part.train_features is not None else None
        loss, tokens = part.loss_fn(self.base, part.prompt, batch, features)
        if not torch.isfinite(loss):
            self._stop(f"loss became {loss.item()}")
        weighted = loss * len(share) / len(indices)  # summed over processes: the mean over the whole batch
        (weighted / self.config.gradient_accumulation).backward()
        return self._batch_mean(weighted.detach()), tokens

    def _batch_mean(self, weighted: torch.Tensor) -> float:
        return self.accelerator.reduce(weighted, "sum").item() if self.accelerator.num_processes > 1 else weighted.item()

    def _stop(self, what: str) -> None:
        checkpoint = self.output_dir / CHECKPOINT
        kept = (f"the last good checkpoint ({checkpoint}) is untouched: lower the learning rate and --resume"
                if checkpoint.exists() else "no checkpoint was written yet: lower the learning rate")
        raise SoftPromptError(f"{what} at step {self.step + 1}; stopping, {kept}")

    def _optimizer_step(self) -> None:
        if self.accelerator.num_processes > 1:
            for parameter in self.method.parameters():
                if parameter.requires_grad:
                    grad = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
                    parameter.grad = self.accelerator.reduce(grad, "sum")
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
        if score is not None:
            self.accelerator.log({"dev/score": score}, step=self.step)
        if score is None or score > self.best_score:
            self.best_score = score if score is not None else self.best_score
            self.best_state = {k: v.detach().clone() for k, v in self.method.state_dict().items()}
        self.history.append(record)
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def train(self) -> None:
        config = self.config
        self.method.train()
        if config.log_with:
            self.accelerator.init_trackers(self.output_dir.name, config={k: v for k, v in asdict(config).items() if not isinstance(v, dict)})
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"{config.method} on {self.task.name}", unit="step",
                   disable=not self.accelerator.is_main_process)
        window_loss, window_tokens, window_start, accumulated = [], 0, time.perf_counter(), 0
        while self.step < self.total_steps and (config.max_steps or self.epoch < config.epochs):
            batches = self._epoch_batches()
            while self.batch_in_epoch < len(batches) and self.step < self.total_steps:
                part, indices = batches[self.batch_in_epoch]
                loss, tokens = self._micro_step(self.parts[part], indices)
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
                self.accelerator.log({f"train/{k}": record[k] for k in ("loss", "lr", "tokens_per_s")}, step=self.step)
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
        """Keep the best prompt, score it (and the bare model) on each task's test set, and write the outputs:
        prompt.safetensors, or <task>/prompt.safetensors for each task of a multi-task run."""
        config = self.config
        self.method.load_state_dict(self.best_state)
        self.method.eval()
        shared = {"trainable_parameters": sum(p.numel() for p in self.method.parameters()), "steps": self.step}
        train_steps = [r for r in self.history if "loss" in r]
        if train_steps:
            shared["seconds_per_step"] = statistics.median(r["seconds"] for r in train_steps)
        prompts = {}
        for part in self.parts:
            metrics = {**self._test_metrics(part), **shared}
            prompts[part.task.name] = TunedPrompt(self.base, part.prompt, {
                "task": part.task.name if len(self.parts) > 1 else config.task, "split": part.task.split_note,
                "label_words": list(part.task.label_words), "max_length": config.max_length, "metrics": metrics,
                "train_config": asdict(config)})
            self.history.append({"test": metrics, "task": part.task.name})
            prefix = f"test/{part.task.name}/" if len(self.parts) > 1 else "test/"
            self.accelerator.log({prefix + k: v for k, v in metrics.items()}, step=self.step)
        for tracker in self.accelerator.trackers:  # not end_training(): that also tears down the process group
            tracker.finish()
        if self.accelerator.is_main_process:
            self._write_outputs(prompts)
        return TrainResult(prompts, self.output_dir)

    def prompt_path(self, task_name: str) -> Path:
        return self.output_dir / PROMPT if len(self.parts) == 1 else self.output_dir / task_name / PROMPT

    def _test_metrics(self, part: TaskData) -> dict:
        config, task = self.config, part.task
        features = self._features(task.test)
        quiet = not self.accelerator.is_main_process
        with tqdm(total=len(task.test), desc=f"test {task.name}", unit="ex", disable=quiet) as bar:
            # through TunedPrompt: a task-level prompt is scored from its cached keys/values
            scored = TunedPrompt(self.base, part.prompt, {})
            metrics = evaluate_prompt(self.base, scored, task, config.eval_batch_size, config.max_length, features, bar)
        if config.zero_shot:
            with tqdm(total=len(task.test), desc=f"zero-shot {task.name}", unit="ex", disable=quiet) as bar:
                bare = evaluate_prompt(self.base, no_prompt, task, config.eval_batch_size, config.max_length, None, bar)
            metrics.update({f"zero_shot_{k}": v for k, v in bare.items()})
        return metrics

    def _write_outputs(self, prompts: dict[str, TunedPrompt]) -> None:
        config = self.config
        for name, prompt in prompts.items():
            path = self.prompt_path(name)
            prompt.save(path)
            write_text_atomic(path.parent / "README.md", model_card(prompt, str(path)))
        write_text_atomic(self.output_dir / "train_config.json", json.dumps(asdict(config), indent=2))
        write_text_atomic(self.output_dir / "train_config.yaml", to_yaml(config))  # what `train --config` reads
        self._write_log()
        plot_curves(self.history, self.output_dir / "curves.png", f"{config.method} on {self.task.name}")


def train(config: TrainConfig | None = None, base: FrozenModel | None = None, **overrides) -> TrainResult:
    """Train a soft prompt: `softprompt.train(task="sst2", method="prompt-tuning")`."""
    config = config or from_options(TrainConfig, overrides, "train()")
    trainer = Trainer(config, base)
    if config.resume:
        trainer.load_checkpoint()
    trainer.train()
    return trainer.finish()
