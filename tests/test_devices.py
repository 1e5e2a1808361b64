"""Precision and placement: the frozen model in bfloat16 with float32 master weights for the prompt, prompt
files that move between dtypes (and devices: they hold float32 CPU tensors), and options that refuse
what this machine or the given model cannot do."""
from __future__ import annotations

import pytest
import torch

from softprompt.backbones import load_model, prompted_forward
from softprompt.errors import SoftPromptError
from softprompt.methods import BASELINES, METHODS, build_method
from softprompt.runtime.batching import encode, make_inputs
from softprompt.training import TrainConfig, train
from softprompt.training.trainer import Trainer
from softprompt.tuned import load_prompt


@pytest.fixture(scope="module")
def bf16_base(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")


def test_the_model_loads_straight_into_bf16_with_the_same_fingerprint(bf16_base, tiny_base):
    assert {p.dtype for p in bf16_base.model.parameters()} == {torch.bfloat16}
    assert bf16_base.fingerprint == tiny_base.fingerprint  # from the files: a prompt is not tied to a dtype


@pytest.mark.parametrize("name", sorted({**METHODS, **BASELINES}))
def test_methods_keep_float32_master_weights_on_a_bf16_model(name, bf16_base, tiny_task):
    method = build_method(name, bf16_base)
    method.initialize(bf16_base, tiny_task)
    assert {p.dtype for p in method.parameters()} == {torch.float32}
    batch = encode(bf16_base, tiny_task.train[:4], 64)
    features = method.instance_features(bf16_base, [e.text for e in tiny_task.train[:4]])
    inputs = make_inputs(bf16_base, [e.context for e in batch], features)
    logits = prompted_forward(bf16_base, method(inputs), inputs, logits_to_keep=1)[0].logits
    logits.float().sum().backward()
    assert logits.dtype == torch.bfloat16 and all(p.grad is None or p.grad.dtype == torch.float32 for p in method.parameters())


def test_a_prompt_trained_in_bf16_loads_on_a_float32_model_and_back(tmp_path, bf16_base, tiny_base, reviews_file):
    result = train(TrainConfig(task=str(reviews_file), model=bf16_base.name, dtype="bfloat16", device="cpu", max_steps=2,
                               batch_size=4, output_dir=str(tmp_path / "bf16"), zero_shot=False,
                               method_options={"num_virtual_tokens": 4}), base=bf16_base)
    trained = result.prompt.method.embeddings
    assert trained.dtype == torch.float32
    on_fp32 = load_prompt(tmp_path / "bf16" / "prompt.safetensors", tiny_base)
    assert torch.equal(on_fp32.method.embeddings, trained)
    back_on_bf16 = load_prompt(tmp_path / "bf16" / "prompt.safetensors", bf16_base)
    text = ["Review: a triumph\nSentiment:"]
    fp32_probabilities = on_fp32.classify(text)[0]["probabilities"]
    assert back_on_bf16.classify(text)[0]["probabilities"] == pytest.approx(fp32_probabilities, abs=0.02)


def test_a_given_model_is_used_where_it_is(tmp_path, bf16_base, reviews_file):
    config = TrainConfig(task=str(reviews_file), model=bf16_base.name, dtype="float32", output_dir=str(tmp_path))
    with pytest.raises(SoftPromptError, match=r"dtype 'float32' was asked for, but the model given is in torch.bfloat16"):
        Trainer(config, bf16_base)


def test_devices_this_machine_lacks_and_unknown_dtypes_are_refused(tiny_model_dir):
    if not torch.cuda.is_available():
        with pytest.raises(SoftPromptError, match="device 'cuda' is not available on this machine"):
            load_model(str(tiny_model_dir), device="cuda")
    with pytest.raises(SoftPromptError, match="unknown device 'gpu0'"):
        load_model(str(tiny_model_dir), device="gpu0")
    with pytest.raises(SoftPromptError, match="unknown dtype 'fp8'; choose one of: auto, bfloat16, float16, float32"):
        load_model(str(tiny_model_dir), dtype="fp8")
    with pytest.raises(SoftPromptError, match="unknown dtype 'half'"):
        TrainConfig(dtype="half")
