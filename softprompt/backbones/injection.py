"""The contract between a method and a backbone: what a method sees of a batch (`BatchInputs`) and what
it hands back to be injected into the frozen model (`Injection`). A backbone never asks which method made
an `Injection`: it only looks at which parts are set."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class BatchInputs:
    """One batch of (left-padded) tokens, or of images, as a method sees it."""

    input_ids: torch.Tensor | None  # (B, T); None for images, whose embeddings come from pixels
    attention_mask: torch.Tensor  # (B, T), 0 on padding
    input_embeds: torch.Tensor  # (B, T, d) the frozen model's own embeddings of input_ids
    features: torch.Tensor | None = None  # (B, f) per-example features a method computed once, if any
    context_mask: torch.Tensor | None = None
    """(B, T) 1 on the tokens a method may read (the context); 0 on padding and on an answer being scored.
    None: every real token is context. An input-dependent method must read the input through this mask,
    so it computes while scoring an answer exactly the prompt it computes when generating one."""

    @property
    def batch_size(self) -> int:
        return self.input_embeds.shape[0]

    @property
    def context(self) -> torch.Tensor:
        """(B, T) the context mask (see `context_mask`)."""
        return self.attention_mask if self.context_mask is None else self.context_mask

    def mean_embedding(self) -> torch.Tensor:
        """Mean of the input embeddings over the context tokens, in float32 (what a method's weights are): (B, d)."""
        return masked_mean(self.input_embeds.float(), self.context)


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, d) states averaged over the positions where the (B, T) mask is 1: (B, d)."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


@dataclass
class Injection:
    """What a method injects for a batch. Any part may be absent; an empty Injection runs the bare model."""

    embeds: torch.Tensor | None = None  # (B, m, d) virtual tokens read before the text
    key_values: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer (B, h_kv, m, d_head)
    key_values_mask: torch.Tensor | None = None  # (B, m) 0 where a row's prefix is shorter (mixed batches)
    input_delta: torch.Tensor | None = None  # (B, T, d) added to the text's own embeddings
    before_layer: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    """Rewrites the hidden states (B, m + T, d) entering decoder layer i, during the prompted pass only."""
    weight_updates: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None
    """Module path -> a function of that module's input whose result is added to its output, in every pass
    (decoding too): a change of the frozen weights, as LoRA's, without touching them. It acts on the whole
    batch, so such a method cannot share a mixed batch with other prompts."""
    head: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Class scores (B, C) from the (B, d) state a backbone without an output layer of its own ends in (a ViT's
    CLS state). Not a prompt: every method on such a backbone trains one, so it is not among `injects`."""
