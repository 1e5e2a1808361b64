"""Visual Prompt Tuning on a ViT: VPT-shallow is prompt tuning (the same m trainable tokens, read after CLS), with
VPT's initialisations; VPT-deep gives every layer fresh prompt tokens in the prompt's slots."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..backbones import BatchInputs, FrozenModel, Injection, image_batch
from ..tasks.images import open_image
from .base import HEAD_LEARNING_RATE, ClassifierConfig
from .prompt_tuning import PromptTuning
from .vipamin import vipamin_prompts

VPT_INITS = ("xavier", "vipamin")
VIPAMIN_IMAGES = 64  # training images VIPAMIN looks at (one forward pass; the authors use one batch)


@dataclass
class VptConfig(ClassifierConfig):
    num_virtual_tokens: int = 8
    """Prompt tokens m (per layer for vpt-deep), read between CLS and the patches."""
    init: str = "xavier"
    """xavier: VPT's uniform(-a, a), a = sqrt(6 / (3 * patch^2 + d)); vipamin: VIPAMIN's embedding selection and
    subspace expansion from the training images."""
    vipamin_top_k: int = 8
    """VIPAMIN: patches averaged into each prompt (the authors sweep 2, 8, 32, 128)."""
    vipamin_mix: float = 0.5
    """VIPAMIN: weight of the orthogonal part, (1 - mix) * matched + mix * orthogonal (the authors sweep 0, 0.5, 1)."""
    learning_rate: float = 1e-2
    """Learning rate of the prompt tokens."""
    head_learning_rate: float = HEAD_LEARNING_RATE
    """Learning rate of the classifier head on the CLS state."""


class VisualPromptTuningShallow(PromptTuning):
    """Jia et al. 2022, VPT-shallow: the ViT reads [CLS; P; patches], P in R^{m x d} trainable with a linear head on
    the final CLS state. The computation is prompt tuning's: this class only adds VPT's initialisations (a ViT has
    no vocabulary to start from). Under a ViT's two-way attention the prompt's keys/values depend on the image, so
    there is no prefix to cache."""

    name = "vpt-shallow"
    description = "m trainable tokens after CLS, with a linear head (init: xavier or vipamin)"
    paper = "Jia et al. Visual Prompt Tuning. ECCV 2022; init vipamin: Park & Chung. VIPAMIN. NeurIPS 2025"
    config_class = VptConfig
    kinds = frozenset({"vision"})
    inits = VPT_INITS

    def initialize(self, base: FrozenModel, task) -> None:
        self.fit_head(base, task)
        with torch.no_grad():
            self.set_prompts(self._start(base, task))

    def set_prompts(self, prompts: torch.Tensor) -> None:
        """Copy (layers, m, d) starting prompts into the parameters."""
        self.embeddings.copy_(prompts[0])

    def _start(self, base: FrozenModel, task) -> torch.Tensor:
        """(layers, m, d) starting prompts for the first `self.prompt_layers(base)` layers."""
        shape = (self.prompt_layers(base), self.config.num_virtual_tokens, base.hidden_size)
        bound = math.sqrt(6 / (3 * base.config.patch_size ** 2 + base.hidden_size))
        start = torch.empty(shape, device=base.device).uniform_(-bound, bound)
        if self.config.init == "xavier":
            return start
        examples = task.train[:VIPAMIN_IMAGES]
        inputs = image_batch(base, [open_image(e.image) for e in examples])
        return vipamin_prompts(base, inputs, start, self.config.vipamin_top_k, self.config.vipamin_mix)

    def prompt_layers(self, base: FrozenModel) -> int:
        return 1

    def shared_prefix(self) -> None:
        return None

    def forward(self, inputs: BatchInputs) -> Injection:
        return Injection(embeds=self.embeddings.expand(inputs.batch_size, -1, -1), head=self.head)


class VisualPromptTuningDeep(VisualPromptTuningShallow):
    """Jia et al. 2022, VPT-deep: layer 0 reads P_0 after CLS as in VPT-shallow; before every later layer l the
    prompt's slots are overwritten with fresh tokens P_l (what the previous layer made of them is dropped), so
    P in R^{L x m x d}."""

    name = "vpt-deep"
    description = "fresh trainable tokens after CLS at every layer, with a linear head (init: xavier or vipamin)"
    injects = frozenset({"embeds", "before_layer"})

    def __init__(self, config: VptConfig, base: FrozenModel):
        super().__init__(config, base)
        self.deep_embeddings = nn.Parameter(torch.zeros(base.num_layers - 1, config.num_virtual_tokens, base.hidden_size))  # (L-1, m, d)

    def set_prompts(self, prompts: torch.Tensor) -> None:
        super().set_prompts(prompts)
        self.deep_embeddings.copy_(prompts[1:])

    def prompt_layers(self, base: FrozenModel) -> int:
        return base.num_layers

    def forward(self, inputs: BatchInputs) -> Injection:
        m = self.config.num_virtual_tokens

        def fresh_prompt(layer: int, hidden: torch.Tensor) -> torch.Tensor:  # hidden: (B, 1 + m + N, d)
            if layer == 0:
                return hidden
            prompt = self.deep_embeddings[layer - 1].expand(hidden.shape[0], -1, -1).to(hidden.dtype)
            return torch.cat([hidden[:, :1], prompt, hidden[:, 1 + m:]], dim=1)

        return Injection(embeds=self.embeddings.expand(inputs.batch_size, -1, -1), before_layer=fresh_prompt, head=self.head)
