"""Full fine-tuning, the upper baseline: every linear and LayerNorm weight of the ViT trained, as dense updates that
start at zero. The frozen model is shared (other prompts may run on it), so its weights are never written: each
update is added to its module's output, exact because those outputs are linear in their weights."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones import BatchInputs, FrozenModel, Injection
from .base import HEAD_LEARNING_RATE, ClassifierConfig, PromptMethod


@dataclass
class FullFinetuneConfig(ClassifierConfig):
    learning_rate: float = 1e-4
    """Learning rate of the model's weights."""
    head_learning_rate: float = HEAD_LEARNING_RATE
    """Learning rate of the classifier head (new, so it takes larger steps than the pretrained weights)."""


class FullFinetune(PromptMethod):
    """Every nn.Linear (y = W x + b) and nn.LayerNorm (y = w * norm(x) + b) of the encoder gets W + dW, b + db:
    its output gains dW x + db, resp. dw * norm(x) + db. That is 21.3M of ViT-S's 22.1M weights; the patch and
    position embeddings and the layer scales stay frozen (the embeddings are computed outside the prompted pass)."""

    name = "full-finetune"
    description = "baseline, not a prompt: every linear and norm weight of the ViT trained, with a linear head"
    paper = "the standard transfer protocol (e.g. Jia et al. Visual Prompt Tuning. ECCV 2022, 'Full')"
    config_class = FullFinetuneConfig
    injects = frozenset({"weight_updates"})
    kinds = frozenset({"vision"})

    def __init__(self, config: FullFinetuneConfig, base: FrozenModel):
        super().__init__(config, base)
        self.targets = {path: module for path, module in base.model.named_modules() if isinstance(module, (nn.Linear, nn.LayerNorm))}
        self.weight_deltas = nn.ParameterDict()  # dW per target, its weight's shape
        self.bias_deltas = nn.ParameterDict()
        for path, module in self.targets.items():
            key = path.replace(".", "/")  # a ParameterDict key may not hold dots
            self.weight_deltas[key] = nn.Parameter(torch.zeros_like(module.weight, dtype=torch.float32))
            self.bias_deltas[key] = nn.Parameter(torch.zeros_like(module.bias, dtype=torch.float32))

    def prompt_length(self) -> int:
        return 0

    def initialize(self, base: FrozenModel, task) -> None:
        self.fit_head(base, task)

    def forward(self, inputs: BatchInputs) -> Injection:
        def update(path: str, module: nn.Module):
            key = path.replace(".", "/")
            weight, bias = self.weight_deltas[key], self.bias_deltas[key]
            if isinstance(module, nn.LayerNorm):
                return lambda x: nn.functional.layer_norm(x, module.normalized_shape, weight.to(x.dtype), bias.to(x.dtype), module.eps)
            return lambda x: nn.functional.linear(x, weight.to(x.dtype), bias.to(x.dtype))

        return Injection(weight_updates={path: update(path, module) for path, module in self.targets.items()}, head=self.head)
