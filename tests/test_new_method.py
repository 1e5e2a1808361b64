"""Adding a method is one class and one registry entry: a toy method registered at run time is covered by the
contract matrix, the command line, prompt files, the server and the export refusals, with no other change."""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

import test_methods_contract as contract
from softprompt.backbones import BatchInputs, FrozenModel, Injection
from softprompt.cli import main
from softprompt.errors import SoftPromptError
from softprompt.formats import export_prompt
from softprompt.formats.prompt_embeds import prompt_embeds
from softprompt.methods import METHODS, MethodConfig, PromptMethod
from softprompt.serving.app import create_app
from softprompt.tuned import load_prompt


@dataclass
class ToyConfig(MethodConfig):
    num_virtual_tokens: int = 2
    learning_rate: float = 3e-2


class ToyPrompt(PromptMethod):
    """A prompt plus a gated copy of the input's mean embedding: input-dependent, read before the text."""

    name = "toy"
    description = "a test's own method: m vectors plus a gated mean of the input's embeddings"
    paper = "tests/test_new_method.py"
    config_class = ToyConfig
    input_dependent = True

    def __init__(self, config: ToyConfig, base: FrozenModel):
        super().__init__(config, base)
        self.embeddings = nn.Parameter(torch.randn(config.num_virtual_tokens, base.hidden_size) * 0.02)
        self.gate = nn.Parameter(torch.ones(()))

    def forward(self, inputs: BatchInputs) -> Injection:
        return Injection(embeds=self.embeddings + self.gate * inputs.mean_embedding().unsqueeze(1))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(METHODS, "toy", ToyPrompt)
    return "toy"


def test_the_contract_matrix_covers_it(toy, tiny_base, tiny_task, trained_like, tmp_path):
    available = {"method_name": toy, "tiny_base": tiny_base, "tiny_task": tiny_task, "trained_like": trained_like, "tmp_path": tmp_path}
    checks = [f for name, f in vars(contract).items() if name.startswith("test_") and "method_name" in inspect.signature(f).parameters]
    assert len(checks) >= 7
    for check in checks:
        check(**{name: available[name] for name in inspect.signature(check).parameters})


def test_the_command_line_lists_trains_and_saves_it(toy, tiny_model_dir, reviews_file, tmp_path, capsys):
    assert main(["list"]) == 0 and "toy" in capsys.readouterr().out
    assert main(["train", "--method", "toy", "--model", str(tiny_model_dir), "--task", str(reviews_file), "--max-steps", "2",
                 "--batch-size", "4", "--num-virtual-tokens", "3", "--output-dir", str(tmp_path / "run")]) == 0
    prompt = load_prompt(tmp_path / "run" / "prompt.safetensors")
    assert prompt.method.name == "toy" and prompt.method.embeddings.shape[0] == 3


def test_the_server_serves_it_and_the_exports_say_what_it_cannot_be(toy, tiny_base, tiny_task, trained_like, tmp_path):
    from softprompt.tuned import TunedPrompt

    prompt = TunedPrompt(tiny_base, trained_like(toy), {"task": "reviews", "label_words": [" negative", " positive"]})
    prompt.save(tmp_path / "toy.safetensors")
    with TestClient(create_app(tiny_base, tmp_path)) as client:
        served = client.post("/v1/classify", json={"model": "toy", "input": tiny_task.test[0].text}).json()["data"][0]
    assert served["probabilities"] == pytest.approx(prompt.classify([tiny_task.test[0].text])[0]["probabilities"], abs=1e-5)
    with pytest.raises(SoftPromptError, match="method 'toy' has no PEFT equivalent"):
        export_prompt(prompt, "peft", tmp_path / "adapter")
    assert prompt_embeds(prompt, tiny_task.test[0].text).shape[0] == 2 + len(tiny_base.tokenizer(tiny_task.test[0].text)["input_ids"])
