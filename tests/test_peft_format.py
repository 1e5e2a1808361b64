"""PEFT interop: an exported folder loads in PEFT and gives our logits; PEFT's own adapters import exactly."""
from __future__ import annotations

import json

import pytest
import torch
from peft import (
    PeftModel,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
)
from transformers import AutoModelForCausalLM

from softprompt.tuned import TunedPrompt, load_prompt
from softprompt.cli import main
from softprompt.runtime.batching import make_inputs
from softprompt.errors import SoftPromptError
from softprompt.formats import export_prompt
from softprompt.methods import BASELINES, METHODS, build_method
from softprompt.backbones import load_model
from softprompt.formats.peft import import_peft, peft_exportable
from softprompt.backbones import prompted_forward

TEXTS = ["Review: a warm film\nSentiment:", "Review: dull and slow\nSentiment:"]  # same token count: no padding


def trained_like(name: str, base, **options) -> TunedPrompt:
    """A method whose every parameter is random (a zero-initialised layer would hide layout mistakes)."""
    method = build_method(name, base, {"num_virtual_tokens": 3, **options})
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in method.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return TunedPrompt(base, method.eval(), {"task": "reviews", "label_words": [" negative", " positive"]})


def text_ids(base) -> torch.Tensor:
    ids = base.tokenizer(TEXTS, return_tensors="pt")["input_ids"]
    assert ids.shape[0] == 2 and (ids != base.tokenizer.pad_token_id).all()
    return ids


def our_logits(prompt: TunedPrompt, ids: torch.Tensor) -> torch.Tensor:
    inputs = make_inputs(prompt.base, ids.tolist())
    with torch.no_grad():
        return prompted_forward(prompt.base, prompt(inputs), inputs)[0].logits[:, -ids.shape[1]:]  # (B, T, V)


def peft_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -ids.shape[1]:]


@pytest.fixture
def fresh_hf_model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.mark.parametrize("name, options, peft_type", [
    ("prompt-tuning", {}, "PROMPT_TUNING"),
    ("p-tuning", {"encoder": "mlp"}, "PROMPT_TUNING"),
    ("p-tuning", {"encoder": "lstm", "encoder_hidden_size": 8}, "PROMPT_TUNING"),
    ("context-tuning", {}, "PROMPT_TUNING"),
    ("multitask-prompt-tuning", {}, "PROMPT_TUNING"),
    ("prefix-tuning", {}, "PREFIX_TUNING"),
    ("prefix-tuning", {"projection_hidden_size": 8}, "PREFIX_TUNING"),
])
def test_exported_folder_gives_our_logits_in_peft_and_imports_back(tmp_path, tiny_base, fresh_hf_model, name, options, peft_type):
    prompt = trained_like(name, tiny_base, **options)
    ids = text_ids(tiny_base)
    ours = our_logits(prompt, ids)
    export_prompt(prompt, "peft", tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["peft_type"] == peft_type

    peft_model = PeftModel.from_pretrained(fresh_hf_model, tmp_path / "adapter")
    torch.testing.assert_close(peft_logits(peft_model, ids), ours, atol=1e-5, rtol=0)

    back = import_peft(tmp_path / "adapter", tiny_base)
    assert back.info["label_words"] == [" negative", " positive"]  # our metadata rides in the adapter's header
    torch.testing.assert_close(our_logits(back, ids), ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("peft_config", [
    PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=16),
    PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prefix_projection=True, encoder_hidden_size=16),
], ids=["prompt-tuning", "p-tuning", "prefix-tuning", "prefix-projection"])
def test_an_adapter_trained_in_peft_imports_with_the_same_logits(tmp_path, tiny_base, fresh_hf_model, peft_config):
    torch.manual_seed(0)
    peft_model = get_peft_model(fresh_hf_model, peft_config)
    with torch.no_grad():  # PEFT's own random init, moved off any zero start
        for parameter in peft_model.prompt_encoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = text_ids(tiny_base)
    prompt = import_peft(tmp_path / "adapter", tiny_base)
    torch.testing.assert_close(our_logits(prompt, ids), peft_logits(peft_model.eval(), ids), atol=1e-5, rtol=0)


NO_PEFT_FORM = sorted(name for name, cls in {**METHODS, **BASELINES}.items() if not peft_exportable(cls))


def test_the_declarations_leave_no_peft_form_to_input_dependent_and_layer_methods():
    assert {"idpg", "dept", "capt", "lopa", "pt-moe", "lora"} <= set(NO_PEFT_FORM) and "prefix-tuning" not in NO_PEFT_FORM


@pytest.mark.parametrize("name", NO_PEFT_FORM)
def test_input_dependent_methods_are_refused_and_nothing_is_written(tmp_path, tiny_base, name):
    method = build_method(name, tiny_base, {})
    with pytest.raises(SoftPromptError, match=f"method '{name}' has no PEFT equivalent"):
        export_prompt(TunedPrompt(tiny_base, method, {}), "peft", tmp_path / "adapter")
    assert list(tmp_path.iterdir()) == []


def test_export_never_overwrites_a_folder_that_is_not_an_adapter(tmp_path, tiny_base):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SoftPromptError, match="is not an adapter folder"):
        export_prompt(trained_like("prompt-tuning", tiny_base), "peft", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_import_refuses_a_non_adapter_folder_and_one_made_for_another_model(tmp_path, tiny_base, tiny_model_dir, fresh_hf_model):
    with pytest.raises(SoftPromptError, match="is not a PEFT adapter folder"):
        import_peft(tmp_path, tiny_base)
    export_prompt(trained_like("prompt-tuning", tiny_base), "peft", tmp_path / "ours")
    other = load_model(str(tiny_model_dir))
    other.fingerprint = "LlamaForCausalLM:another"
    with pytest.raises(SoftPromptError, match="was exported from base model"):
        import_peft(tmp_path / "ours", other)
    get_peft_model(fresh_hf_model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2, token_dim=32)).save_pretrained(tmp_path / "theirs")
    with pytest.raises(SoftPromptError, match=r"shape \(2, 32\), but model .* needs \(2, 64\)"):
        import_peft(tmp_path / "theirs", tiny_base)


def test_cli_export_then_import_round_trips(capsys, tmp_path, tiny_base):
    prompt = trained_like("prefix-tuning", tiny_base)
    prompt.save(tmp_path / "prompt.safetensors")
    assert main(["export", str(tmp_path / "prompt.safetensors"), "--format", "peft", "--output", str(tmp_path / "adapter")]) == 0
    assert main(["import", str(tmp_path / "adapter"), "--output", str(tmp_path / "back.safetensors")]) == 0
    assert "prefix-tuning, peft PREFIX_TUNING" in capsys.readouterr().out
    back = load_prompt(tmp_path / "back.safetensors", tiny_base)
    torch.testing.assert_close(back.method.key_values, prompt.method.key_values, atol=0, rtol=0)
    assert main(["import", str(tmp_path), "--output", str(tmp_path / "never.safetensors")]) == 2
    assert not (tmp_path / "never.safetensors").exists()
