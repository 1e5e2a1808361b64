"""Training through accelerate: two CPU processes (gloo, started by torchrun) learn the same prompt as one
process with the same global batch, only one of them writes; and the curves reach TensorBoard."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
import torch
from tensorboardX.proto.event_pb2 import Event

from softprompt.tuned import load_prompt
from softprompt.errors import SoftPromptError
from softprompt.methods import build_method
from softprompt.tasks import load_task
from softprompt.training import TrainConfig, train

OPTIONS = ["--max-steps", "3", "--batch-size", "4", "--gradient-accumulation", "2", "--dev-size", "0",
           "--zero-shot", "false", "--num-virtual-tokens", "3", "--checkpoint-every", "1"]


def test_two_processes_learn_the_same_prompt_as_one(tmp_path, tiny_base, tiny_model_dir, reviews_file):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "softprompt.cli", "train", "--model", str(tiny_model_dir), "--task", str(reviews_file),
               "--output-dir", str(tmp_path / "two"), *OPTIONS]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("saved ") == 1  # only the main process reports (and writes)

    one = train(TrainConfig(task=str(reviews_file), model=str(tiny_model_dir), output_dir=str(tmp_path / "one"),
                            max_steps=3, batch_size=4, gradient_accumulation=2, zero_shot=False, checkpoint_every=1,
                            method_options={"num_virtual_tokens": 3}), base=tiny_base)
    two = load_prompt(tmp_path / "two" / "prompt.safetensors", tiny_base)
    untrained = build_method("prompt-tuning", tiny_base, {"num_virtual_tokens": 3})
    untrained.initialize(tiny_base, load_task(str(reviews_file)))
    assert (one.prompt.method.embeddings - untrained.embeddings).abs().max() > 1e-3  # it did learn something
    torch.testing.assert_close(two.method.embeddings, one.prompt.method.embeddings, atol=1e-5, rtol=0)
    losses = [[r["loss"] for r in map(json.loads, (tmp_path / name / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
              for name in ("one", "two")]
    assert len(losses[0]) == 3
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), atol=1e-5, rtol=0)


def events(folder) -> list[Event]:
    """Every event in the TensorBoard files under `folder` (record: u64 length, u32 crc, data, u32 crc)."""
    found = []
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            found.append(Event.FromString(data[offset + 12:offset + 12 + length]))
            offset += 16 + length
    return found


def test_training_curves_go_to_tensorboard(tmp_path, tiny_base, reviews_file):
    config = TrainConfig(task=str(reviews_file), model=tiny_base.name, output_dir=str(tmp_path / "run"), max_steps=3,
                         batch_size=4, dev_size=2, log_with="tensorboard", method_options={"num_virtual_tokens": 3})
    result = train(config, base=tiny_base)
    scalars: dict[str, list] = {}
    for event in events(tmp_path / "run" / "logs"):
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    expected = [(r["step"], r["loss"]) for r in log if "loss" in r]
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]
    torch.testing.assert_close(torch.tensor(scalars["train/loss"]), torch.tensor(expected, dtype=torch.float32))
    assert scalars["test/accuracy"] == [(3, pytest.approx(result.metrics["accuracy"]))]
    assert {"train/lr", "dev/score"} <= set(scalars)


def test_an_unknown_tracker_is_refused_before_anything_is_written(tmp_path, tiny_base, reviews_file):
    with pytest.raises(SoftPromptError, match="unknown tracker \\(log_with\\) 'tensorbored'; choose one of: .*tensorboard"):
        train(TrainConfig(task=str(reviews_file), output_dir=str(tmp_path / "run"), log_with="tensorbored"), base=tiny_base)
    assert not (tmp_path / "run").exists()


def test_a_tracker_whose_package_is_missing_is_refused(tmp_path, tiny_base, reviews_file):
    with pytest.raises(SoftPromptError, match="log_with 'aim' needs its package installed"):
        train(TrainConfig(task=str(reviews_file), output_dir=str(tmp_path / "run"), log_with="aim"), base=tiny_base)
