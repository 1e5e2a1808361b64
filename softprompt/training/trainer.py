"""One training loop for every method and optimizer: seeded length-bucketed batches, accumulation, a dev
evaluation each epoch keeping the best prompt, resumable checkpoints, a JSONL log and tracker curves."""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from accelerate import Accelerator
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers
from tqdm.auto import tqdm

from ..backbones import FrozenModel, load_model
from ..backbones.loading import resolve_device, resolve_dtype
from ..configs import from_options
from ..errors import SoftPromptError, unknown_choice
from ..evaluation import accuracy
from ..methods import PromptMethod, build_method
from ..runtime.batching import Encoded, bucketed_batches
from ..runtime.kinds import kind_of
from ..runtime.population import Candidate, parameters_set_to, repeated, stackable, stacked_prompt
from ..runtime.prefix_cache import inference_prompt
from ..runtime.remote import connect
from ..tasks import FileTaskOptions, Task, load_task, seeded_carve
from . import checkpoints
from .config import TrainConfig
from .optimizers import NonFiniteUpdate, optimizer_class


@dataclass
class TaskData:
    """One task of a run: its encoded examples, cached features, loss, and the method's view for it."""

    task: Task
    method: PromptMethod
    loss_fn: Callable
    train_set: list[Encoded]
    train_features: torch.Tensor | None
    dev_set: list[Encoded]
    dev_features: torch.Tensor | None


def split_dev(task: Task, dev_size: int, seed: int) -> tuple[list, list]:
    if dev_size <= 0:
        return task.train, []
    if dev_size >= len(task.train):
        raise SoftPromptError(f"dev_size {dev_size} leaves no training examples (the task has {len(task.train)})")
    dev, train = seeded_carve(task.train, dev_size, seed=seed)
    return train, dev


