"""The causal-LM backbone: a frozen decoder-only model, its tokenizer, and the one forward pass that reads
a method's `Injection` (virtual tokens, per-layer keys/values, an input update, layer hooks) before the text."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import torch

from .hooks import injection_hooks
from .injection import BatchInputs, Injection

if TYPE_CHECKING:  # importing transformers' models loads accelerate: only where a model is really run
    from transformers import PreTrainedModel


@dataclass
class FrozenModel:
    """A frozen model, its tokenizer, and what a prompt needs to know about it."""

    kind: ClassVar[str] = "text"
    """What the backbone reads and how its answers are scored (runtime/kinds.py): a causal LM scores answer tokens."""
    name: str
    model: "PreTrainedModel"
    tokenizer: object
    fingerprint: str

    @property
    def config(self):
        return self.model.config.get_text_config()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def embedding_size(self) -> int:
        """Width of the input embeddings a prompt is made of (OPT-350m's differ from its hidden size)."""
        return self.model.get_input_embeddings().embedding_dim

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    @cached_property
    def kv_layout(self) -> tuple[int, int]:
        """(key/value heads, head width) of every layer's cache, read off the model's own cache after one token:
        configs name them differently (GPT-2, Falcon's multi-query, Gemma's head_dim), the cache does not."""
        with torch.no_grad():
            cache = self.model(input_ids=torch.zeros(1, 1, dtype=torch.long, device=self.device), use_cache=True).past_key_values
        shapes = {tuple(layer.keys.shape[1::2]) for layer in cache.layers}
        if len(shapes) != 1:
            raise ValueError(f"{type(self.model).__name__} has layers of different key/value shapes {sorted(shapes)}")
        return shapes.pop()

    @property
    def num_kv_heads(self) -> int:
        return self.kv_layout[0]

    @property
    def head_dim(self) -> int:
        return self.kv_layout[1]

    @property
    def max_length(self) -> int:
        return getattr(self.config, "max_position_embeddings", None) or 2048

    @cached_property
    def layers(self) -> torch.nn.ModuleList:
        """The decoder blocks, in order (hooks that act before each layer attach here): the one module list
        with a block per layer, whatever the family calls it (`layers`, GPT-2's and Falcon's `h`)."""
        blocks = [m for m in self.model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == self.num_layers]
        if not blocks:
            raise ValueError(f"{type(self.model).__name__}: no list of {self.num_layers} decoder blocks found")
        return blocks[0]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The model's own input embeddings of `input_ids` (Gemma's scaling included)."""
        return self.model.get_input_embeddings()(input_ids.to(self.device))

    @property
    def embedding_matrix(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    @property
    def checkpointing(self) -> bool:
        """Whether gradient checkpointing is on (`enable_checkpointing`)."""
        return any("forward" in vars(block) for block in self.layers)

    def enable_checkpointing(self) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them (torch's non-reentrant
        checkpoint around each block's forward, in passes with gradients only). Not HF's own switch: it needs the
        blocks in training mode, which turns on functional dropout (OPT), and it drops the prefix cache."""
        for block in self.layers:
            block.forward = functools.partial(_checkpointed, block.forward)

    def disable_checkpointing(self) -> None:
        for block in self.layers:
            vars(block).pop("forward", None)

    @property
    def embedding_std(self) -> float:
        """The spread of the embedding table's entries (the scale of random prompts and projections)."""
        return float(self.embedding_matrix.detach().float().std())

    _pending_hooks: list = field(default_factory=list, init=False, repr=False)
    """Hooks of the last prompted pass, kept until the next one when checkpointing will recompute that pass."""

    def release_hooks(self) -> None:
        for handle in self._pending_hooks:
            handle.remove()
        self._pending_hooks.clear()


def _checkpointed(forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)


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
    A method's tensors (float32 master weights) are cast to the model's dtype where they meet it.
    """
    base.release_hooks()
    embeds, mask = inputs.input_embeds, inputs.attention_mask
    batch, dtype = embeds.shape[0], embeds.dtype
    if injection.input_delta is not None:
        embeds = embeds + injection.input_delta.to(dtype)
    if injection.embeds is not None:
        embeds = torch.cat([injection.embeds.to(dtype), embeds], dim=1)
        mask = torch.cat([mask.new_ones(batch, injection.embeds.shape[1]), mask], dim=1)
    cache, cached = _cache(base, injection, dtype, use_cache)
    if cached:
        prefix_mask = injection.key_values_mask if injection.key_values_mask is not None else mask.new_ones(batch, cached)
        mask = torch.cat([prefix_mask.to(mask.dtype), mask], dim=1)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)[:, cached:]  # (B, m_embeds + T)
    with injection_hooks(base, injection):
        output = base.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
        )
    return output, mask


def _cache(base: FrozenModel, injection: Injection, dtype: torch.dtype, use_cache: bool):
    """The cache object a pass starts from, and how many prefix positions it holds. A pass that keeps no cache
    gets a read-only prefix: checkpointing's recomputation of a layer must see the prefix, not prefix + text."""
    from transformers import DynamicCache

    if not injection.key_values:
        return (DynamicCache(config=base.model.config) if use_cache else None), 0
    key_values = [(k.to(dtype), v.to(dtype)) for k, v in injection.key_values]
    cache = DynamicCache(ddp_cache_data=key_values, config=base.model.config)
    if not use_cache:
        for layer, (keys, values) in zip(cache.layers, key_values):
            layer.update = lambda k, v, *args, prefix=(keys, values), **kwargs: (
                torch.cat([prefix[0], k], dim=-2), torch.cat([prefix[1], v], dim=-2))
    return cache, key_values[0][0].shape[2]


def prefix_key_values(base: FrozenModel, prefix: Injection) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer keys/values (1, h_kv, M, d_head) of a batch-1 prefix (embeds and/or key_values), from
    the frozen model run over the prefix alone at positions 0..M-1. With causal attention nothing after
    the prefix changes them, so they stand in for the prefix in every later pass."""
    if prefix.embeds is None:
        return [(k.to(base.dtype), v.to(base.dtype)) for k, v in prefix.key_values]
    nothing = torch.zeros(1, 0, dtype=torch.long, device=base.device)
    empty = BatchInputs(nothing, nothing, base.embed(nothing))
    output, _ = prompted_forward(base, prefix, empty, logits_to_keep=1, use_cache=True)
    return [(layer.keys, layer.values) for layer in output.past_key_values.layers]
