"""IDPG: an instance-dependent prompt generator over a frozen sentence encoding."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones.encoders import encode_inputs, encoder_width, pooled_inputs
from ..backbones import BatchInputs, FrozenModel, Injection
from .base import MethodConfig, PromptMethod, text_embeddings


@dataclass
class IdpgConfig(MethodConfig):
    num_virtual_tokens: int = 20
    """Prompt length m."""
    instance_encoder: str = "minilm-l6"
    """Frozen encoder of the input (an embedded model name, or "base")."""
    bottleneck_size: int = 16
    """Width of the generator's bottleneck (W_down: f -> this, W_up: this -> m*d)."""
    init_text: str = ""
    """Text initialising the generator's bias (the prompt before any instance signal)."""
    learning_rate: float = 1e-2


class InstanceDependentPromptGeneration(PromptMethod):
    """Wu et al. 2022: P(x) = b + reshape_{m x d}(W_up relu(W_down e(x))). The bias b is the static part;
    it starts at the text embeddings and W_up at zero, so training starts from the text-initialised prompt."""

    name = "idpg"
    description = "prompt generated per input by a bottleneck MLP over a frozen sentence encoding (LoPA's baseline)"
    paper = "Wu et al. IDPG: An Instance-Dependent Prompt Generation Method. NAACL 2022"
    config_class = IdpgConfig
    input_dependent = True

    def __init__(self, config: IdpgConfig, base: FrozenModel):
        super().__init__(config, base)
        m, d = config.num_virtual_tokens, base.embedding_size
        self.down = nn.Linear(encoder_width(config.instance_encoder, base), config.bottleneck_size)
        self.up = nn.Linear(config.bottleneck_size, m * d, bias=False)
        self.bias = nn.Parameter(torch.zeros(m, d))  # b: (m, d)
        nn.init.zeros_(self.up.weight)

    def initialize(self, base: FrozenModel, task) -> None:
        with torch.no_grad():
            self.bias.copy_(text_embeddings(base, self.init_text(task), self.config.num_virtual_tokens))

    def instance_features(self, base: FrozenModel, texts: list[str]) -> torch.Tensor | None:
        return encode_inputs(self.config.instance_encoder, base, texts)

    def forward(self, inputs: BatchInputs) -> Injection:
        encoded = pooled_inputs(self.config.instance_encoder, inputs)
        generated = self.up(torch.relu(self.down(encoded))).view(-1, *self.bias.shape)  # (B, m, d)
        return Injection(embeds=self.bias + generated)
