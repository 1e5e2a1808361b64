"""CMA-ES in a random subspace (BBT: Sun et al., ICML 2022, arXiv 2201.03514), with pycma.

Each step asks CMA-ES for `population` points z, scores p0 + A z for all of them on the step's batch (one forward
pass over population x batch rows for methods whose injections stack, see runtime/population.py), tells it the
losses, and sets the method's parameters to the new mean. Sampling draws from the run's own seeded generator, so
the whole search is a function of the seed and the losses: a checkpoint keeps the losses of every step (plain
tensors) and a resumed run replays them through a fresh CMA-ES, checking that it lands on the saved mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SoftPromptError
from .optimizer_api import Optimizer, OptimizerConfig, StepLoss
from .subspace import RandomSubspace


@dataclass
class SubspaceConfig(OptimizerConfig):
    intrinsic_dim: int = 500
    """Size k of the searched subspace: the method's parameters are p0 + A z, z in R^k."""
    population: int = 10
    """Candidates CMA-ES scores per step, all on the step's batch (10 scored better than BBT's 20 on an SST-2 dev
    carve at 450 forward passes: benchmarks/results/forward_only.md)."""
    spread: float = 1.0
    """How far the first candidates lie from p0: the std of each entry of A z, in units of the embeddings' std."""

    def __post_init__(self):
        super().__post_init__()
        if self.intrinsic_dim < 1 or self.population < 2 or self.spread == 0:
            raise SoftPromptError(f"need intrinsic_dim >= 1, population >= 2 and spread > 0, got "
                                  f"{self.intrinsic_dim!r}, {self.population!r} and {self.spread!r}")


class SeededCMA:
    """pycma's CMA-ES from z = 0, sampling from a generator seeded by the run: its state is its losses so far."""

    def __init__(self, options: SubspaceConfig, seed: int):
        import cma  # here: `softprompt list` loads no optimizer machinery

        self.rng = np.random.default_rng(seed)
        self.es = cma.CMAEvolutionStrategy(np.zeros(options.intrinsic_dim), 1.0, inopts={  # sigma 1: A sets the scale
            "popsize": options.population, "randn": lambda *shape: self.rng.standard_normal(shape),
            "seed": np.nan, "verbose": -9})  # seed nan: pycma leaves numpy's global generator alone
        self.losses: list[list[float]] = []

    def ask(self) -> list[np.ndarray]:
        return self.es.ask()

    def tell(self, points: list[np.ndarray], losses: list[float]) -> None:
        self.es.tell(points, losses)
        self.losses.append(list(losses))

    @property
    def mean(self) -> torch.Tensor:
        return torch.from_numpy(self.es.mean.copy())

    def state_dict(self) -> dict:
        return {"losses": torch.tensor(self.losses, dtype=torch.float64), "mean": self.mean}

    def replay(self, state: dict) -> None:
        """Bring a fresh instance to the saved state by telling it the saved losses again."""
        for losses in state["losses"].tolist():
            self.tell(self.ask(), losses)
        if not torch.equal(self.mean, state["mean"]):
            raise SoftPromptError("the checkpoint's CMA-ES state does not replay to its saved mean (another pycma "
                                  "or numpy version?): start the run again without --resume")


class CMAES(Optimizer):
    name = "cma-es"
    description = "forward passes only: BBT's CMA-ES (pycma) on z, the parameters being p0 + A z in a random subspace"
    config_class = SubspaceConfig

    def __init__(self, method, config, total_steps: int, base=None):
        self.options = self.options(config.optimizer_options)
        self.subspace = RandomSubspace(method, base.embedding_std * self.options.spread, self.options.intrinsic_dim, config.seed)
        self.search = SeededCMA(self.options, config.seed)

    @classmethod
    def steps_within(cls, options: dict, forward_passes: int) -> int:
        return forward_passes // cls.options(options).population

    def step(self, loss: StepLoss) -> float:
        points = self.search.ask()
        losses = loss.candidates([self.subspace.candidate(torch.from_numpy(z)) for z in points])
        self.search.tell(points, losses)
        self.subspace.write(self.search.mean)
        return sum(losses) / len(losses)

    @property
    def learning_rate(self) -> float:
        """CMA-ES's step size sigma, which plays the learning rate's part."""
        return float(self.search.es.sigma)

    def state_dict(self) -> dict:
        return {**self.search.state_dict(), **self.subspace.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.subspace.load_state_dict(state)
        self.search.replay(state)