class Trainer:
    """Holds the state of one run: `train()` runs the loop (resumable); `outputs.finish()` scores and saves.

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
        _check_tracker(config.log_with)
        self.task = task or load_task(config.task, from_options(FileTaskOptions, config.file_options, "file_options"))
        # after the task: bad data is refused before a slow load
        self.base = base or (connect(config.remote, config.model) if config.remote
                             else load_model(config.model, config.device, config.dtype))
        _check_placement(self.base, config)
        if config.gradient_checkpointing:
            self.base.enable_checkpointing()
        torch.manual_seed(config.seed)
        self.method = build_method(config.method, self.base, config.method_options)
        self.method.initialize(self.base, self.task)
        self.kind = kind_of(self.base)  # how this backbone's examples are encoded, batched and scored
        self.parts = [self._task_data(task) for task in self.task.subtasks()]
        self.batches_per_epoch = sum(math.ceil(len(p.train_set) / config.batch_size) for p in self.parts)
        steps_per_epoch = math.ceil(self.batches_per_epoch / config.gradient_accumulation)
        self.total_steps = config.max_steps or config.epochs * steps_per_epoch
        self.optimizer = optimizer_class(config.optimizer)(self.method, config, self.total_steps, self.base)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_score, self.best_state, self.history = -math.inf, None, []
        self.accelerator = Accelerator(cpu=self.base.model.device.type == "cpu", log_with=config.log_with or None,
                                       project_dir=str(self.output_dir / "logs"))
        if config.batch_size < self.accelerator.num_processes:
            raise SoftPromptError(f"batch_size {config.batch_size} is the global batch: it must be at least the "
                                  f"number of processes ({self.accelerator.num_processes})")

    def _task_data(self, task: Task) -> TaskData:
        loss_fn = self.kind.lm_loss
        if self.config.objective == "choice" and task.train[0].is_choice:
            loss_fn = functools.partial(self.kind.choice_loss, length_normalized=task.length_normalized)
        train, dev = split_dev(task, self.config.dev_size, self.config.seed)
        return TaskData(task, self.method.for_task(task.name), loss_fn, *self._prepare(train), *self._prepare(dev))

    def _prepare(self, examples: list) -> tuple[list[Encoded], torch.Tensor | None]:
        if not examples:
            return [], None
        return self.kind.encode(self.base, examples, self.config.max_length), self.features(examples)

    def features(self, examples: list) -> torch.Tensor | None:
        with torch.no_grad():  # frozen encoders run once per example, not once per step
            return self.method.instance_features(self.base, [e.text for e in examples])

    def _epoch_batches(self) -> list[tuple[int, list[int]]]:
        """(task number, example indices) for every batch of this epoch. A batch holds one task's examples;
        the tasks' batches are interleaved in a seeded order, a pure function of (seed, epoch)."""
        batches = [(k, batch) for k, part in enumerate(self.parts)
                   for batch in bucketed_batches([self.kind.train_length(e) for e in part.train_set],
                                                 self.config.batch_size, self.config.seed, self.epoch)]
        if len(self.parts) == 1:
            return batches
        order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(self.config.seed * 100_003 + self.epoch))
        return [batches[i] for i in order.tolist()]

    # ---- evaluation during training -----------------------------------------------------------
    def _dev_score(self) -> float | None:
        """Mean over tasks of the dev metric (accuracy, or minus the loss for generation tasks)."""
        scores = [self._task_dev_score(part) for part in self.parts if part.dev_set]
        return sum(scores) / len(scores) if scores else None

    def _task_dev_score(self, part: TaskData) -> float:
        self.method.eval()
        prompt_fn = functools.partial(inference_prompt, self.base, part.method)  # a task-level prefix: its cached keys/values
        with torch.no_grad():
            if part.dev_set[0].label is not None:
                score = accuracy(self.base, prompt_fn, part.dev_set, part.task, self.config.eval_batch_size, part.dev_features)
            else:  # generation: lower dev loss is better; generating the dev set every epoch costs too much
                score = -self.kind.lm_loss(self.base, prompt_fn, part.dev_set, part.dev_features)[0].item()
        self.method.train()
        return score

    # ---- one step ------------------------------------------------------------------------------
    def _share(self, part: TaskData, indices: list[int]) -> tuple[list[int], list[Encoded], torch.Tensor | None]:
        """This process's indices of a batch, their examples and their cached features."""
        share = indices[self.accelerator.process_index::self.accelerator.num_processes]
        features = part.train_features[share] if part.train_features is not None and share else None
        return share, [part.train_set[i] for i in share], features

    def _micro_step(self, part: TaskData, indices: list[int], backward: bool) -> tuple[float, int]:
        """This process's share of one batch (forward, and backward if asked); returns the whole batch's loss."""
        share, batch, features = self._share(part, indices)
        if not share:  # a last batch smaller than the number of processes: this one only joins the sum
            return self._summed(torch.zeros((), device=self.base.device)).item(), 0
        with torch.set_grad_enabled(backward):
            loss, tokens = part.loss_fn(self.base, part.method, batch, features)
        if not torch.isfinite(loss):
            raise NonFiniteUpdate(f"loss became {loss.item()}")
        weighted = loss * len(share) / len(indices)  # summed over processes: the mean over the whole batch
        if backward:
            (weighted / self.config.gradient_accumulation).backward()
            self.base.release_hooks()  # the backward pass has recomputed what checkpointing dropped
        return self._summed(weighted.detach()).item(), tokens

    def _micro_candidates(self, part: TaskData, indices: list[int], candidates: list[Candidate]) -> tuple[torch.Tensor, int]:
        """This process's share of one batch under each candidate, without a graph: (candidates,) whole-batch losses."""
        share, batch, features = self._share(part, indices)
        if not share:
            return self._summed(torch.zeros(len(candidates))), 0
        with torch.no_grad():
            if stackable(part.method):  # one forward pass over candidates x batch rows
                count = len(candidates)
                losses, tokens = part.loss_fn(self.base, stacked_prompt(part.method, candidates), batch * count,
                                              repeated(features, count), groups=count)
            else:
                losses, tokens = self._one_by_one(part, batch, features, candidates)
        losses = losses.reshape(len(candidates))
        if not torch.isfinite(losses).all():
            raise NonFiniteUpdate(f"a candidate's loss became {losses[~torch.isfinite(losses)][0].item()}")
        return self._summed(losses * len(share) / len(indices)), tokens

    def _one_by_one(self, part: TaskData, batch: list[Encoded], features, candidates: list[Candidate]) -> tuple[torch.Tensor, int]:
        losses, tokens = [], 0
        for values in candidates:
            with parameters_set_to(values):
                loss, count = part.loss_fn(self.base, part.method, batch, features)
            losses.append(loss)
            tokens += count
        return torch.stack(losses), tokens

    def _summed(self, weighted: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(weighted, "sum") if self.accelerator.num_processes > 1 else weighted

    def _sum_gradients(self) -> None:
        if self.accelerator.num_processes == 1:
            return
        for parameter in self.method.parameters():
            if parameter.requires_grad:
                grad = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
                parameter.grad = self.accelerator.reduce(grad, "sum")

    def _stop(self, what: str) -> None:
        checkpoint = self.output_dir / checkpoints.CHECKPOINT
        kept = (f"the last good checkpoint ({checkpoint}) is untouched: lower the learning rate and --resume"
                if checkpoint.exists() else "no checkpoint was written yet: lower the learning rate")
        raise SoftPromptError(f"{what} at step {self.step + 1}; stopping, {kept}")

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

    # ---- the loop ------------------------------------------------------------------------------
    def train(self) -> None:
        config = self.config
        self.method.train()
        if config.log_with:
            self.accelerator.init_trackers(self.output_dir.name, config={k: v for k, v in asdict(config).items() if not isinstance(v, dict)})
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"{config.method} on {self.task.name}", unit="step",
                   disable=not self.accelerator.is_main_process)
        while self.step < self.total_steps and (config.max_steps or self.epoch < config.epochs):
            batches = self._epoch_batches()
            while self.batch_in_epoch < len(batches) and self.step < self.total_steps:
                group = batches[self.batch_in_epoch:self.batch_in_epoch + config.gradient_accumulation]
                record = self._step(group)
                bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
                bar.update(1)
                if self.step % config.checkpoint_every == 0:
                    checkpoints.save(self)
            if self.batch_in_epoch >= len(batches):
                self._end_epoch()
                checkpoints.save(self)
        bar.close()
        if self.batch_in_epoch:  # stopped by max_steps inside an epoch: judge the prompt where it stands
            self._end_epoch()
            checkpoints.save(self)

    def _step(self, group: list[tuple[int, list[int]]]) -> dict:
        """One optimizer step over `group` (gradient_accumulation batches, fewer at an epoch's end)."""
        start, batches = time.perf_counter(), StepBatches(self, group)
        try:
            loss = self.optimizer.step(batches)
        except NonFiniteUpdate as error:
            self._stop(str(error))
        self.batch_in_epoch += len(group)
        self.step += 1
        elapsed = time.perf_counter() - start
        record = {"step": self.step, "epoch": self.epoch + 1, "loss": loss, "lr": self.optimizer.learning_rate,
                  "tokens_per_s": batches.tokens / elapsed, "seconds": elapsed, "forward_passes": batches.forward_passes}
        self.history.append(record)
        self.accelerator.log({f"train/{k}": record[k] for k in ("loss", "lr", "tokens_per_s")}, step=self.step)
        return record


