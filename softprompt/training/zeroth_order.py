"""Zeroth-order SGD (MeZO: Malladi et al., Fine-Tuning Language Models with Just Forward Passes, NeurIPS 2023,
arXiv 2305.17333).

Each step reads the loss at theta + eps z and theta - eps z (z ~ N(0, I)) on the same batch; (L+ - L-) / 2 eps is
the gradient's projection on z (SPSA), and theta moves by -lr * projection * z. z is never stored: it is drawn
again from its seed whenever it is needed, and every change is made in place, so the memory is the forward
pass's alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SoftPromptError
from .optimizer_api import Optimizer, OptimizerConfig, StepLoss, check_finite, trainable_parameters

DEFAULT_LEARNING_RATE = 3e-2  # the best of 3e-3, 1e-2, 3e-2 on an SST-2 dev carve (benchmarks/results/forward_only.md)


@dataclass
class ZeroOrderConfig(OptimizerConfig):
    eps: float = 1e-3
    """Perturbation size: the loss is read at theta +- eps z, z ~ N(0, I)."""
    perturbations: int = 1
    """Directions z per step (two forward passes each); their estimates are averaged."""

    def __post_init__(self):
        super().__post_init__()
        if self.eps == 0 or self.perturbations < 1:
            raise SoftPromptError(f"zo-sgd needs eps > 0 and perturbations >= 1, got {self.eps!r} and {self.perturbations!r}")


def perturb(parameters: list[torch.nn.Parameter], seed: int, scale: float) -> None:
    """parameters += scale * z, z ~ N(0, I) drawn from `seed`: the same seed gives the same z."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in parameters:
            parameter.add_(torch.randn(parameter.shape, generator=generator).to(parameter), alpha=scale)


class ZeroOrderSGD(Optimizer):
    name = "zo-sgd"
    description = f"forward passes only: MeZO's two-point gradient estimate, in place (learning rate {DEFAULT_LEARNING_RATE:g})"
    config_class = ZeroOrderConfig
    reads = frozenset({"learning_rate"})  # a constant rate, as MeZO runs it

    def __init__(self, method, config, total_steps: int, base=None):
        self.options = self.options(config.optimizer_options)
        self.parameters = trainable_parameters(method)
        self.lr = config.learning_rate or DEFAULT_LEARNING_RATE
        self.seeds = torch.Generator().manual_seed(config.seed)  # one seed per direction, drawn in order

    @classmethod
    def steps_within(cls, options: dict, forward_passes: int) -> int:
        return forward_passes // (2 * cls.options(options).perturbations)

    def step(self, loss: StepLoss) -> float:
        eps, count = self.options.eps, self.options.perturbations
        seeds = torch.randint(2**62, (count,), generator=self.seeds).tolist()
        projections, losses = [], []
        for seed in seeds:
            perturb(self.parameters, seed, eps)
            plus = loss(False)
            perturb(self.parameters, seed, -2 * eps)
            minus = loss(False)
            perturb(self.parameters, seed, eps)
            projections.append((plus - minus) / (2 * eps))
            losses += [plus, minus]
            check_finite(projections[-1], "the projected gradient")
        for seed, projection in zip(seeds, projections):
            perturb(self.parameters, seed, -self.lr * projection / count)
        return sum(losses) / len(losses)

    @property
    def learning_rate(self) -> float:
        return self.lr

    def state_dict(self) -> dict:
        return {"seeds": self.seeds.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.seeds.set_state(state["seeds"])
