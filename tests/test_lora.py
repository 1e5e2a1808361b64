"""The LoRA baseline: the same computation as PEFT's LoraModel, trained through softprompt's Trainer without
changing the shared frozen model, and refused where a per-batch weight change cannot go."""
from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from softprompt.backbones import Injection, prompted_forward
from softprompt.errors import SoftPromptError
from softprompt.formats import export_prompt
from softprompt.formats.prompt_embeds import prompt_embeds
from softprompt.runtime.batching import encode, make_inputs
from softprompt.serving.store import PromptStore
from softprompt.training import TrainConfig, train
from softprompt.tuned import TunedPrompt


def test_lora_gives_peft_loramodels_logits(tiny_base, tiny_task, trained_like, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    ours = trained_like("lora")  # B nudged off zero, so the update matters
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    with torch.no_grad():
        for path in ours.targets:
            key = path.replace(".", "/")
            layer = model.get_submodule(f"base_model.model.{path}")
            layer.lora_A["default"].weight.copy_(ours.down[key])
            layer.lora_B["default"].weight.copy_(ours.up[key])
    sequences = [e.context for e in encode(tiny_base, tiny_task.test, 64)]
    inputs = make_inputs(tiny_base, sequences)
    with torch.no_grad():
        got = prompted_forward(tiny_base, ours(inputs), inputs)[0].logits
        expected = model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                         position_ids=(inputs.attention_mask.cumsum(-1) - 1).clamp(min=0)).logits
        bare = prompted_forward(tiny_base, Injection(), inputs)[0].logits
    mask = inputs.attention_mask.bool()
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-5, rtol=1e-5)
    assert (got[mask] - bare[mask]).abs().max() > 1e-3  # the update changed the logits: the comparison means something


def test_lora_trains_through_the_trainer_and_leaves_the_shared_model_untouched(tmp_path, tiny_base, reviews_file):
    before = {k: v.clone() for k, v in tiny_base.model.state_dict().items()}
    result = train(TrainConfig(task=str(reviews_file), method="lora", model=tiny_base.name, output_dir=str(tmp_path),
                               max_steps=2, batch_size=4, method_options={"rank": 2}), base=tiny_base)
    after = tiny_base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and set(before) == set(after)
    assert all(p.grad is None for p in tiny_base.model.parameters())
    assert any(v.abs().sum() > 0 for k, v in result.prompt.method.state_dict().items() if k.startswith("up."))  # B moved off zero
    expected = 3 * ((2 * 64 + 64 * 2) + (2 * 64 + 32 * 2))  # 3 layers, rank 2: q (64 -> 64) and v (64 -> 32: 2 of 4 kv heads)
    assert result.metrics["trainable_parameters"] == expected


def test_lora_is_refused_where_a_weight_change_cannot_go(tmp_path, tiny_base, trained_like):
    prompt = TunedPrompt(tiny_base, trained_like("lora"), {"task": "reviews"})
    with pytest.raises(SoftPromptError, match="has no PEFT equivalent"):
        export_prompt(prompt, "peft", tmp_path / "adapter")
    with pytest.raises(SoftPromptError, match="inside the model's layers"):
        prompt_embeds(prompt, "Review: fine\nSentiment:")
    (tmp_path / "prompts").mkdir()
    prompt.save(tmp_path / "prompts" / "adapted.safetensors")
    with pytest.raises(SoftPromptError, match="changes the model's weights, so it cannot be served"):
        PromptStore(tmp_path / "prompts", tiny_base).get("adapted")


def test_lora_refuses_a_model_without_the_named_layers(tiny_base):
    from softprompt.methods import build_method

    with pytest.raises(SoftPromptError, match=r"lora needs rank >= 1 and linear layers named \['c_attn'\]; LlamaForCausalLM has 0"):
        build_method("lora", tiny_base, {"target_modules": "c_attn"})
