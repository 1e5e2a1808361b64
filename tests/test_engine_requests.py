"""The vLLM and SGLang request bodies carry exactly prompt_embeds' tensor, in each engine's encoding."""
from __future__ import annotations

import base64
import io
import json

import pytest
import torch

from softprompt.errors import SoftPromptError
from softprompt.formats.engine_requests import sglang_generate_body, vllm_completions_body
from softprompt.formats.prompt_embeds import prompt_embeds
from softprompt.tuned import TunedPrompt

TEXT = "Review: a gorgeous , witty film\nSentiment:"


@pytest.mark.parametrize("name", ["prompt-tuning", "dept"])
def test_both_bodies_decode_to_the_prompt_embeds(name, tiny_base, trained_like):
    prompt = TunedPrompt(tiny_base, trained_like(name), {})
    expected = prompt_embeds(prompt, TEXT)
    vllm = json.loads(json.dumps(vllm_completions_body(prompt, TEXT, "smollm2", max_tokens=5)))  # what goes over the wire
    sent = torch.load(io.BytesIO(base64.b64decode(vllm["prompt_embeds"])), weights_only=True)
    assert torch.equal(sent, expected) and sent.shape == (prompt.method.prompt_length() + len(tiny_base.tokenizer(TEXT)["input_ids"]), 64)
    assert set(vllm) == {"model", "prompt_embeds", "max_tokens", "temperature"} and vllm["max_tokens"] == 5
    sglang = json.loads(json.dumps(sglang_generate_body(prompt, TEXT)))
    torch.testing.assert_close(torch.tensor(sglang["input_embeds"]), expected, atol=0, rtol=0)
    assert sglang["sampling_params"] == {"max_new_tokens": 16, "temperature": 0.0}


def test_a_prompt_inside_the_layers_cannot_be_sent(tiny_base, trained_like):
    with pytest.raises(SoftPromptError, match="acts inside the model's layers"):
        vllm_completions_body(TunedPrompt(tiny_base, trained_like("prefix-tuning"), {}), TEXT, "smollm2")
