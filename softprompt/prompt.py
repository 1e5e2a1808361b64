"""What a method hands the model for one batch, and how the frozen model runs with it.

The model wrapper never asks which method produced a `Prompt`: it only looks at which parts are set.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
from transformers import DynamicCache

from .models import FrozenModel


@dataclass
class PromptInputs:
    """One batch of (left-padded) text as a method sees it."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T), 0 on padding
    input_embeds: torch.Tensor  # (B, T, d) the frozen model's own embeddings of input_ids
    features: torch.Tensor | None = None  # (B, f) per-example features a method computed once, if any

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]

    def mean_embedding(self) -> torch.Tensor:
        """Mean of the input embeddings over real (non-pad) tokens: (B, d)."""
        mask = self.attention_mask.unsqueeze(-1).to(self.input_embeds.dtype)
        return (self.input_embeds * mask).sum(1) / mask.sum(1).clamp(min=1)


@dataclass
class Prompt:
    """The soft prompt for a batch. Any part may be absent; an empty Prompt runs the bare model."""

    embeds: torch.Tensor | None = None  # (B, m, d) virtual tokens read before the text
    key_values: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer (B, h_kv, m, d_head)
    input_delta: torch.Tensor | None = None  # (B, T, d) added to the text's own embeddings
    before_layer: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    """Rewrites the hidden states (B, m + T, d) entering decoder layer i, during the prompted pass only."""


def prompted_forward(
    base: FrozenModel,
    prompt: Prompt,
    inputs: PromptInputs,
    logits_to_keep: int = 0,
    use_cache: bool = False,
):
    """Run the frozen model on [prompt; text]. Returns the HF output (logits of the last `logits_to_keep`
positions) and the full attention mask over prompt + text, which decoding extends.

    Text is left-padded, so padding may sit between the prompt and the text: the attention mask hides it
    and position ids count only real tokens, which makes every row compute exactly what it would alone.
    """
    embeds, mask = inputs.input_embeds, inputs.attention_mask
    batch = embeds.shape[0]
    if prompt.input_delta is not None:
        embeds = embeds + prompt.input_delta
    if prompt.embeds is not None:
        embeds = torch.cat([prompt.embeds.to(embeds.dtype), embeds], dim=1)
        mask = torch.cat([mask.new_ones(batch, prompt.embeds.shape[1]), mask], dim=1)
    cache, cached = None, 0
    if prompt.key_values:
        cache = DynamicCache(ddp_cache_data=prompt.key_values, config=base.model.config)
        cached = prompt.key_values[0][0].shape[2]
        mask = torch.cat([mask.new_ones(batch, cached), mask], dim=1)
    elif use_cache:
        cache = DynamicCache(config=base.model.config)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)[:, cached:]  # (B, m_embeds + T)
    with _layer_hooks(base, prompt.before_layer):
        output = base.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
        )
    return output, mask


@contextmanager
def _layer_hooks(base: FrozenModel, before_layer):
    """Let `before_layer(i, hidden)` replace the hidden states entering each decoder layer, for one pass."""
    if before_layer is None:
        yield
        return

    def hook_for(index):
        def hook(module, args, kwargs):
            if "hidden_states" in kwargs:
                return args, {**kwargs, "hidden_states": before_layer(index, kwargs["hidden_states"])}
            return (before_layer(index, args[0]), *args[1:]), kwargs
        return hook

    handles = [layer.register_forward_pre_hook(hook_for(i), with_kwargs=True) for i, layer in enumerate(base.layers)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
