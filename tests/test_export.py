"""prompt_embeds (for vLLM / SGLang) equals what our model feeds its first decoder layer, for every
input-level method; methods that act inside the layers are refused with a clear error."""
from __future__ import annotations

import pytest
import torch

from softprompt.tuned import TunedPrompt
from softprompt.runtime.batching import make_inputs
from softprompt.errors import SoftPromptError
from softprompt.methods import BASELINES, METHODS
from softprompt.backbones import prompted_forward
from softprompt.formats.prompt_embeds import INPUT_LEVEL, prompt_embeds

TEXT = "Review: sharp writing and great acting\nSentiment:"
ALL = {**METHODS, **BASELINES}
INSIDE_THE_LAYERS = {name for name, cls in ALL.items() if not cls.injects <= INPUT_LEVEL}  # declarations: checked in test_methods_contract


def test_the_declarations_put_prefix_tuning_and_capt_inside_the_layers():
    assert {"prefix-tuning", "capt", "lora"} <= INSIDE_THE_LAYERS and "prompt-tuning" not in INSIDE_THE_LAYERS


@pytest.mark.parametrize("name", sorted(ALL))
def test_prompt_embeds_equal_the_first_layers_input(name, tiny_base, trained_like):
    method = trained_like(name)
    prompt = TunedPrompt(tiny_base, method, {})
    if name in INSIDE_THE_LAYERS:
        with pytest.raises(SoftPromptError, match="inside the model's layers"):
            prompt_embeds(prompt, TEXT)
        return
    exported = prompt_embeds(prompt, TEXT)
    seen = []
    handle = tiny_base.layers[0].register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("hidden_states", args[0] if args else None)), with_kwargs=True)
    try:
        with torch.no_grad():
            inputs = make_inputs(tiny_base, [tiny_base.tokenizer(TEXT)["input_ids"]], prompt.features([TEXT]))
            prompted_forward(tiny_base, method(inputs), inputs)
    finally:
        handle.remove()
    assert exported.shape == seen[0][0].shape and exported.shape[0] > inputs.input_ids.shape[1]
    torch.testing.assert_close(exported, seen[0][0], atol=0, rtol=0)
