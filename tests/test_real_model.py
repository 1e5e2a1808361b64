"""Checks on the real embedded SmolLM2: parity with PEFT, that text-initialised prompts equal reading the
text, that decoding with the cache matches Hugging Face's generate, and that a prompt learns."""
from __future__ import annotations

import pytest
import torch

from softprompt.runtime.batching import encode, make_inputs

from softprompt.runtime.scoring import lm_loss, no_prompt
from softprompt.runtime.generation import generate_ids
from softprompt.methods import METHODS, build_method
from softprompt.backbones import load_model
from softprompt.backbones import prompted_forward

pytestmark = pytest.mark.real_model
TEXT = "Review: a gorgeous, witty film\nSentiment:"


def test_prompt_tuning_matches_peft_logits(real_base):
    from peft import PromptTuningConfig, get_peft_model

    method = build_method("prompt-tuning", real_base, {"num_virtual_tokens": 6})
    torch.manual_seed(1)
    with torch.no_grad():
        method.embeddings.copy_(torch.randn(6, real_base.hidden_size) * 0.05)
    inputs = make_inputs(real_base, [real_base.tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        ours = prompted_forward(real_base, method(inputs), inputs)[0].logits[0, 6:]
        # A fresh copy for PEFT to wrap, so the shared model stays untouched.
        peft_model = get_peft_model(load_model("smollm2-135m").model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6))
        peft_model.prompt_encoder["default"].embedding.weight.copy_(method.embeddings)
        theirs = peft_model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask).logits[0, 6:]
    assert ours.shape == theirs.shape == (inputs.input_ids.shape[1], real_base.model.config.vocab_size)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["prompt-tuning", "prefix-tuning"])
def test_text_initialised_prompt_equals_reading_the_text(real_base, name):
    """A prompt initialised from text t must act exactly as t written before the input: a check of the
    injection, the positions (prefix: text starts at m) and grouped-query key/value shapes at once."""
    init = "Is this review positive or negative?"
    ids = real_base.tokenizer(init, add_special_tokens=False)["input_ids"]
    method = build_method(name, real_base, {"num_virtual_tokens": len(ids), "init_text": init})
    method.initialize(real_base, task=None)
    text_ids = real_base.tokenizer(TEXT)["input_ids"]
    with torch.no_grad():
        inputs = make_inputs(real_base, [text_ids])
        prompted = prompted_forward(real_base, method(inputs), inputs, logits_to_keep=1)[0].logits[0, -1]
        plain = make_inputs(real_base, [ids + text_ids])
        reading = prompted_forward(real_base, no_prompt(plain), plain, logits_to_keep=1)[0].logits[0, -1]
    torch.testing.assert_close(prompted, reading, atol=1e-4, rtol=1e-4)


def test_cached_decoding_matches_hugging_face_generate(real_base):
    texts = ["The capital of France is", "Here is a short poem about the sea:\n"]
    ours = generate_ids(real_base, no_prompt, [real_base.tokenizer(t)["input_ids"] for t in texts], max_new_tokens=10)
    for text, produced in zip(texts, ours):
        ids = real_base.tokenizer(text, return_tensors="pt")
        reference = real_base.model.generate(**ids, max_new_tokens=10, do_sample=False)[0, ids.input_ids.shape[1]:]
        assert produced == reference.tolist()[: len(produced)] and len(produced) > 0
    assert real_base.tokenizer.decode(ours[0]).startswith(" Paris")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_learns_on_the_real_model(real_base, tiny_task, name):
    """Six steps on 8 reviews, with the method's defaults, halve the loss from where it starts."""
    torch.manual_seed(0)
    method = build_method(name, real_base)
    method.initialize(real_base, tiny_task)
    batch = encode(real_base, tiny_task.train, 64)
    with torch.no_grad():
        features = method.instance_features(real_base, [e.text for e in tiny_task.train])
    optimizer = torch.optim.AdamW(method.parameter_groups())
    start = lm_loss(real_base, method, batch, features)[0].item()
    for _ in range(6):
        lm_loss(real_base, method, batch, features)[0].backward()
        optimizer.step()
        optimizer.zero_grad()
    assert lm_loss(real_base, method, batch, features)[0].item() < 0.5 * start


@pytest.mark.parametrize("name", ["prompt-tuning", "prefix-tuning"])
def test_prompt_kv_cache_keeps_the_real_models_logits(real_base, name):
    """On SmolLM2 (30 layers, grouped-query attention) the cached prefix changes logits by float noise only."""
    from softprompt.tuned import TunedPrompt

    method = build_method(name, real_base, {"init_text": "Is this review positive or negative?"}).eval()
    method.initialize(real_base, task=None)
    inputs = make_inputs(real_base, [real_base.tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        plain = prompted_forward(real_base, method(inputs), inputs, logits_to_keep=1)[0].logits
        cached = prompted_forward(real_base, TunedPrompt(real_base, method, {})(inputs), inputs, logits_to_keep=1)[0].logits
    torch.testing.assert_close(cached, plain, atol=1e-4, rtol=1e-4)
