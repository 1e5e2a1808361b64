"""Image examples through the ViT backbone: checked once, decoded batch by batch (2,000 test images at 224 px
would take 1.2 GB as pixels), scored by the method's head; the loss is the cross-entropy of the true class."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backbones import FrozenViT, class_logits, image_batch
from ..errors import SoftPromptError
from ..tasks import Example, ImageExample
from ..tasks.images import open_image


@dataclass
class EncodedImage:
    source: object  # what ImageExample.image holds: decoded again for each batch
    label: int | None
    index: int  # position in the example list (to look up cached per-example features)


def encode_images(base: FrozenViT, examples: list[Example], max_length: int = 0) -> list[EncodedImage]:
    """Check every example is an image that decodes (a bad file is named now, not in a training step)."""
    encoded = []
    for index, example in enumerate(examples):
        if not isinstance(example, ImageExample):
            raise SoftPromptError(f"example {index} ({example.text[:60]!r}) is text: {base.name} is a ViT and reads images")
        open_image(example.image)
        encoded.append(EncodedImage(example.image, example.label, index))
    return encoded


def class_scores(base: FrozenViT, prompt_fn, batch: list[EncodedImage], length_normalized: bool = False,
                 features: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C) the head's class scores for each image under the prompt (`length_normalized` is a text option)."""
    inputs = image_batch(base, [open_image(e.source) for e in batch], features)
    return class_logits(base, prompt_fn(inputs), inputs)


def class_loss(base: FrozenViT, prompt_fn, batch: list[EncodedImage], features: torch.Tensor | None = None,
               length_normalized: bool = False) -> tuple[torch.Tensor, int]:
    """Cross-entropy of the true classes, and how many positions (CLS + patches per image) the model read."""
    scores = class_scores(base, prompt_fn, batch, features=features)
    labels = torch.tensor([e.label for e in batch], device=scores.device)
    return torch.nn.functional.cross_entropy(scores, labels), len(batch) * (1 + base.num_patches)
