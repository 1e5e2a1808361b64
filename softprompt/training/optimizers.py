"""How a method's parameters are updated, behind one small interface.

The trainer hands an optimizer a `closure(backward)` that runs the current batch (all its micro-batches)
and returns its mean loss, back-propagating first when `backward` is true. A gradient optimizer calls it
once with backward; a forward-only one (zeroth-order, evolutionary) would call it several times without,
under perturbed parameters. The trainer never asks which optimizer it holds. A new optimizer is one class
here (or in its own module) and one registry line.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch

from ..errors import unknown_choice


class NonFiniteUpdate(FloatingPointError):
    """The update would write NaN or inf into the parameters; nothing was changed."""


class Optimizer(ABC):
    """Built from the method (its `parameter_groups()`), the TrainConfig and the run's step count."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line, shown by `softprompt list`

    @abstractmethod
    def step(self, closure: Callable[[bool], float]) -> float:
        """One update on the current batch; returns the batch's loss."""

    @property
    @abstractmethod
    def learning_rate(self) -> float:
        """The current (scheduled) learning rate, for the log."""

    @abstractmethod
    def state_dict(self) -> dict:
        """Tensors and plain data that make a resumed run continue exactly (checkpoints)."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        ...


class AdamW(Optimizer):
    """AdamW with linear warm-up and decay, gradient clipping, and a refusal of non-finite gradients."""

    name = "adamw"
    description = "back-propagation through the frozen model; AdamW, warm-up + linear decay, clipping"

    def __init__(self, method: torch.nn.Module, config, total_steps: int):
        # here: importing transformers' schedules loads peft, which `softprompt list` never needs
        from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

        groups = method.parameter_groups()
        if config.learning_rate:
            groups = [{**group, "lr": config.learning_rate} for group in groups]
        self.parameters = [p for group in groups for p in group["params"]]
        self.max_grad_norm = config.max_grad_norm
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        warmup = config.warmup_steps or int(config.warmup_ratio * total_steps)
        if config.lr_schedule == "constant":
            self.scheduler = get_constant_schedule_with_warmup(self.optimizer, warmup)
        else:
            self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup, total_steps)

    def step(self, closure: Callable[[bool], float]) -> float:
        loss = closure(True)
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        if not torch.isfinite(norm):  # before the update: non-finite weights must never reach a checkpoint
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteUpdate(f"the gradient norm became {norm.item()}")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    @property
    def learning_rate(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (AdamW,)}


def optimizer_class(name: str) -> type[Optimizer]:
    if name not in OPTIMIZERS:
        raise unknown_choice("optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name]
