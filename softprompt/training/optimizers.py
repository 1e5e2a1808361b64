"""How a method's parameters are updated: AdamW by back-propagation, and forward-only optimizers beside it, all
behind one interface (optimizer_api.py). The trainer never asks which optimizer it holds; a new one is one class
(here or in its own module) and one registry line.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import unknown_choice
from .cma_es import CMAES
from .optimizer_api import SCHEDULE_OPTIONS, NonFiniteUpdate, Optimizer, OptimizerConfig, trainable_parameters
from .sharpzo import SharpZO
from .zeroth_order import ZeroOrderSGD


class AdamW(Optimizer):
    """AdamW with linear warm-up and decay, gradient clipping, and a refusal of non-finite gradients."""

    name = "adamw"
    description = "back-propagation through the frozen model; AdamW, warm-up + linear decay, clipping"
    needs_gradients = True
    reads = frozenset(SCHEDULE_OPTIONS)

    def __init__(self, method: torch.nn.Module, config, total_steps: int, base=None):
        # here: importing transformers' schedules loads peft, which `softprompt list` never needs
        from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

        self.options(config.optimizer_options)  # it has none: refuse any
        groups = method.parameter_groups()
        if config.learning_rate:
            groups = [{**group, "lr": config.learning_rate} for group in groups]
        self.parameters = trainable_parameters(method)
        self.max_grad_norm = config.max_grad_norm
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        warmup = config.warmup_steps or int(config.warmup_ratio * total_steps)
        if config.lr_schedule == "constant":
            self.scheduler = get_constant_schedule_with_warmup(self.optimizer, warmup)
        else:
            self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup, total_steps)

    @classmethod
    def steps_within(cls, options: dict, forward_passes: int) -> int:
        return forward_passes // 3  # a forward and a backward pass

    def step(self, loss: Callable[[bool], float]) -> float:
        value = loss(True)
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        if not torch.isfinite(norm):  # before the update: non-finite weights must never reach a checkpoint
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteUpdate(f"the gradient norm became {norm.item()}")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value

    @property
    def learning_rate(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (AdamW, ZeroOrderSGD, CMAES, SharpZO)}


def optimizer_class(name: str) -> type[Optimizer]:
    if name not in OPTIMIZERS:
        raise unknown_choice("optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name]


__all__ = ["OPTIMIZERS", "NonFiniteUpdate", "Optimizer", "OptimizerConfig", "optimizer_class"]
