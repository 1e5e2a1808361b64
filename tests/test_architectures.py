"""Every method on every decoder family people tune, as tiny random models built from configs and loaded from
local folders: the whole contract matrix of test_methods_contract.py runs on each (padding invariance, save/load,
cached generation, declarations, answers never shaping their prompt, learning), plus what differs between
families: cached decoding equals recomputing, the prompt KV cache equals the prompt, mixed batches, a
text-initialised prompt reads like the text (embedding scaling, position offsets), and gradient checkpointing
keeps the gradients exact (prefix tuning included)."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from softprompt.backbones import Injection, load_model, prompted_forward
from softprompt.backbones.loading import _smollm2_folder
from softprompt.methods import BASELINES, METHODS, build_method
from softprompt.runtime.batching import encode, make_inputs
from softprompt.runtime.generation import generate_ids
from softprompt.runtime.prefix_cache import PrefixCache, inference_prompt
from softprompt.runtime.scoring import lm_loss
from softprompt.serving.mixed import Row, next_token_logprobs
from softprompt.tuned import TunedPrompt
from test_methods_contract import (  # noqa: F401  (collected here again, on this module's tiny_base)
    test_batched_generation_equals_one_row_at_a_time,
    test_padding_never_changes_a_row,
    test_save_load_round_trip_is_exact,
    test_scoring_an_answer_uses_the_prompt_of_the_context_alone,
    test_what_a_method_declares_is_what_it_returns,
)

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 256}
ARCHITECTURES = {  # model_type -> config options beyond SMALL
    "llama": {"num_key_value_heads": 2},
    "qwen2": {"num_key_value_heads": 2},
    "qwen3": {"num_key_value_heads": 2, "head_dim": 8},
    "gemma3_text": {"num_key_value_heads": 2, "head_dim": 8},  # scales its embeddings by sqrt(d)
    "mistral": {"num_key_value_heads": 2},
    "phi3": {"num_key_value_heads": 2},
    "smollm3": {"num_key_value_heads": 2},
    "gpt2": {"n_positions": 256},  # learned absolute positions
    "opt": {"ffn_dim": 64, "word_embed_proj_dim": 32},  # learned positions with an offset of 2
    "gpt_neox": {},  # Pythia
    "falcon": {},  # multi-query attention: one key/value head
}
ALL_METHODS = {**METHODS, **BASELINES}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def tiny_base(request, tmp_path_factory):
    """A tiny random model of the family, saved as a local folder and loaded as a user's would be."""
    tokenizer = AutoTokenizer.from_pretrained(_smollm2_folder())
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id}
    config = AutoConfig.for_model(request.param, **SMALL, **ARCHITECTURES[request.param], **ids)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return load_model(str(folder))


@pytest.fixture(params=sorted(ALL_METHODS))
def method_name(request):
    return request.param


def contexts(base, task, count=4) -> list[list[int]]:
    return [e.context for e in encode(base, task.test[:count] + task.train[:count], 64)][:count]


def test_cached_decoding_equals_recomputing_the_whole_sequence(method_name, tiny_base, tiny_task, trained_like):
    """Greedy tokens from the KV cache equal those from a full pass over context + tokens so far (which the
    method reads as context + answer, so the answer never shapes the prompt: as during decoding)."""
    method = trained_like(method_name)
    example = tiny_task.test[0]
    context = encode(tiny_base, [example], 64)[0].context
    features = method.instance_features(tiny_base, [example.text])
    cached = generate_ids(tiny_base, method, [context], max_new_tokens=4, features=features)[0]
    recomputed = []
    with torch.no_grad():
        for _ in range(4):
            inputs = make_inputs(tiny_base, [context + recomputed], features, [len(recomputed)])
            logits = prompted_forward(tiny_base, method(inputs), inputs, logits_to_keep=1)[0].logits[0, -1]
            recomputed.append(int(logits.argmax()))
    assert cached == recomputed


