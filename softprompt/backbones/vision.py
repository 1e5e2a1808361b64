"""The ViT backbone: a frozen DINOv2 encoder reading images as [CLS; patches], and the one forward pass that puts a
method's virtual tokens right after CLS, applies its layer hooks and weight updates, and reads class scores off the
final CLS state with the method's trainable head."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..errors import SoftPromptError
from .causal_lm import FrozenModel
from .hooks import injection_hooks
from .injection import BatchInputs, Injection

MAX_PROMPT_TOKENS = 1024  # a ViT has no context limit; this only bounds a mistyped length's memory
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # what DINOv2 was trained with


@dataclass
class FrozenViT(FrozenModel):
    """A frozen `Dinov2Model` that reads images at `image_size` pixels a side (no tokenizer). The resolution is
    part of the fingerprint: a head trained on 8x8 patches reads a 16x16 CLS state differently."""

    kind: ClassVar[str] = "vision"
    image_size: int = 224

    @property
    def embedding_size(self) -> int:
        return self.hidden_size

    @property
    def max_length(self) -> int:
        return MAX_PROMPT_TOKENS

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.config.patch_size) ** 2

    @property
    def embedding_matrix(self) -> torch.Tensor:
        raise SoftPromptError(f"{self.name} is a ViT: it reads pixels and has no vocabulary to initialise a prompt from")

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N, d): the CLS token and the N patch embeddings, position embeddings added (interpolated to
        the image's patch grid, as DINOv2 does)."""
        return self.model.embeddings(pixel_values.to(self.device, self.dtype))

    def pixel_values(self, images: list) -> torch.Tensor:
        """(B, 3, S, S) model input from RGB PIL images: the shorter side resized to S (bicubic), the centre
        S x S kept, scaled to [0, 1] and normalised with ImageNet's mean and std."""
        from PIL import Image

        size, arrays = self.image_size, []
        for image in images:
            scale = size / min(image.size)
            resized = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.BICUBIC)
            left, top = (resized.width - size) // 2, (resized.height - size) // 2
            arrays.append(np.asarray(resized.crop((left, top, left + size, top + size))))  # (S, S, 3) uint8
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255  # (B, 3, S, S)
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
        return (pixels - mean) / std


def image_batch(base: FrozenViT, images: list, features: torch.Tensor | None = None) -> BatchInputs:
    """A batch of RGB PIL images as a method sees it: the frozen embeddings, every position real context."""
    embeds = base.embed(base.pixel_values(images))
    return BatchInputs(None, torch.ones(embeds.shape[:2], dtype=torch.long, device=base.device), embeds, features)


def class_logits(base: FrozenViT, injection: Injection, inputs: BatchInputs) -> torch.Tensor:
    """(B, C) class scores of the images under the injection: [CLS; virtual tokens; patches] through the encoder
    (layer hooks and weight updates on), the final layer norm of the CLS state, the injection's head."""
    if injection.head is None:
        raise SoftPromptError(f"{base.name} is a ViT: it has no answer of its own to score, only a CLS state; a prompt "
                              "for it trains a classifier head on that state (e.g. method linear-probe)")
    if injection.key_values:
        raise SoftPromptError("a ViT's attention takes no prefix keys/values")
    base.release_hooks()
    embeds = inputs.input_embeds  # (B, 1 + N, d)
    if injection.input_delta is not None:
        embeds = embeds + injection.input_delta.to(embeds.dtype)
    if injection.embeds is not None:
        embeds = torch.cat([embeds[:, :1], injection.embeds.to(embeds.dtype), embeds[:, 1:]], dim=1)  # (B, 1 + m + N, d)
    with injection_hooks(base, injection):
        hidden = base.model.encoder(embeds).last_hidden_state
        cls_state = base.model.layernorm(hidden[:, 0])  # (B, d)
    return injection.head(cls_state.float())