class StepBatches:
    """What an optimizer evaluates in one step (optimizer_api.StepLoss): the step's batches, under the current
    parameters or under candidate values. It counts the model's work: tokens read, and forward passes of a batch
    (a backward pass counted as two, its usual cost)."""

    def __init__(self, trainer: Trainer, group: list[tuple[int, list[int]]]):
        self.trainer, self.group = trainer, group
        self.tokens, self.forward_passes = 0, 0

    def __call__(self, backward: bool) -> float:
        total = 0.0
        for part, indices in self.group:
            loss, tokens = self.trainer._micro_step(self.trainer.parts[part], indices, backward)
            total += loss
            self.tokens += tokens
        if backward:
            self.trainer._sum_gradients()
        self.forward_passes += len(self.group) * (3 if backward else 1)
        return total / len(self.group)

    def candidates(self, candidates: list[Candidate]) -> list[float]:
        size = self.trainer.config.candidates_per_pass or len(candidates)
        total = torch.zeros(len(candidates))
        for part, indices in self.group:
            for start in range(0, len(candidates), size):
                losses, tokens = self.trainer._micro_candidates(self.trainer.parts[part], indices, candidates[start:start + size])
                total[start:start + size] += losses
                self.tokens += tokens
        self.forward_passes += len(self.group) * len(candidates)
        return (total / len(self.group)).tolist()
def _check_placement(base: FrozenModel, config: TrainConfig) -> None:
    """A model passed in is used where it is: refuse a device or dtype option that says otherwise."""
    device = resolve_device(config.device)
    if config.device != "auto" and (device.type, device.index or 0) != (base.device.type, base.device.index or 0):
        raise SoftPromptError(f"device {config.device!r} was asked for, but the model given sits on {base.device}")
    if config.dtype != "auto" and resolve_dtype(config.dtype, device) != base.dtype:
        raise SoftPromptError(f"dtype {config.dtype!r} was asked for, but the model given is in {base.dtype}")


def _check_tracker(log_with: str) -> None:
    if log_with and log_with not in LOGGER_TYPE_TO_CLASS:
        raise unknown_choice("tracker (log_with)", log_with, LOGGER_TYPE_TO_CLASS)
    if log_with and log_with not in {t.value for t in get_available_trackers()}:  # else skipped silently
        raise SoftPromptError(f"log_with {log_with!r} needs its package installed (tensorboard: pip install tensorboardX==2.6.5)")
