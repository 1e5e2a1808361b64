"""The command line, in-process: every command once, and bad input exiting non-zero with a clear message."""
from __future__ import annotations

import json

import pytest

from softprompt.cli import main
from softprompt.methods import METHODS


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_methods_models_and_tasks(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in (*METHODS, "smollm2-135m", "minilm-l6", "sst2", "gsm8k"):
        assert name in out
    assert out.count("paper:") == len(METHODS)


@pytest.mark.parametrize("argv, message", [
    (["train", "--task", "sst3"], "unknown task 'sst3'; choose one of: .*sst2"),
    (["train", "--method", "magic"], "unknown method 'magic'; choose one of: capt, context-tuning, dept, idpg, lopa, multitask-prompt-tuning, p-tuning, prefix-tuning, prompt-tuning, pt-moe"),
    (["train", "--model", "no-such-model"], "unknown model 'no-such-model'; choose one of: .*smollm2-135m"),
    (["eval"], "--task is required"),
])
def test_bad_names_exit_2_listing_the_choices(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert __import__("re").search(message, err), err


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

    code, _, err = run(capsys, "generate", prompt, "hi", "--max-new-tokens", "0")
    assert code == 2 and "--max-new-tokens must be >= 1" in err


def test_eval_refuses_a_corrupted_prompt_file(capsys, tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x00" * 10)
    code, _, err = run(capsys, "eval", str(path), "--task", "sst2")
    assert code == 2 and "truncated or corrupted" in err


@pytest.mark.parametrize("content, message", [
    ('{"text": "good", "label": "positive"}\n{"label": "negative"}\n', "line 2: missing field 'text'"),
    ("\n", "the dataset is empty"),
])
def test_train_refuses_bad_data_files_and_writes_nothing(capsys, tmp_path, tiny_model_dir, content, message):
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    out_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", "--model", str(tiny_model_dir), "--task", str(data), "--output-dir", str(out_dir))
    assert code == 2 and message in err
    assert not out_dir.exists()


def test_eval_refuses_a_prompt_made_for_another_model(capsys, tmp_path, tiny_model_dir, reviews_file):
    out_dir = tmp_path / "run"
    assert run(capsys, "train", "--model", str(tiny_model_dir), "--task", str(reviews_file), "--output-dir", str(out_dir),
               "--max-steps", "1", "--dev-size", "0", "--zero-shot", "false")[0] == 0
    code, _, err = run(capsys, "eval", str(out_dir / "prompt.safetensors"), "--model", "smollm2-135m")
    assert code == 2 and "trained on base model" in err and "'smollm2-135m'" in err
