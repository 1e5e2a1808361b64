"""The prompt KV cache: a task-level prompt replaced by its precomputed keys/values gives the same logits
and tokens, for every method that declares one; memory stays bounded."""
from __future__ import annotations

import pytest
import torch

from softprompt.tuned import TunedPrompt
from softprompt.runtime.batching import encode, make_inputs
from softprompt.runtime.generation import generate_ids
from softprompt.methods import METHODS, build_method
from softprompt.runtime.prefix_cache import PrefixCache, inference_prompt
from softprompt.backbones import prompted_forward

PER_INSTANCE = {name for name, cls in METHODS.items() if cls.input_dependent}


def test_exactly_the_task_level_methods_declare_a_shared_prefix(tiny_base):
    declared = {name for name in METHODS if build_method(name, tiny_base).shared_prefix() is not None}
    assert declared == set(METHODS) - PER_INSTANCE
    assert PER_INSTANCE >= {"capt", "lopa", "idpg", "pt-moe"}


@pytest.mark.parametrize("name", sorted(set(METHODS) - PER_INSTANCE))
def test_cached_prefix_gives_the_same_logits_and_tokens(name, tiny_base, tiny_task, trained_like):
    method = trained_like(name)
    contexts = [e.context for e in encode(tiny_base, tiny_task.train[:5], 128)]
    cache = PrefixCache()
    with torch.no_grad():
        inputs = make_inputs(tiny_base, contexts)
        plain = prompted_forward(tiny_base, method(inputs), inputs)[0].logits
        prompt = inference_prompt(tiny_base, method, inputs, cache)
        cached = prompted_forward(tiny_base, prompt, inputs)[0].logits
    assert prompt.embeds is None and prompt.key_values is not None and method in cache
    mask = inputs.attention_mask.bool()
    torch.testing.assert_close(cached[:, -mask.shape[1]:][mask], plain[:, -mask.shape[1]:][mask], atol=1e-5, rtol=1e-5)
    prompt_fn = TunedPrompt(tiny_base, method, {})
    assert generate_ids(tiny_base, prompt_fn, contexts, 6) == generate_ids(tiny_base, method, contexts, 6)


def test_the_cache_is_bypassed_under_autograd(tiny_base, tiny_task, trained_like):
    method = trained_like("prompt-tuning")
    inputs = make_inputs(tiny_base, [encode(tiny_base, tiny_task.train[:1], 128)[0].context])
    cache = PrefixCache()
    assert inference_prompt(tiny_base, method, inputs, cache).embeds is not None and len(cache) == 0


def test_the_cache_keeps_the_most_recent_prompts_and_follows_updates(tiny_base, trained_like):
    methods = [trained_like("prompt-tuning") for _ in range(3)]
    cache = PrefixCache(max_entries=2)
    for method in methods:
        cache.key_values(tiny_base, method)
    assert len(cache) == 2 and methods[0] not in cache and methods[1] in cache and methods[2] in cache
    first = cache.key_values(tiny_base, methods[1])[0][0].clone()
    with torch.no_grad():
        methods[1].embeddings.add_(1.0)  # an optimizer step: the stale keys/values must not be served
    assert methods[1] not in cache
    assert not torch.equal(cache.key_values(tiny_base, methods[1])[0][0], first)
    assert len(cache) == 2


def test_an_input_dependent_prompt_passes_through_and_is_asked_once_per_state(tiny_base, tiny_task, trained_like, monkeypatch):
    """CaPT has no shared prefix: its prompt is served as computed, and shared_prefix() is not re-asked every batch."""
    method, asked = trained_like("capt"), []
    real = method.shared_prefix
    monkeypatch.setattr(method, "shared_prefix", lambda: asked.append(1) or real())
    inputs = make_inputs(tiny_base, [e.context for e in encode(tiny_base, tiny_task.train[:3], 128)])
    cache = PrefixCache()
    with torch.no_grad():
        prompts = [inference_prompt(tiny_base, method, inputs, cache) for _ in range(3)]
    assert asked == [1] and all(p.key_values is None and p.before_layer is not None for p in prompts)


def test_the_cache_counts_hits_and_misses(tiny_base, trained_like):
    """A miss per parameter state of a task-level prompt, a hit per reuse; an input-dependent prompt counts as neither."""
    tuned, per_input, cache = trained_like("prompt-tuning"), trained_like("capt"), PrefixCache()
    for _ in range(3):
        cache.key_values(tiny_base, tuned)
        cache.key_values(tiny_base, per_input)
    with torch.no_grad():
        tuned.embeddings.add_(1.0)  # a new state: computed again
    cache.key_values(tiny_base, tuned)
    assert (cache.hits, cache.misses) == (2, 2)