def test_gradients_reach_every_trained_parameter_and_no_frozen_weight(method_name, tiny_base, tiny_task, trained_like):
    """(That the loss then falls is checked on the reference model: a 32-wide random model barely responds.)"""
    method = trained_like(method_name).train()
    examples = tiny_task.train[:4]
    lm_loss(tiny_base, method, encode(tiny_base, examples, 64), method.instance_features(tiny_base, [e.text for e in examples]))[0].backward()
    assert all(p.grad is None for p in tiny_base.model.parameters())
    assert [name for name, p in method.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_the_prompt_kv_cache_equals_the_prompt(method_name, tiny_base, tiny_task, trained_like):
    method = trained_like(method_name)
    if method.shared_prefix() is None:
        pytest.skip(f"{method_name} has no input-independent prefix to cache")
    inputs = make_inputs(tiny_base, contexts(tiny_base, tiny_task))
    with torch.no_grad():
        expected = prompted_forward(tiny_base, method(inputs), inputs, logits_to_keep=1)[0].logits
        cached = prompted_forward(tiny_base, inference_prompt(tiny_base, method, inputs, PrefixCache()), inputs, logits_to_keep=1)[0].logits
    torch.testing.assert_close(cached, expected, atol=1e-4, rtol=1e-4)


def test_a_mixed_batch_gives_every_row_its_solo_logits(tiny_base, tiny_task, trained_like):
    servable = [name for name, cls in METHODS.items()]  # baselines change the weights of the whole batch
    sequences = contexts(tiny_base, tiny_task, count=len(servable))
    rows = []
    for name, ids in zip(servable, sequences * len(servable)):
        method = trained_like(name)
        rows.append(Row(ids, TunedPrompt(tiny_base, method, {}), method.instance_features(tiny_base, [tiny_base.tokenizer.decode(ids)])))
    together = next_token_logprobs(tiny_base, rows)
    for row, logprobs in zip(rows, together):
        torch.testing.assert_close(logprobs, next_token_logprobs(tiny_base, [row])[0], atol=1e-4, rtol=1e-4)


def test_a_text_initialised_prompt_reads_exactly_like_the_text(tiny_base):
    """Catches embedding scaling (Gemma multiplies by sqrt(d) inside its embedding layer) and position offsets
    (OPT, GPT-2): [prompt made of the text's embeddings; x] must give the bare model's logits on [text; x]."""
    text = "Classify the sentiment of the review."
    text_ids = tiny_base.tokenizer(text, add_special_tokens=False)["input_ids"]
    method = build_method("prompt-tuning", tiny_base, {"num_virtual_tokens": len(text_ids), "init_text": text})
    method.initialize(tiny_base, None)
    x = tiny_base.tokenizer("Review: a triumph\nSentiment:")["input_ids"]
    with torch.no_grad():
        prompted = prompted_forward(tiny_base, method(make_inputs(tiny_base, [x])), make_inputs(tiny_base, [x]))[0].logits[0, -len(x):]
        bare_inputs = make_inputs(tiny_base, [text_ids + x])
        bare = prompted_forward(tiny_base, Injection(), bare_inputs)[0].logits[0, -len(x):]
    torch.testing.assert_close(prompted, bare, atol=1e-4, rtol=1e-4)


@contextmanager
def checkpointing(base):
    base.enable_checkpointing()
    try:
        yield
    finally:
        base.disable_checkpointing()


def test_gradient_checkpointing_keeps_every_gradient_exact(method_name, tiny_base, tiny_task, trained_like):
    """PEFT refuses prefix tuning with checkpointing (its cache is appended to twice when a layer is
    recomputed); here the prefix is read-only and hooks live until the backward pass: same gradients."""
    batch = encode(tiny_base, tiny_task.train[:4], 64)
    inner = next(m for m in tiny_base.layers[0].children() if list(m.parameters()))  # runs inside the block's forward

    def gradients_and_block_runs():
        method = trained_like(method_name).train()
        features = method.instance_features(tiny_base, [e.text for e in tiny_task.train[:4]])
        calls = []
        handle = inner.register_forward_pre_hook(lambda *args: calls.append(1))
        try:
            lm_loss(tiny_base, method, batch, features)[0].backward()
        finally:
            handle.remove()
        tiny_base.release_hooks()
        return {name: p.grad for name, p in method.named_parameters() if p.grad is not None}, len(calls)

    plain, runs = gradients_and_block_runs()
    with checkpointing(tiny_base):
        assert tiny_base.checkpointing
        recomputed, checkpointed_runs = gradients_and_block_runs()
    assert checkpointed_runs == 2 * runs  # run again in the backward pass: the block really was recomputed
    assert plain.keys() == recomputed.keys() and plain
    for name in plain:
        torch.testing.assert_close(recomputed[name], plain[name], atol=1e-5, rtol=1e-4)


def test_the_families_report_their_own_cache_layout(tiny_base):
    """GPT-2 and OPT name no key/value heads, Falcon is multi-query: the layout comes from the cache itself."""
    heads = ARCHITECTURES[tiny_base.config.model_type].get("num_key_value_heads") or (1 if tiny_base.config.model_type == "falcon" else 4)
    assert tiny_base.kv_layout == (heads, 8)
