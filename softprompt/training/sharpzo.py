"""SharpZO (Yang et al., SharpZO: Hybrid Sharpness-Aware Vision Language Model Prompt Tuning via Forward-Only
Passes, NeurIPS 2025, arXiv 2506.20990), on the BBT subspace p = p0 + A z of cma_es.py.

Stage 1 (the first `cma_steps` steps), sharpness-aware CMA-ES: each step estimates the gradient at the mean m
from two forward passes along a random direction u (g = (L(m + eps u) - L(m - eps u)) / 2 eps * u), and scores
every candidate z_i at z_i + rho g / |g|, the worst nearby point SAM would read, so that CMA-ES prefers flat
regions; CMA-ES is told the losses of the z_i themselves.
Stage 2, sparse zeroth-order SGD from the stage-1 mean: two-point estimates along u masked to a subset of z's
coordinates. The paper's Z-pruning scores coordinate i by z_i^2 * zscore(|g_i|) and searches only the `density`
share with the lowest scores, leaving out those where a large value meets a large (noisy) gradient.

Where this differs from the paper, to fit a budget of a few hundred forward passes: the paper scores coordinates
from a coordinate-wise gradient estimate (2k forward passes, more than a whole run here); g_i here is the mean of
the stage's own two-point estimates so far, and the mask is dense until `mask_every` steps have gathered them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SoftPromptError
from .cma_es import SeededCMA, SubspaceConfig
from .optimizer_api import Optimizer, StepLoss, check_finite
from .subspace import RandomSubspace

DEFAULT_LEARNING_RATE = 1e-2


@dataclass
class SharpZOConfig(SubspaceConfig):
    cma_steps: int = 10
    """Steps of stage 1 (sharpness-aware CMA-ES, population + 2 forward passes each); later steps are stage 2."""
    sharpness_radius: float = 1.0
    """rho: how far from each candidate, along the estimated gradient, stage 1 reads its loss (in z units)."""
    eps: float = 1e-2
    """Two-point estimate's perturbation size in z, both stages."""
    density: float = 0.1
    """Share of z's coordinates stage 2 searches once the mask is set."""
    mask_every: int = 20
    """Stage-2 steps between refreshes of the sparse mask."""

    def __post_init__(self):
        super().__post_init__()
        if self.eps == 0 or not 0 < self.density <= 1 or self.mask_every < 1:
            raise SoftPromptError(f"sharpzo needs eps > 0, 0 < density <= 1 and mask_every >= 1, got "
                                  f"{self.eps!r}, {self.density!r} and {self.mask_every!r}")


class SharpZO(Optimizer):
    name = "sharpzo"
    description = (f"forward passes only: SharpZO's sharpness-aware CMA-ES warm-up, then sparse zeroth-order SGD on z "
                   f"(learning rate {DEFAULT_LEARNING_RATE:g})")
    config_class = SharpZOConfig
    reads = frozenset({"learning_rate"})  # the zeroth-order stage's rate; the CMA-ES stage has sigma

    def __init__(self, method, config, total_steps: int, base=None):
        self.options = self.options(config.optimizer_options)
        self.subspace = RandomSubspace(method, base.embedding_std * self.options.spread, self.options.intrinsic_dim, config.seed)
        self.search = SeededCMA(self.options, config.seed)
        self.directions = torch.Generator().manual_seed(config.seed)  # u, both stages
        self.lr = config.learning_rate or DEFAULT_LEARNING_RATE
        self.steps = 0
        self.z = torch.zeros(self.options.intrinsic_dim, dtype=torch.float64)  # stage 2's point
        self.gradient_sum = torch.zeros_like(self.z)  # stage 2's estimates, summed for the mask's scores
        self.mask = torch.ones_like(self.z)

    @classmethod
    def steps_within(cls, options: dict, forward_passes: int) -> int:
        settings = cls.options(options)
        warm_up = settings.cma_steps * (settings.population + 2)
        if forward_passes <= warm_up:
            return forward_passes // (settings.population + 2)
        return settings.cma_steps + (forward_passes - warm_up) // 2

    def step(self, loss: StepLoss) -> float:
        stage_one = self.steps < self.options.cma_steps
        value = self._sharpness_aware_cma(loss) if stage_one else self._sparse_zo(loss)
        self.steps += 1
        return value

    def _two_point(self, loss: StepLoss, z: torch.Tensor, direction: torch.Tensor) -> tuple[float, float]:
        """The losses at z +- eps * direction, scored together; returns (projected gradient, mean loss)."""
        eps = self.options.eps
        plus, minus = loss.candidates([self.subspace.candidate(z + eps * direction), self.subspace.candidate(z - eps * direction)])
        projection = (plus - minus) / (2 * eps)
        check_finite(projection, "the projected gradient")
        return projection, (plus + minus) / 2

    def _direction(self) -> torch.Tensor:
        return torch.randn(self.options.intrinsic_dim, generator=self.directions, dtype=torch.float64)

    def _sharpness_aware_cma(self, loss: StepLoss) -> float:
        mean, direction = self.search.mean, self._direction()
        projection, _ = self._two_point(loss, mean, direction)
        gradient = projection * direction
        shift = self.options.sharpness_radius * gradient / gradient.norm().clamp(min=1e-12)
        points = self.search.ask()
        losses = loss.candidates([self.subspace.candidate(torch.from_numpy(z) + shift) for z in points])
        self.search.tell(points, losses)
        self.z = self.search.mean
        self.subspace.write(self.z)
        return sum(losses) / len(losses)

    def _sparse_zo(self, loss: StepLoss) -> float:
        zo_steps = self.steps - self.options.cma_steps
        if zo_steps and zo_steps % self.options.mask_every == 0:
            self.mask = self._z_pruning_mask()
        direction = self._direction() * self.mask
        projection, value = self._two_point(loss, self.z, direction)
        self.gradient_sum += projection * direction
        self.z = self.z - self.lr * projection * direction
        self.subspace.write(self.z)
        return value

    def _z_pruning_mask(self) -> torch.Tensor:
        """1 on the `density` share of coordinates with the lowest z_i^2 * zscore(|g_i|), 0 elsewhere."""
        magnitude = self.gradient_sum.abs()
        scores = self.z ** 2 * (magnitude - magnitude.mean()) / (magnitude.std() + 1e-12)
        kept = scores.argsort()[:max(1, round(self.options.density * len(scores)))]
        return torch.zeros_like(self.z).index_fill_(0, kept, 1.0)

    @property
    def learning_rate(self) -> float:
        return float(self.search.es.sigma) if self.steps < self.options.cma_steps else self.lr

    def state_dict(self) -> dict:
        return {**self.search.state_dict(), **self.subspace.state_dict(), "directions": self.directions.get_state(),
                "steps": self.steps, "z": self.z, "gradient_sum": self.gradient_sum, "mask": self.mask}

    def load_state_dict(self, state: dict) -> None:
        self.subspace.load_state_dict(state)
        self.search.replay(state)
        self.directions.set_state(state["directions"])
        self.steps = state["steps"]
        self.z, self.gradient_sum, self.mask = state["z"].clone(), state["gradient_sum"].clone(), state["mask"].clone()
