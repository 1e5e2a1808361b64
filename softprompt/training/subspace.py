"""A method's parameters as p0 + A z (BBT: Sun et al., Black-Box Tuning for Language-Model-as-a-Service, ICML
2022, arXiv 2201.03514): a forward-only optimizer searches z in R^k instead of the parameters themselves.

p0 is where the method's own initialisation put them; A is a fixed random projection drawn from the run's seed and
scaled as BBTv2 does (Sun et al., arXiv 2205.11200): entries N(0, s^2) with s = std(embeddings) / (sqrt(k) sigma),
so that A z for z ~ N(0, sigma^2 I) spreads like the model's own embeddings. CMA-ES is invariant to that scale
(sigma and A's 1/sigma cancel), so here sigma is 1 and the spread in embedding units is the one knob (`scale`).
"""
from __future__ import annotations

import math

import torch

from ..errors import SoftPromptError
from ..runtime.population import Candidate
from .optimizer_api import trainable_parameters

MAX_PROJECTION_ENTRIES = 2**27  # 512 MiB of float32: a larger A would dwarf a small model


class RandomSubspace:
    def __init__(self, method: torch.nn.Module, scale: float, dim: int, seed: int):
        """`scale`: the std of each entry of A z for z ~ N(0, I)."""
        self.parameters = trainable_parameters(method)
        self.start = [p.detach().clone() for p in self.parameters]  # p0
        total = sum(p.numel() for p in self.parameters)
        if total * dim > MAX_PROJECTION_ENTRIES:
            raise SoftPromptError(f"a projection from intrinsic_dim {dim} onto the method's {total:,} parameters has "
                                  f"{total * dim:,} entries (the limit is {MAX_PROJECTION_ENTRIES:,}): lower --intrinsic-dim")
        generator = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(total, dim, generator=generator) * (scale / math.sqrt(dim))  # A: (D, k)

    @property
    def dim(self) -> int:
        return self.projection.shape[1]

    def candidate(self, z: torch.Tensor) -> Candidate:
        """The parameters at z: p0 + A z, split back into the method's tensors."""
        flat = self.projection @ z.to(self.projection.dtype)
        values, offset = {}, 0
        for parameter, start in zip(self.parameters, self.start):
            values[parameter] = start + flat[offset:offset + start.numel()].view_as(start).to(start)
            offset += start.numel()
        return values

    def write(self, z: torch.Tensor) -> None:
        """Set the method's parameters to p0 + A z."""
        with torch.no_grad():
            for parameter, value in self.candidate(z).items():
                parameter.copy_(value)

    def state_dict(self) -> dict:
        return {"start": self.start}

    def load_state_dict(self, state: dict) -> None:
        self.start = [tensor.clone() for tensor in state["start"]]
