"""A bounded LRU cache of task-level prompts turned into per-layer keys/values.

With causal attention a prompt read before the text never sees the text, so its keys/values are the same
for every input: computed once per prompt, they make a prompted request cost what a bare one costs.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import replace

import torch

from ..backbones import BatchInputs, FrozenModel, Injection, prefix_key_values
from .remote import RemoteModel  # a served model computes no keys/values here


class PrefixCache:
    """method -> its shared prefix's keys/values, keyed by the method object and its parameters' versions
    (an in-place update, as an optimizer step makes, is a new entry); at most `max_entries` kept.
    `hits` and `misses` count look-ups of a method that has a shared prefix: served from the cache, or computed."""

    def __init__(self, max_entries: int = 64):
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _key(method) -> tuple:
        return id(method), tuple(p._version for p in method.parameters())

    def __contains__(self, method) -> bool:
        entry = self._entries.get(self._key(method))
        return entry is not None and entry[0]() is method

    def key_values(self, base: FrozenModel, method) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The method's shared prefix as per-layer keys/values; None (also remembered) when its prompt depends
        on the input, so that shared_prefix() is asked once per parameter state, not once per batch."""
        key = self._key(method)
        entry = self._entries.get(key)
        found = entry is not None and entry[0]() is method  # the weak reference rules out a reused id()
        if not found:
            with torch.no_grad():
                shared = method.shared_prefix()
                entry = (weakref.ref(method), prefix_key_values(base, shared) if shared is not None else None)
            self._entries[key] = entry
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        if entry[1] is not None:
            self.hits, self.misses = self.hits + found, self.misses + (not found)
        return entry[1]


PREFIX_CACHE = PrefixCache()


def inference_prompt(base: FrozenModel, method, inputs: BatchInputs, cache: PrefixCache = PREFIX_CACHE) -> Injection:
    """`method(inputs)` for inference: outside autograd, a task-level prefix is replaced by its cached
    keys/values (what stays per input, such as DePT's input_delta, is kept)."""
    prompt = method(inputs)
    cached = None if torch.is_grad_enabled() or isinstance(base, RemoteModel) else cache.key_values(base, method)
    if cached is None:
        return prompt
    batch = inputs.batch_size
    key_values = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in cached]
    return replace(prompt, embeds=None, key_values=key_values)
