"""Forward-only optimizers (zo-sgd, cma-es, sharpzo) through the one trainer, on the tiny model: the same files and
log as AdamW, no autograd graph, MeZO's update exactly, populations scored in one forward pass where the method's
injections stack, and a CMA-ES state that resumes to the same prompt."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from softprompt.runtime.kinds import KINDS
from softprompt.configs import field_docs
from softprompt.errors import SoftPromptError
from softprompt.methods import BASELINES, METHODS
from softprompt.runtime import scoring
from softprompt.tasks import FileTaskOptions
from softprompt.training import TrainConfig, train
from softprompt.training import sharpzo
from softprompt.training.optimizer_api import SCHEDULE_OPTIONS
from softprompt.training.optimizers import OPTIMIZERS
from softprompt.training.trainer import StepBatches, Trainer
from softprompt.training.zeroth_order import ZeroOrderSGD

SMALL = {"zo-sgd": {}, "cma-es": {"intrinsic_dim": 8, "population": 4},
         "sharpzo": {"intrinsic_dim": 8, "population": 4, "cma_steps": 2, "mask_every": 1, "density": 0.25}}


def config(tmp_path, task, optimizer, **overrides):
    values = dict(task=str(task), optimizer=optimizer, optimizer_options=SMALL[optimizer], output_dir=str(tmp_path / optimizer),
                  batch_size=2, max_steps=4, checkpoint_every=2, zero_shot=False, method_options={"num_virtual_tokens": 3})
    return TrainConfig(**{**values, **overrides})


@pytest.mark.parametrize("optimizer", list(SMALL))
def test_a_forward_only_run_writes_what_an_adamw_run_does_and_never_builds_a_graph(tmp_path, tiny_base, reviews_file, monkeypatch, optimizer):
    grad_modes = []
    real_loss = KINDS["text"].choice_loss  # what the trainer calls for a text task's choices
    monkeypatch.setitem(KINDS, "text", dataclasses.replace(
        KINDS["text"], choice_loss=lambda *a, **k: grad_modes.append(torch.is_grad_enabled()) or real_loss(*a, **k)))
    result = train(config(tmp_path, reviews_file, optimizer), base=tiny_base)
    assert {p.name for p in result.output_dir.iterdir()} >= {"prompt.safetensors", "metrics.jsonl", "curves.png", "checkpoint.pt",
                                                             "train_config.yaml", "README.md"}
    log = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    expected = {"zo-sgd": [2] * 4, "cma-es": [4] * 4, "sharpzo": [6, 6, 2, 2]}[optimizer]  # population + 2, then two points
    assert [r["forward_passes"] for r in steps] == expected
    assert OPTIMIZERS[optimizer].steps_within(SMALL[optimizer], sum(expected)) == 4  # what it declares is what it costs
    assert grad_modes and not any(grad_modes)
    assert result.prompt.info["train_config"]["optimizer"] == optimizer and result.metrics["steps"] == 4


def test_adamw_counts_a_backward_pass_as_two_forward_passes(tmp_path, tiny_base, reviews_file):
    run = TrainConfig(task=str(reviews_file), output_dir=str(tmp_path), batch_size=2, max_steps=2, gradient_accumulation=2,
                      zero_shot=False, method_options={"num_virtual_tokens": 3})
    log = [json.loads(line) for line in (train(run, base=tiny_base).output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["forward_passes"] for r in log if "loss" in r] == [6, 6]
    assert OPTIMIZERS["adamw"].steps_within({}, 450) == 150  # with batches of one micro-batch


class LinearLoss:
    """A StepBatches stand-in whose loss is <c, theta>: the two-point estimate is then exact."""

    def __init__(self, parameter, direction):
        self.parameter, self.direction = parameter, direction

    def __call__(self, backward: bool) -> float:
        return float((self.parameter.detach().double() * self.direction).sum())


def test_zo_sgd_moves_by_minus_lr_times_the_projected_gradient_times_z_regenerated_from_its_seed(tiny_base):
    parameter = torch.nn.Parameter(torch.randn(5, 3))
    method = type("Method", (torch.nn.Module,), {"parameter_groups": lambda self: [{"params": [parameter]}]})()
    run = TrainConfig(optimizer="zo-sgd", learning_rate=0.1, seed=4, optimizer_options={"eps": 1e-2})
    optimizer = ZeroOrderSGD(method, run, 1)
    start, direction = parameter.detach().clone(), torch.randn(5, 3, dtype=torch.float64)
    optimizer.step(LinearLoss(parameter, direction))
    seed = torch.randint(2**62, (1,), generator=torch.Generator().manual_seed(4)).item()
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(seed))
    expected = start - 0.1 * float((direction * z.double()).sum()) * z
    torch.testing.assert_close(parameter.detach(), expected, atol=1e-4, rtol=0)  # +eps -2eps +eps leaves float32 rounding


@pytest.mark.parametrize("method, options, passes", [("prompt-tuning", {"num_virtual_tokens": 3}, 1), ("capt", {}, 4)])
def test_a_population_is_one_forward_pass_when_the_injections_stack(tmp_path, tiny_base, reviews_file, monkeypatch, method, options, passes):
    """CaPT hooks the layers, so its candidates go one pass each; both ways give each candidate's own loss."""
    trainer = Trainer(config(tmp_path, reviews_file, "cma-es", method=method, method_options=options), base=tiny_base)
    parameters = trainer.optimizer.subspace.parameters
    candidates = [{p: p.detach() + 0.1 * k * torch.randn_like(p) for p in parameters} for k in range(4)]
    calls = []
    real = scoring.choice_scores
    monkeypatch.setattr(scoring, "choice_scores", lambda *a, **k: calls.append(1) or real(*a, **k))
    group = trainer._epoch_batches()[:1]
    together = StepBatches(trainer, group).candidates(candidates)
    assert len(calls) == passes
    one_by_one = [StepBatches(trainer, group).candidates([c])[0] for c in candidates]
    torch.testing.assert_close(torch.tensor(together), torch.tensor(one_by_one), atol=1e-5, rtol=0)
    assert len(set(together)) == 4  # each candidate scored under its own values


