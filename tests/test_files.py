from __future__ import annotations

import pytest

from softprompt.tuned import TunedPrompt, load_prompt
from softprompt.errors import SoftPromptError
from softprompt.storage import atomic_path
from softprompt.methods import build_method


@pytest.fixture
def saved(tiny_base, tiny_task, tmp_path):
    method = build_method("prompt-tuning", tiny_base, {"num_virtual_tokens": 4})
    method.initialize(tiny_base, tiny_task)
    path = tmp_path / "p.safetensors"
    TunedPrompt(tiny_base, method, {"task": "reviews", "label_words": [" negative", " positive"]}).save(path)
    return path


def test_prompt_file_is_small_and_carries_its_metadata(saved, tiny_base):
    assert saved.stat().st_size < 4 * 64 * 4 + 4096
    loaded = load_prompt(saved, tiny_base)
    assert loaded.info["label_words"] == [" negative", " positive"]
    assert loaded.metadata()["base_model"]["fingerprint"] == tiny_base.fingerprint


def test_failed_write_leaves_the_old_file_untouched(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_hub_id_without_network_fails_clearly(monkeypatch):
    from softprompt.backbones import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SoftPromptError, match="cannot load model 'nobody/no-such-model'"):
        load_model("nobody/no-such-model")


def test_loaded_prompt_classifies_and_generates(saved, tiny_base):
    prompt = load_prompt(saved, tiny_base)
    results = prompt.classify(["Review: a delight\nSentiment:", "Review: awful\nSentiment:"])
    assert [sorted(r["probabilities"]) for r in results] == [["negative", "positive"]] * 2
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 and r["label"] in ("negative", "positive") for r in results)
    assert len(prompt.generate(["Review: a delight\nSentiment:"], max_new_tokens=2)) == 1
