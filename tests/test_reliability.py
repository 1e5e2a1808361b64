"""Surviving faults: a SIGKILLed run resumes to the same prompt, files that could run code are refused
without running it, and a numerical fault stops the run leaving the last good checkpoint byte-identical."""
from __future__ import annotations

import dataclasses
import io
import json
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from softprompt.tuned import load_prompt
from softprompt.errors import SoftPromptError
from softprompt.storage import read_checkpoint, read_tensors
from softprompt.runtime.kinds import KINDS
from softprompt.training import TrainConfig, train

STEPS, KILL_AFTER = 40, 3  # the kill lands after step 3, well before step 40 (a tiny step takes ~50 ms)


def saved_step(checkpoint) -> int:
    # Reads race with the trainer's writes on purpose: an atomic write never shows a half-written file.
    return read_checkpoint(checkpoint)["position"][0] if checkpoint.exists() else -1


@pytest.fixture
def one_thread(monkeypatch):
    """One CPU thread here and in subprocesses: identical arithmetic in both, and on a busy machine a tiny
    model runs ~20x faster than with threads that wait for each other."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sigkilled_run_resumes_to_the_same_prompt(tmp_path, tiny_model_dir, tiny_base, reviews_file, one_thread):
    # pt-moe draws router noise from the global RNG each step, so RNG state matters as well as the
    # optimizer, the scheduler and the data order (epochs of 3 steps: the run crosses 13 of them).
    options = dict(task=str(reviews_file), model=str(tiny_model_dir), method="pt-moe", batch_size=2, gradient_accumulation=2,
                   max_steps=STEPS, checkpoint_every=1, zero_shot=False, seed=3)
    method_options = {"num_virtual_tokens": 4, "rank": 2}
    straight = train(TrainConfig(**options, output_dir=str(tmp_path / "straight"), method_options=method_options), base=tiny_base)
    killed_then_resumed(tmp_path, options, ["--num-virtual-tokens", "4", "--rank", "2"], straight)


def test_sigkilled_cma_es_run_resumes_to_the_same_prompt(tmp_path, tiny_model_dir, tiny_base, reviews_file, one_thread):
    """CMA-ES's state is its losses so far (replayed on resume) plus the seeded generator it samples from."""
    options = dict(task=str(reviews_file), model=str(tiny_model_dir), optimizer="cma-es", batch_size=2, max_steps=STEPS,
                   checkpoint_every=1, zero_shot=False, seed=3)
    search = {"intrinsic_dim": 8, "population": 4}
    straight = train(TrainConfig(**options, output_dir=str(tmp_path / "straight"), method_options={"num_virtual_tokens": 4},
                                 optimizer_options=search), base=tiny_base)
    killed_then_resumed(tmp_path, options, ["--num-virtual-tokens", "4", "--intrinsic-dim", "8", "--population", "4"], straight)


def killed_then_resumed(tmp_path, options: dict, argv_options: list[str], straight) -> None:
    """Run `softprompt train` in a process, SIGKILL it after step KILL_AFTER's checkpoint, resume it, and check
    that it ends on the straight run's prompt, carrying on from the checkpoint rather than starting again."""
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "softprompt.cli", "train", "--output-dir", str(out), *argv_options]
    argv += [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while saved_step(out / "checkpoint.pt") < KILL_AFTER:
            assert process.poll() is None, f"training exited before step {KILL_AFTER}: {(tmp_path / 'killed.log').read_text()}"
            assert time.monotonic() < deadline, f"no checkpoint of step {KILL_AFTER} within 300 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed: raise STEPS"
    state = read_checkpoint(out / "checkpoint.pt")
    assert KILL_AFTER <= state["position"][0] < STEPS

    resumed = subprocess.run(argv + ["--resume=true"], capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    tensors, metadata = read_tensors(out / "prompt.safetensors")
    assert metadata["metrics"]["steps"] == STEPS
    expected = straight.prompt.method.state_dict()
    assert tensors.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(tensors[key], expected[key], atol=1e-6, rtol=0)
    # The resumed run carried on from the checkpoint rather than starting again: its log begins with the
    # killed run's records, measured timings included, which a fresh run could not reproduce.
    before_kill = json.loads(state["history"])
    log_lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in log_lines[:len(before_kill)]] == before_kill


class Payload:
    """Unpickling this object calls open(marker, "w"): a file that runs code when loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("kind, refusal", [
    ("prompt file", r"is truncated or corrupted \(not a readable safetensors file"),
    ("checkpoint", r"is refused: it holds Python objects other than tensors and plain data \(io.open\), which could run code"),
])
def test_a_file_that_would_run_code_is_refused_without_running_it(tmp_path, tiny_base, reviews_file, kind, refusal):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "run" / ("prompt.safetensors" if kind == "prompt file" else "checkpoint.pt")
    path.parent.mkdir()
    torch.save({"format": "softprompt-checkpoint/1", "state": {"method": Payload(marker)}, "embeddings": torch.zeros(4, 64)}, path)
    torch.load(io.BytesIO(path.read_bytes()), weights_only=False)  # the control: an unsafe load runs the payload
    assert marker.exists()
    marker.unlink()

    with pytest.raises(SoftPromptError, match=rf"{kind} {re.escape(str(path))} {refusal}"):
        if kind == "prompt file":
            load_prompt(path, tiny_base)
        else:
            train(TrainConfig(task=str(reviews_file), output_dir=str(path.parent), resume=True, zero_shot=False), base=tiny_base)
    assert not marker.exists()


@pytest.mark.parametrize("fault, message", [
    ("nan loss", "loss became nan at step 3"),
    ("inf loss", "loss became inf at step 3"),
    ("nan gradient", "the gradient norm became nan at step 3"),
])
def test_numerical_fault_stops_and_keeps_the_last_checkpoint_byte_identical(tmp_path, tiny_base, reviews_file, monkeypatch, fault, message):
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    good = {}

    def faulty_loss(*args, **kwargs):
        loss, tokens = real_loss(*args, **kwargs)
        if saved_step(checkpoint) == 2 and not good:  # step 3: the fault strikes after two good checkpoints
            good["bytes"] = checkpoint.read_bytes()
            if fault == "nan gradient":
                loss.register_hook(lambda grad: grad * float("nan"))  # the loss stays finite, its gradient does not
            else:
                loss = loss * float(fault.split()[0])
        return loss, tokens

    real_loss = KINDS["text"].choice_loss
    monkeypatch.setitem(KINDS, "text", dataclasses.replace(KINDS["text"], choice_loss=faulty_loss))
    config = TrainConfig(task=str(reviews_file), output_dir=str(checkpoint.parent), batch_size=2, max_steps=5, checkpoint_every=1,
                         zero_shot=False, method_options={"num_virtual_tokens": 4})
    expected = rf"{message}; stopping, the last good checkpoint \({re.escape(str(checkpoint))}\) is untouched"
    with pytest.raises(SoftPromptError, match=expected):
        train(config, base=tiny_base)
    assert checkpoint.read_bytes() == good["bytes"]
    assert saved_step(checkpoint) == 2