@pytest.mark.parametrize("optimizer", ["cma-es", "sharpzo"])
def test_an_interrupted_search_resumes_to_the_same_prompt(tmp_path, tiny_base, reviews_file, monkeypatch, optimizer):
    straight = train(config(tmp_path / "a", reviews_file, optimizer, max_steps=5), base=tiny_base)
    interrupted = config(tmp_path / "b", reviews_file, optimizer, max_steps=5, checkpoint_every=1)
    original = Trainer._step

    def dies_after_three(self, group):
        record = original(self, group)
        if self.step == 3:
            raise KeyboardInterrupt
        return record

    monkeypatch.setattr(Trainer, "_step", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, base=tiny_base)
    monkeypatch.setattr(Trainer, "_step", original)
    resumed = train(dataclasses.replace(interrupted, resume=True), base=tiny_base)
    assert torch.equal(resumed.prompt.method.embeddings, straight.prompt.method.embeddings)


def test_a_cma_state_that_does_not_replay_to_its_mean_is_refused(tmp_path, tiny_base, reviews_file):
    trainer = Trainer(config(tmp_path, reviews_file, "cma-es"), base=tiny_base)
    trainer.train()
    state = trainer.optimizer.state_dict()
    state["mean"] = state["mean"] + 1
    fresh = Trainer(config(tmp_path, reviews_file, "cma-es"), base=tiny_base)
    with pytest.raises(SoftPromptError, match="does not replay to its saved mean"):
        fresh.optimizer.load_state_dict(state)


def test_sharpzo_searches_a_sparse_share_of_z_after_its_cma_warm_up(tmp_path, tiny_base, reviews_file):
    trainer = Trainer(config(tmp_path, reviews_file, "sharpzo", max_steps=5), base=tiny_base)
    trainer.train()
    optimizer = trainer.optimizer
    assert optimizer.learning_rate == sharpzo.DEFAULT_LEARNING_RATE and int(optimizer.mask.sum()) == 2  # 25% of 8 coordinates
    torch.testing.assert_close(trainer.method.embeddings.detach(), optimizer.subspace.candidate(optimizer.z)[trainer.method.embeddings])


def test_no_optimizer_option_shares_a_name_with_another_option_of_the_command_line():
    others = {f.name for cls in (TrainConfig, FileTaskOptions) for f in dataclasses.fields(cls)}
    others |= {f.name for cls in {**METHODS, **BASELINES}.values() for f in dataclasses.fields(cls.config_class)}
    for cls in OPTIMIZERS.values():
        names = {f.name for f in dataclasses.fields(cls.config_class)}
        assert not names & others, f"{cls.name}: {names & others}"
        assert set(field_docs(cls.config_class)) == names  # every option documents itself in --help


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_a_schedule_option_the_optimizer_does_not_read_is_refused(optimizer):
    changed = {"learning_rate": 0.5, "warmup_ratio": 0.5, "warmup_steps": 3, "lr_schedule": "constant", "weight_decay": 0.1,
               "max_grad_norm": 2.0}
    assert set(changed) == set(SCHEDULE_OPTIONS)
    reads = OPTIMIZERS[optimizer].reads
    for name, value in changed.items():
        if name in reads:
            assert getattr(TrainConfig(optimizer=optimizer, **{name: value}), name) == value
        else:
            with pytest.raises(SoftPromptError, match=f"optimizer '{optimizer}' does not use {name}"):
                TrainConfig(optimizer=optimizer, **{name: value})
    assert (optimizer == "adamw") == (reads == set(SCHEDULE_OPTIONS))
