"""DePT: a shorter prompt plus a low-rank update of the input embeddings, with two learning rates."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones import BatchInputs, FrozenModel, Injection
from .base import MethodConfig, PromptMethod, text_embeddings


@dataclass
class DeptConfig(MethodConfig):
    num_virtual_tokens: int = 10
    """Length s of the (shorter) prompt."""
    rank: int = 6
    """Rank r of the embedding update A B (defaults give about prompt tuning's 20-token budget)."""
    max_positions: int = 256
    """n_max: input positions that get an update (later ones get none)."""
    alpha: float = 6.0
    """Scale of the update: (alpha / r) A B."""
    init_text: str = ""
    """Text initialising the prompt; empty means the task's description."""
    learning_rate: float = 3e-2
    """Learning rate of the prompt (the paper's 3e-1 suits T5's larger embeddings; SmolLM2's have std 0.14)."""
    embedding_learning_rate: float = 1e-2
    """Learning rate of A and B."""


class DecomposedPromptTuning(PromptMethod):
    """Shi & Lipani 2024: the model reads [P_s; E(x) + (alpha / r) A B], A in R^{n_max x r} indexed by
    the position of each real input token, B in R^{r x d} zero-initialised (so training starts from plain
    prompt tuning)."""

    name = "dept"
    description = "short prompt + low-rank position-wise update of the input embeddings (two learning rates)"
    paper = "Shi & Lipani. DePT: Decomposed Prompt Tuning for Parameter-Efficient Fine-tuning. ICLR 2024"
    config_class = DeptConfig
    injects = frozenset({"embeds", "input_delta"})

    def __init__(self, config: DeptConfig, base: FrozenModel):
        super().__init__(config, base)
        self.embeddings = nn.Parameter(torch.zeros(config.num_virtual_tokens, base.embedding_size))  # P_s: (s, d)
        self.position_factors = nn.Parameter(torch.randn(config.max_positions, config.rank) / config.rank)  # A
        self.feature_factors = nn.Parameter(torch.zeros(config.rank, base.embedding_size))  # B

    def initialize(self, base: FrozenModel, task) -> None:
        with torch.no_grad():
            self.embeddings.copy_(text_embeddings(base, self.init_text(task), self.config.num_virtual_tokens))

    def parameter_groups(self) -> list[dict]:
        return [{"params": [self.embeddings], "lr": self.config.learning_rate},
                {"params": [self.position_factors, self.feature_factors], "lr": self.config.embedding_learning_rate}]

    def shared_prefix(self) -> Injection:
        return Injection(embeds=self.embeddings.unsqueeze(0))  # the input_delta is per input, and added after it

    def forward(self, inputs: BatchInputs) -> Injection:
        mask = inputs.attention_mask
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): index among real tokens (left padding)
        # The input's tokens only: an answer being scored is read as generated tokens are, without the update.
        updated = (inputs.context.bool() & (positions < self.config.max_positions)).unsqueeze(-1)
        delta = self.position_factors[positions.clamp(max=self.config.max_positions - 1)] @ self.feature_factors  # (B, T, d)
        scale = self.config.alpha / self.config.rank
        return Injection(embeds=self.embeddings.expand(inputs.batch_size, -1, -1), input_delta=scale * delta * updated)
