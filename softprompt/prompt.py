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
    key_values_mask: torch.Tensor | None = None  # (B, m) 0 where a row's prefix is shorter (mixed batches)
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
        prefix_mask = prompt.key_values_mask if prompt.key_values_mask is not None else mask.new_ones(batch, cached)
        mask = torch.cat([prefix_mask.to(mask.dtype), mask], dim=1)
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


def prefix_key_values(base: FrozenModel, prefix: Prompt) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer keys/values (1, h_kv, M, d_head) of a batch-1 prefix (embeds and/or key_values), from
    the frozen model run over the prefix alone at positions 0..M-1. With causal attention nothing after
    the prefix changes them, so they stand in for the prefix in every later pass."""
    if prefix.embeds is None:
        return prefix.key_values
    empty = PromptInputs(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, dtype=torch.long),
                         prefix.embeds.new_zeros(1, 0, prefix.embeds.shape[-1]))
    output, _ = prompted_forward(base, prefix, empty, logits_to_keep=1, use_cache=True)
    return [(layer.keys, layer.values) for layer in output.past_key_values.layers]


def merge_rows(rows: list[tuple[Prompt, PromptInputs]]) -> tuple[Prompt, PromptInputs]:
    """One batch from rows that each carry their own batch-1 prompt, of any method and length.

    Each row becomes [its prompt's embeds; its text (+ its input_delta)], left-padded as a whole, so
    padding never sits between a prompt and its text; its prefix keys/values are left-padded and masked
    (`key_values_mask`), and its layer hook sees only its own row. `prompted_forward` on the result then
    computes every row as it would alone. The merged input_ids carry the text's ids at the end of each row
    (what scoring reads) and 0 under the prompt's embeds.
    """
    sequences, ids = [], []
    for prompt, inputs in rows:
        if inputs.batch_size != 1 or not bool(inputs.attention_mask.all()):
            raise ValueError("merge_rows takes unpadded batch-1 rows")
        embeds = inputs.input_embeds[0] + (prompt.input_delta[0] if prompt.input_delta is not None else 0)
        if prompt.embeds is not None:
            embeds = torch.cat([prompt.embeds[0].to(embeds.dtype), embeds])
        sequences.append(embeds)
        ids.append(torch.cat([inputs.input_ids.new_zeros(len(embeds) - inputs.input_ids.shape[1]), inputs.input_ids[0]]))
    width = max(len(s) for s in sequences)
    batch_embeds = sequences[0].new_zeros(len(rows), width, sequences[0].shape[-1])  # (B, W, d)
    batch_ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for row, (sequence, row_ids) in enumerate(zip(sequences, ids)):
        batch_embeds[row, width - len(sequence):] = sequence
        batch_ids[row, width - len(sequence):] = row_ids
        mask[row, width - len(sequence):] = 1
    prompts = [prompt for prompt, _ in rows]
    key_values, key_values_mask = _merge_key_values(prompts)
    return (Prompt(key_values=key_values, key_values_mask=key_values_mask, before_layer=_row_hooks(prompts, [len(s) for s in sequences])),
            PromptInputs(batch_ids, mask, batch_embeds))


def _merge_key_values(prompts: list[Prompt]):
    """Rows' prefix keys/values left-padded with zeros to the longest, and the (B, M) mask of real ones."""
    present = [p.key_values for p in prompts if p.key_values]
    if not present:
        return None, None
    lengths = [p.key_values[0][0].shape[2] if p.key_values else 0 for p in prompts]
    longest = max(lengths)
    mask = torch.zeros(len(prompts), longest, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, longest - length:] = 1
    merged = []
    for layer in range(len(present[0])):
        first = present[0][layer][0]  # (1, h_kv, M_row, d_head)
        keys = first.new_zeros(len(prompts), first.shape[1], longest, first.shape[3])  # (B, h_kv, M, d_head)
        values = keys.clone()
        for row, (prompt, length) in enumerate(zip(prompts, lengths)):
            if length:
                keys[row, :, longest - length:] = prompt.key_values[layer][0][0]
                values[row, :, longest - length:] = prompt.key_values[layer][1][0]
        merged.append((keys, values))
    return merged, mask


def _row_hooks(prompts: list[Prompt], lengths: list[int]):
    """One `before_layer` that runs each row's own hook on that row's unpadded tail, or None if no row has one."""
    if all(p.before_layer is None for p in prompts):
        return None

    def before_layer(index: int, hidden: torch.Tensor) -> torch.Tensor:  # hidden: (B, W, d)
        rows = list(hidden.unbind(0))
        for row, (prompt, length) in enumerate(zip(prompts, lengths)):
            if prompt.before_layer is not None:
                tail = prompt.before_layer(index, rows[row][-length:].unsqueeze(0))[0]
                rows[row] = torch.cat([rows[row][:-length], tail])
        return torch.stack(rows)
    return before_layer


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
