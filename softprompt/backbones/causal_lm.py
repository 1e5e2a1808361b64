"""The causal-LM backbone: a frozen decoder-only model, its tokenizer, and the one forward pass that reads
a method's `Injection` (virtual tokens, per-layer keys/values, an input update, layer hooks) before the text."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .injection import BatchInputs, Injection

if TYPE_CHECKING:  # importing transformers' models loads accelerate: only where a model is really run
    from transformers import PreTrainedModel


@dataclass
class FrozenModel:
    """A frozen model, its tokenizer, and what a prompt needs to know about it."""

    name: str
    model: "PreTrainedModel"
    tokenizer: object
    fingerprint: str

    @property
    def config(self):
        return self.model.config.get_text_config()

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def num_kv_heads(self) -> int:
        return getattr(self.config, "num_key_value_heads", None) or self.config.num_attention_heads

    @property
    def head_dim(self) -> int:
        return getattr(self.config, "head_dim", None) or self.hidden_size // self.config.num_attention_heads

    @property
    def max_length(self) -> int:
        return getattr(self.config, "max_position_embeddings", None) or 2048

    @property
    def layers(self) -> torch.nn.ModuleList:
        """The decoder blocks, in order (hooks that act before each layer attach here)."""
        return self.model.get_decoder().layers

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(input_ids)

    @property
    def embedding_matrix(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    @property
    def embedding_std(self) -> float:
        """The spread of the embedding table's entries (the scale of random prompts and projections)."""
        return float(self.embedding_matrix.detach().float().std())


def prompted_forward(
    base: FrozenModel,
    injection: Injection,
    inputs: BatchInputs,
    logits_to_keep: int = 0,
    use_cache: bool = False,
):
    """Run the frozen model on [prompt; text]. Returns the HF output (logits of the last `logits_to_keep`
positions) and the full attention mask over prompt + text, which decoding extends.

    Text is left-padded, so padding may sit between the prompt and the text: the attention mask hides it
    and position ids count only real tokens, which makes every row compute exactly what it would alone.
    """
    from transformers import DynamicCache

    embeds, mask = inputs.input_embeds, inputs.attention_mask
    batch = embeds.shape[0]
    if injection.input_delta is not None:
        embeds = embeds + injection.input_delta
    if injection.embeds is not None:
        embeds = torch.cat([injection.embeds.to(embeds.dtype), embeds], dim=1)
        mask = torch.cat([mask.new_ones(batch, injection.embeds.shape[1]), mask], dim=1)
    cache, cached = None, 0
    if injection.key_values:
        cache = DynamicCache(ddp_cache_data=injection.key_values, config=base.model.config)
        cached = injection.key_values[0][0].shape[2]
        prefix_mask = injection.key_values_mask if injection.key_values_mask is not None else mask.new_ones(batch, cached)
        mask = torch.cat([prefix_mask.to(mask.dtype), mask], dim=1)
    elif use_cache:
        cache = DynamicCache(config=base.model.config)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)[:, cached:]  # (B, m_embeds + T)
    with _layer_hooks(base, injection.before_layer), weight_hooks(base, injection.weight_updates):
        output = base.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
        )
    return output, mask


def prefix_key_values(base: FrozenModel, prefix: Injection) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer keys/values (1, h_kv, M, d_head) of a batch-1 prefix (embeds and/or key_values), from
    the frozen model run over the prefix alone at positions 0..M-1. With causal attention nothing after
    the prefix changes them, so they stand in for the prefix in every later pass."""
    if prefix.embeds is None:
        return prefix.key_values
    empty = BatchInputs(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, dtype=torch.long),
                         prefix.embeds.new_zeros(1, 0, prefix.embeds.shape[-1]))
    output, _ = prompted_forward(base, prefix, empty, logits_to_keep=1, use_cache=True)
    return [(layer.keys, layer.values) for layer in output.past_key_values.layers]


@contextmanager
def weight_hooks(base: FrozenModel, updates: dict | None):
    """Add `updates[path](input)` to the output of each named module, for the passes run inside the block."""
    if not updates:
        yield
        return
    modules = dict(base.model.named_modules())
    handles = [modules[path].register_forward_hook(lambda module, args, output, update=update: output + update(args[0]))
               for path, update in updates.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


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
