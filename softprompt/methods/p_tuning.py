"""P-Tuning: the prompt is produced by a small encoder (MLP or bi-LSTM + MLP) from trainable inputs."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import unknown_choice
from ..backbones import BatchInputs, FrozenModel, Injection
from .base import MethodConfig, PromptMethod, text_embeddings

ENCODERS = ("mlp", "lstm")


@dataclass
class PTuningConfig(MethodConfig):
    num_virtual_tokens: int = 20
    """Length m of the soft prompt."""
    encoder: str = "mlp"
    """mlp: Linear-ReLU-Linear-ReLU-Linear; lstm: a bi-LSTM followed by Linear-ReLU-Linear."""
    encoder_hidden_size: int = 256
    """Width of the encoder's hidden layers."""
    init_text: str = ""
    """Text whose embeddings initialise the encoder's inputs Q; empty means the task's description."""
    learning_rate: float = 1e-2


class PTuning(PromptMethod):
    """Liu et al. 2021: P = Q + f(Q), Q in R^{m x d} trainable, f an MLP or bi-LSTM + MLP.

    Choice left open by the paper: we add the residual Q and zero-initialise f's last layer, so training
    starts exactly from the text-initialised prompt (small models do badly from a random start). The
    encoder is part of the saved tensors, so a run can always be resumed.
    """

    name = "p-tuning"
    description = "prompt produced by an MLP or bi-LSTM encoder over trainable inputs (residual, text init)"
    paper = "Liu et al. GPT Understands, Too. 2021 (arXiv 2103.10385)"
    config_class = PTuningConfig

    def __init__(self, config: PTuningConfig, base: FrozenModel):
        super().__init__(config, base)
        if config.encoder not in ENCODERS:
            raise unknown_choice("encoder", config.encoder, ENCODERS)
        d, h = base.embedding_size, config.encoder_hidden_size
        self.inputs = nn.Parameter(torch.zeros(config.num_virtual_tokens, d))  # Q: (m, d)
        if config.encoder == "lstm":
            self.lstm = nn.LSTM(d, h // 2, num_layers=2, bidirectional=True, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d))
        else:
            self.mlp = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def initialize(self, base: FrozenModel, task) -> None:
        with torch.no_grad():
            self.inputs.copy_(text_embeddings(base, self.init_text(task), self.config.num_virtual_tokens))

    def prompt_embeddings(self) -> torch.Tensor:
        """The materialised prompt P: (m, d)."""
        hidden = self.lstm(self.inputs.unsqueeze(0))[0].squeeze(0) if self.config.encoder == "lstm" else self.inputs
        return self.inputs + self.mlp(hidden)

    def shared_prefix(self) -> Injection:
        return Injection(embeds=self.prompt_embeddings().unsqueeze(0))

    def forward(self, inputs: BatchInputs) -> Injection:
        return Injection(embeds=self.prompt_embeddings().expand(inputs.batch_size, -1, -1))
