"""Prompt Tuning: m trainable input embeddings read before the text."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..errors import unknown_choice
from ..backbones import BatchInputs, FrozenModel, Injection
from .base import MethodConfig, PromptMethod, text_embeddings

INITS = ("text", "vocab", "random")


@dataclass
class PromptTuningConfig(MethodConfig):
    num_virtual_tokens: int = 20
    """Length m of the soft prompt."""
    init: str = "text"
    """text: embeddings of init_text (repeated to m tokens); vocab: sampled vocabulary rows; random: N(0, std of the vocabulary)."""
    init_text: str = ""
    """Text for init=text; empty means the task's own description."""
    learning_rate: float = 3e-2


def initial_embeddings(base: FrozenModel, init: str, text: str, length: int, seed: int = 0) -> torch.Tensor:
    """(length, d) starting values for a prompt, from text, sampled vocabulary, or noise."""
    generator = torch.Generator().manual_seed(seed)
    if init == "text":
        return text_embeddings(base, text, length)
    if init == "vocab":
        # Sample from the first 5000 rows: BPE vocabularies put common whole words first.
        table = base.embedding_matrix.detach()
        rows = torch.randint(0, min(5000, table.shape[0]), (length,), generator=generator)
        with torch.no_grad():
            return base.embed(rows).float()
    if init == "random":  # a model served elsewhere reports its width and spread: no table needed
        return torch.randn(length, base.embedding_size, generator=generator) * base.embedding_std
    raise unknown_choice("init", init, INITS)


class PromptTuning(PromptMethod):
    """Lester et al. 2021: the model reads [P; E(x)] with P in R^{m x d} trainable."""

    name = "prompt-tuning"
    description = "m trainable input embeddings before the text (init: text, vocab or random)"
    paper = "Lester, Al-Rfou, Constant. The Power of Scale for Parameter-Efficient Prompt Tuning. EMNLP 2021"
    config_class = PromptTuningConfig
    inits: ClassVar[tuple[str, ...]] = INITS

    def __init__(self, config: PromptTuningConfig, base: FrozenModel):
        super().__init__(config, base)
        if config.init not in self.inits:
            raise unknown_choice("init", config.init, self.inits)
        self.embeddings = nn.Parameter(torch.zeros(config.num_virtual_tokens, base.embedding_size))  # (m, d)

    def initialize(self, base: FrozenModel, task) -> None:
        with torch.no_grad():
            self.embeddings.copy_(initial_embeddings(base, self.config.init, self.init_text(task), self.config.num_virtual_tokens))

    def shared_prefix(self) -> Injection:
        return Injection(embeds=self.embeddings.unsqueeze(0))

    def forward(self, inputs: BatchInputs) -> Injection:
        return Injection(embeds=self.embeddings.expand(inputs.batch_size, -1, -1))
