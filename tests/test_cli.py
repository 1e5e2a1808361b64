"""The command line, in-process: every command once (bad input: tests/test_bad_inputs.py)."""
from __future__ import annotations

import json

from softprompt.cli import main
from softprompt.methods import BASELINES, METHODS, all_methods
from softprompt.training.optimizers import OPTIMIZERS


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_methods_models_and_tasks(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in (*METHODS, *BASELINES, *OPTIMIZERS, "smollm2-135m", "minilm-l6", "sst2", "gsm8k"):
        assert name in out
    assert out.count("paper:") == len(all_methods())
    lines = out.splitlines()
    methods = {**METHODS, **BASELINES}.values()
    columns = {line.index(cls.description) for cls in methods for line in lines if line.endswith(cls.description)}
    assert len(columns) == 1  # descriptions line up, even after multitask-prompt-tuning's long name


def test_train_eval_generate_on_a_file_task(capsys, tmp_path, tiny_model_dir, reviews_file):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--model", str(tiny_model_dir), "--task", str(reviews_file), "--output-dir",
                         str(out_dir), "--max-steps", "2", "--batch-size", "4", "--dev-size", "2", "--num-virtual-tokens", "3")
    assert code == 0, err
    assert "test accuracy: zero-shot" in out and "tuned" in out
    prompt = str(out_dir / "prompt.safetensors")

    code, out, err = run(capsys, "eval", prompt, "--model", str(tiny_model_dir), "--task", str(reviews_file))
    assert code == 0, err
    assert 0 <= json.loads(out)["accuracy"] <= 1

    code, out, err = run(capsys, "generate", prompt, "Review: great\nSentiment:", "--max-new-tokens", "3")
    assert code == 0, err
    assert out.strip()


