"""The interface every optimizer implements, and what the trainer hands it each step.

An optimizer is built from the method (its `parameter_groups()`), the TrainConfig (with its own options in
`optimizer_options`, typed by its `config_class`) and the run's step count. Each step it gets a `StepLoss`:
calling it runs the step's batches under the current parameters and returns their mean loss, back-propagating
first when asked; `candidates` scores other values of the parameters on the same batches. The trainer never asks
which optimizer it holds.
"""
from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from ..configs import at_least, check_types, from_options
from ..runtime.population import Candidate


SCHEDULE_OPTIONS = ("learning_rate", "warmup_ratio", "warmup_steps", "lr_schedule", "weight_decay", "max_grad_norm")
"""TrainConfig's options of how parameters are updated: an optimizer reads some of them (its `reads`)."""


class NonFiniteUpdate(FloatingPointError):
    """The update would write NaN or inf into the parameters; nothing was changed."""


@dataclass
class OptimizerConfig:
    """An optimizer's own options: `softprompt train --optimizer NAME --help` lists them."""

    def __post_init__(self):
        check_types(self)
        hints = typing.get_type_hints(type(self))
        at_least(self, 0, *(name for name, hint in hints.items() if hint in (int, float)))


class StepLoss(Protocol):
    def __call__(self, backward: bool) -> float:
        """The mean loss of the step's batches under the current parameters (back-propagated if `backward`)."""

    def candidates(self, values: list[Candidate]) -> list[float]:
        """The mean loss of the same batches under each candidate's parameter values, never building a graph."""


class Optimizer(ABC):
    name: ClassVar[str]
    description: ClassVar[str]  # one line, shown by `softprompt list`
    config_class: ClassVar[type[OptimizerConfig]] = OptimizerConfig
    needs_gradients: ClassVar[bool] = False  # back-propagates: the model must run here (not through --remote)
    reads: ClassVar[frozenset[str]] = frozenset()  # the SCHEDULE_OPTIONS of TrainConfig it uses; the others are refused

    @abstractmethod
    def step(self, loss: StepLoss) -> float:
        """One update on the current batches; returns their loss."""

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

    @classmethod
    @abstractmethod
    def steps_within(cls, options: dict, forward_passes: int) -> int:
        """How many steps with these options fit in `forward_passes` forward passes of a batch (a backward pass
        counted as two, as the trainer counts them): what comparing optimizers at equal cost needs."""

    @classmethod
    def options(cls, values: dict) -> OptimizerConfig:
        """This optimizer's typed options from a plain dict, refusing keys it does not have."""
        return from_options(cls.config_class, values, f"optimizer {cls.name!r}")


def trainable_parameters(method: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters an optimizer updates, in a fixed order."""
    return [p for group in method.parameter_groups() for p in group["params"]]


def check_finite(value: float, what: str) -> None:
    if not torch.isfinite(torch.tensor(value)):
        raise NonFiniteUpdate(f"{what} became {value}")
