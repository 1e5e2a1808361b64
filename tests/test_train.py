from __future__ import annotations

import json

import pytest
import torch

from softprompt.tuned import load_prompt
from softprompt.errors import SoftPromptError
from softprompt.training import TrainConfig, train
from softprompt.training.trainer import Trainer


def config(tmp_path, task, **overrides):
    values = dict(task=str(task), model="unused", output_dir=str(tmp_path / "run"), batch_size=2, epochs=2,
                  dev_size=2, checkpoint_every=2, zero_shot=True, method_options={"num_virtual_tokens": 4})
    return TrainConfig(**{**values, **overrides})


def test_training_writes_prompt_log_plot_and_reports_both_numbers(tmp_path, tiny_base, reviews_file):
    result = train(config(tmp_path, reviews_file), base=tiny_base)
    out = result.output_dir
    assert {p.name for p in out.iterdir()} >= {"prompt.safetensors", "metrics.jsonl", "curves.png", "checkpoint.pt", "train_config.json",
                                              "train_config.yaml", "README.md"}
    assert out.joinpath("curves.png").read_bytes()[:4] == b"\x89PNG"
    log = [json.loads(line) for line in out.joinpath("metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 9))  # 8 train rows / batch 2 = 4 steps x 2 epochs
    assert [r["epoch"] for r in log if "dev_score" in r] == [1, 2]
    assert 0 <= result.metrics["accuracy"] <= 1 and "zero_shot_accuracy" in result.metrics
    assert result.metrics["trainable_parameters"] == 4 * tiny_base.hidden_size


def test_dev_scoring_reads_the_cached_prefix_outside_autograd(tmp_path, tiny_base, reviews_file, monkeypatch):
    """The dev score computes the prompt's keys/values once, without a graph, and equals uncached scoring."""
    from softprompt.runtime import prefix_cache
    from softprompt.evaluation import accuracy

    computed, real = [], prefix_cache.prefix_key_values
    monkeypatch.setattr(prefix_cache, "prefix_key_values", lambda base, prefix: computed.append(torch.is_grad_enabled()) or real(base, prefix))
    trainer = Trainer(config(tmp_path, reviews_file, dev_size=4), base=tiny_base)
    part = trainer.parts[0]
    scores = [trainer._task_dev_score(part) for _ in range(2)]
    assert computed == [False]  # once for both scorings: the parameters did not change in between
    with torch.no_grad():
        uncached = accuracy(tiny_base, part.method, part.dev_set, part.task, 8, part.dev_features)
    assert scores == [uncached, uncached]


def test_same_seed_same_prompt(tmp_path, tiny_base, reviews_file):
    first = train(config(tmp_path / "a", reviews_file, zero_shot=False), base=tiny_base).prompt.method.embeddings
    second = train(config(tmp_path / "b", reviews_file, zero_shot=False), base=tiny_base).prompt.method.embeddings
    assert torch.equal(first, second)


def test_interrupted_run_resumes_to_the_same_prompt(tmp_path, tiny_base, reviews_file, monkeypatch):
    straight = train(config(tmp_path / "a", reviews_file, zero_shot=False, gradient_accumulation=2), base=tiny_base)

    interrupted = config(tmp_path / "b", reviews_file, zero_shot=False, gradient_accumulation=2, checkpoint_every=1)
    original_step = Trainer._step

    def dies_after_three(self, group):
        record = original_step(self, group)
        if self.step == 3:
            raise KeyboardInterrupt  # as if killed before its checkpoint: the one of step 2 is what survives
        return record

    monkeypatch.setattr(Trainer, "_step", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, base=tiny_base)
    monkeypatch.setattr(Trainer, "_step", original_step)
    interrupted.resume = True
    resumed = train(interrupted, base=tiny_base)
    torch.testing.assert_close(resumed.prompt.method.embeddings, straight.prompt.method.embeddings, atol=1e-6, rtol=0)
    assert resumed.metrics["steps"] == straight.metrics["steps"] == 4


def test_max_steps_stops_early(tmp_path, tiny_base, reviews_file):
    assert train(config(tmp_path, reviews_file, max_steps=3, zero_shot=False), base=tiny_base).metrics["steps"] == 3


def test_both_objectives_train_to_different_prompts(tmp_path, tiny_base, reviews_file):
    lm = train(config(tmp_path / "lm", reviews_file, objective="lm", max_steps=2, zero_shot=False), base=tiny_base)
    choice = train(config(tmp_path / "choice", reviews_file, max_steps=2, zero_shot=False), base=tiny_base)
    assert not torch.equal(lm.prompt.method.embeddings, choice.prompt.method.embeddings)


def test_training_on_several_tasks_writes_one_prompt_per_task(tmp_path, tiny_base, reviews_file):
    moods = tmp_path / "moods.jsonl"
    moods.write_text(reviews_file.read_text().replace('"negative"', '"sad"').replace('"positive"', '"happy"'))
    run = config(tmp_path, f"{reviews_file},{moods}", method="multitask-prompt-tuning", dev_size=0, max_steps=4)
    result = train(run, base=tiny_base)
    assert set(result.prompts) == {"reviews", "moods"}
    with pytest.raises(SoftPromptError, match="use result.prompts"):
        _ = result.prompt
    log = [json.loads(line) for line in result.output_dir.joinpath("metrics.jsonl").read_text().splitlines()]
    assert [r["task"] for r in log if "test" in r] == ["reviews", "moods"]
    for name, words in (("reviews", [" negative", " positive"]), ("moods", [" happy", " sad"])):
        loaded = load_prompt(result.output_dir / name / "prompt.safetensors", tiny_base)
        assert loaded.info["label_words"] == words and loaded.info["task"] == name
        trained = result.prompts[name].method.task_prompt()
        torch.testing.assert_close(loaded.method.task_prompt(), trained)
    first, second = (result.prompts[n].method.task_prompt() for n in ("reviews", "moods"))
    assert not torch.allclose(first, second), "each task's factor must have learned from its own batches"
