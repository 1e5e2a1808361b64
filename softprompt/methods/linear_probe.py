"""Linear probe: the frozen ViT's final CLS state read by a trained linear head, nothing else changed."""
from __future__ import annotations

from dataclasses import dataclass

from ..backbones import BatchInputs, FrozenModel, Injection
from .base import HEAD_LEARNING_RATE, ClassifierConfig, PromptMethod


@dataclass
class LinearProbeConfig(ClassifierConfig):
    learning_rate: float = HEAD_LEARNING_RATE
    """Learning rate of the head (the only thing trained)."""


class LinearProbe(PromptMethod):
    """The baseline every visual prompt must beat: class scores W h_CLS + b, with only W and b trained."""

    name = "linear-probe"
    description = "baseline, no prompt: a linear head on the frozen model's final CLS state"
    paper = "the standard frozen-feature protocol (e.g. Oquab et al. DINOv2. TMLR 2024, linear evaluation)"
    config_class = LinearProbeConfig
    injects = frozenset()
    kinds = frozenset({"vision"})

    def prompt_length(self) -> int:
        return 0

    def initialize(self, base: FrozenModel, task) -> None:
        self.fit_head(base, task)

    def forward(self, inputs: BatchInputs) -> Injection:
        return Injection(head=self.head)
