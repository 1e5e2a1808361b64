"""CaPT: one capsule token whose state at every layer is a task vector plus the input's mean state."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones import BatchInputs, FrozenModel, Injection, masked_mean
from .base import MethodConfig, PromptMethod


@dataclass
class CaptConfig(MethodConfig):
    learning_rate: float = 1e-2


class CapsulePromptTuning(PromptMethod):
    """Liu et al. 2025. One capsule token at position 0. Entering layer i its hidden state is
    S^i = p^i + mean(H^{i-1}), the mean over the real input tokens of the states entering that layer
    (H^0 = E(x)); p in R^{L x d} is all that is trained. Choices the paper leaves open: p starts at zero
    (the capsule is then the pure instance summary), and pad positions never enter the mean.
    """

    name = "capt"
    description = "one capsule token; at every layer a task vector + the mean of the input's hidden states"
    paper = "Liu et al. All You Need is One: Capsule Prompt Tuning with a Single Vector. NeurIPS 2025 (arXiv 2510.16670)"
    config_class = CaptConfig
    injects = frozenset({"embeds", "before_layer"})
    input_dependent = True

    def __init__(self, config: CaptConfig, base: FrozenModel):
        super().__init__(config, base)
        self.task_vectors = nn.Parameter(torch.zeros(base.num_layers, base.hidden_size))  # p: (L, d)

    def prompt_length(self) -> int:
        return 1  # the capsule

    def forward(self, inputs: BatchInputs) -> Injection:
        def capsule(layer: int, hidden: torch.Tensor) -> torch.Tensor:  # hidden: (B, 1 + T, d)
            text = hidden[:, 1:]
            state = self.task_vectors[layer] + masked_mean(text, inputs.context)  # (B, d): the context's mean only
            return torch.cat([state.unsqueeze(1).to(hidden.dtype), text], dim=1)

        placeholder = inputs.input_embeds.new_zeros(inputs.batch_size, 1, inputs.input_embeds.shape[-1])
        return Injection(embeds=placeholder, before_layer=capsule)  # the hook fills position 0 at layer 0 too
