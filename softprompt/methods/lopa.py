"""LoPA: a task-shared prompt gated by an instance-specific low-rank matrix u(x) v(x)^T."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones.encoders import encode_inputs, encoder_width, pooled_inputs
from ..backbones import BatchInputs, FrozenModel, Injection
from ..errors import SoftPromptError
from .base import MethodConfig, PromptMethod, text_embeddings


@dataclass
class LopaConfig(MethodConfig):
    num_virtual_tokens: int = 20
    """Prompt length m."""
    rank: int = 4
    """Rank r of the instance-specific part u v^T."""
    instance_encoder: str = "minilm-l6"
    """Frozen encoder of the input: an embedded model name; "base" (the frozen model's mean input embedding);
    "base-mean" / "base-last" (its contextual last hidden state, averaged or at the last token: the paper's)."""
    encoder_hidden_size: int = 64
    """Width of the two small networks producing u and v (0: the encoder's own width, as in the paper's code)."""
    dropout: float = 0.0
    """Dropout on the encoding while training (the paper's code: 0.1)."""
    init_text: str = ""
    """Text initialising the shared prompt; empty means the task's description."""
    learning_rate: float = 3e-2


class LowRankPromptAdaptation(PromptMethod):
    """Jain et al. 2024. e = pooled encoding of x; u = reshape_{m x r}(W2u tanh(W1u e)),
    v = reshape_{d x r}(W2v tanh(W1v e)); Z = Z_S * sigmoid(u v^T); the model reads [Z; E(x)].
    Choice left open: Z_S starts at twice the text embeddings and W2u, W2v near zero, so Z starts at the
    text-initialised prompt (sigmoid(0) = 1/2).
    """

    name = "lopa"
    description = "shared prompt gated by an instance-specific low-rank part u(x)v(x)^T from a frozen encoder"
    paper = "Jain et al. Prompt Tuning Strikes Back: Customizing Foundation Models with Low-Rank Prompt Adaptation. NeurIPS 2024"
    config_class = LopaConfig
    input_dependent = True
    # The NLU code (jabhinav/...-LOPA-NLU): the foundation model encodes the input itself (here its last
    # hidden state at the input's last token), generators as wide as the encoder, dropout 0.1, lr 1e-5.
    presets = {"paper": {"method_options": {"instance_encoder": "base-last", "encoder_hidden_size": 0, "dropout": 0.1},
                         "train": {"learning_rate": 1e-5}}}

    def __init__(self, config: LopaConfig, base: FrozenModel):
        super().__init__(config, base)
        if not 0 <= config.dropout < 1:
            raise SoftPromptError(f"dropout must be in [0, 1), got {config.dropout}")
        width = encoder_width(config.instance_encoder, base)
        m, r, d, h = config.num_virtual_tokens, config.rank, base.embedding_size, config.encoder_hidden_size or width
        self.dropout = nn.Dropout(config.dropout)
        self.shared = nn.Parameter(torch.zeros(m, d))  # Z_S: (m, d)
        self.u_net = nn.Sequential(nn.Linear(width, h), nn.Tanh(), nn.Linear(h, m * r))
        self.v_net = nn.Sequential(nn.Linear(width, h), nn.Tanh(), nn.Linear(h, d * r))
        for net in (self.u_net, self.v_net):
            nn.init.normal_(net[-1].weight, std=1e-2)
            nn.init.zeros_(net[-1].bias)

    def initialize(self, base: FrozenModel, task) -> None:
        with torch.no_grad():
            self.shared.copy_(2 * text_embeddings(base, self.init_text(task), self.config.num_virtual_tokens))

    def instance_features(self, base: FrozenModel, texts: list[str]) -> torch.Tensor | None:
        return encode_inputs(self.config.instance_encoder, base, texts)

    def prompt_embeddings(self, encoded: torch.Tensor) -> torch.Tensor:
        """Z for a batch of encoded inputs (B, f): (B, m, d)."""
        m, r = self.config.num_virtual_tokens, self.config.rank
        u = self.u_net(encoded).view(-1, m, r)  # (B, m, r)
        v = self.v_net(encoded).view(-1, self.shared.shape[1], r)  # (B, d, r)
        return self.shared * torch.sigmoid(u @ v.transpose(1, 2))  # (B, m, d)

    def forward(self, inputs: BatchInputs) -> Injection:
        encoded = self.dropout(pooled_inputs(self.config.instance_encoder, inputs))
        return Injection(embeds=self.prompt_embeddings(encoded))
