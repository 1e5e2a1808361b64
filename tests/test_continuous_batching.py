"""The scheduler, driven step by step on the tiny model: rows join and leave the running batch between
steps, keep their keys/values, and decode exactly as they would alone; scoring shares the loop."""
from __future__ import annotations

import pytest
import torch

from softprompt.methods import METHODS
from softprompt.runtime.generation import generate_ids
from softprompt.runtime.scoring import no_prompt
from softprompt.serving.mixed import Row
from softprompt.serving.scheduler import Scheduler
from softprompt.serving.sequences import SamplingParams, ScoreJob, Sequence
from softprompt.serving.text import TextStream
from test_mixed_batches import mixed_rows


def sequence(base, row, index=0, **params) -> Sequence:
    params = SamplingParams(**params)
    deltas = []
    seq = Sequence(row, params, index, deltas.append, TextStream(base.tokenizer, params.stop))
    seq.deltas = deltas
    return seq


def run_to_the_end(scheduler: Scheduler, limit: int = 500) -> int:
    for iteration in range(limit):
        if not scheduler.waiting and not scheduler.running.sequences:
            return iteration
        scheduler.run_iteration()
    raise AssertionError("the scheduler did not finish")


def test_every_method_decodes_as_alone_while_rows_join_and_leave(tiny_base, tiny_task):
    """Rows of every registered method (and the bare model), with different limits, arrive in two waves into
    a batch smaller than their number: each row's greedy tokens equal generate_ids on that row alone."""
    rows = mixed_rows(tiny_base, tiny_task)
    assert {type(row.tuned.method).__name__ for row in rows if row.tuned} >= {cls.__name__ for cls in METHODS.values()}
    scheduler = Scheduler(tiny_base, max_batch_size=5)
    sequences = [sequence(tiny_base, row, i, max_tokens=3 + 2 * (i % 4), logprobs=0) for i, row in enumerate(rows)]
    scheduler.submit(*sequences[:6])
    stages = []
    for _ in range(2):
        scheduler.run_iteration()
        stages.append(sorted(len(seq.tokens) for seq in scheduler.running.sequences))
    scheduler.submit(*sequences[6:])
    while scheduler.waiting or scheduler.running.sequences:
        scheduler.run_iteration()
        stages.append(sorted(len(seq.tokens) for seq in scheduler.running.sequences))
    assert any(len(set(stage)) > 1 for stage in stages), "rows at different steps never shared the batch"
    for seq, row in zip(sequences, rows):
        alone = generate_ids(tiny_base, row.tuned.method if row.tuned else no_prompt, [row.ids], seq.params.max_tokens,
                             features=row.features)[0]
        assert seq.tokens == alone and len(alone) == seq.params.max_tokens
        # Greedy tokens hide small errors (a wrong position id barely moves them): compare log-probabilities too.
        single = sequence(tiny_base, row, max_tokens=seq.params.max_tokens, logprobs=0)
        run_to_the_end(_submitted(Scheduler(tiny_base), single))
        torch.testing.assert_close(logprobs_of(seq), logprobs_of(single), atol=1e-4, rtol=1e-4)


def logprobs_of(seq) -> torch.Tensor:
    return torch.tensor([entry.logprob for delta in seq.deltas for entry in delta.logprobs])


def test_a_waiting_choice_joins_as_soon_as_a_row_leaves(tiny_base):
    scheduler = Scheduler(tiny_base, max_batch_size=2)
    ids = tiny_base.tokenizer("Review: fine\nSentiment:")["input_ids"]
    long, short, waiting = (sequence(tiny_base, Row(ids), i, max_tokens=n) for i, n in enumerate((12, 2, 3)))
    scheduler.submit(long, short, waiting)
    scheduler.run_iteration()  # long and short prefilled; the batch is full
    assert [len(s.tokens) for s in (long, short, waiting)] == [1, 1, 0]
    scheduler.run_iteration()  # short's second token: it leaves
    assert [len(s.tokens) for s in (long, short, waiting)] == [2, 2, 0] and short.finished
    scheduler.run_iteration()  # waiting joins at once, while long goes on
    assert [len(s.tokens) for s in (long, waiting)] == [3, 1] and scheduler.running.sequences == [long, waiting]
    assert short.deltas[-1].finish_reason == "length"


def test_rows_are_prefilled_once_then_read_one_token_per_step(tiny_base):
    """Keys/values are kept per row: every prefill row is a new choice, every later forward reads one token a row."""
    calls = []
    handle = tiny_base.model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(("decode", *kwargs["input_ids"].shape) if kwargs.get("input_ids") is not None
                                                  else ("prefill", *kwargs["inputs_embeds"].shape[:2])), with_kwargs=True)
    texts = ["Review: fine\nSentiment:", "Review: a long and winding , boring tale\nSentiment:", "Hi"]
    sequences = [sequence(tiny_base, Row(tiny_base.tokenizer(t)["input_ids"]), i, max_tokens=4 + 3 * i) for i, t in enumerate(texts)]
    scheduler = Scheduler(tiny_base, max_batch_size=8)
    try:
        scheduler.submit(sequences[0])
        scheduler.run_iteration()
        scheduler.submit(*sequences[1:])
        run_to_the_end(scheduler)
    finally:
        handle.remove()
    prefills = [c for c in calls if c[0] == "prefill"]
    decodes = [c for c in calls if c[0] == "decode"]
    assert sum(rows for _, rows, _ in prefills) == 3 and len(prefills) == 2
    assert all(width == 1 for _, _, width in decodes)
    assert sum(rows for _, rows, _ in decodes) == sum(seq.params.max_tokens - 1 for seq in sequences)  # 18 row-steps


def test_a_scoring_request_is_answered_at_the_next_step_of_a_running_generation(tiny_base):
    scheduler = Scheduler(tiny_base, max_batch_size=4)
    ids = tiny_base.tokenizer("Review: fine\nSentiment:")["input_ids"]
    long = sequence(tiny_base, Row(ids), max_tokens=30)
    scheduler.submit(long)
    scheduler.run_iteration()
    answers = []
    choices = [tiny_base.tokenizer(w, add_special_tokens=False)["input_ids"] for w in (" negative", " positive")]
    scheduler.submit(ScoreJob(Row(ids), choices, False, answers.append, answers.append))
    scheduler.run_iteration()
    assert len(answers) == 1 and answers[0].shape == (2,) and len(long.tokens) == 2 and not long.finished
    expected = torch.log_softmax(generate_logits(tiny_base, ids), -1)[[c[0] for c in choices]]
    torch.testing.assert_close(answers[0], expected, atol=1e-5, rtol=1e-5)


def generate_logits(base, ids):
    with torch.no_grad():
        return base.model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def test_a_seeded_choice_samples_the_same_tokens_whatever_shares_its_batch(tiny_base):
    ids = tiny_base.tokenizer("Once upon a time")["input_ids"]
    alone = sequence(tiny_base, Row(ids), max_tokens=8, temperature=1.0, seed=7)
    run_to_the_end(_submitted(Scheduler(tiny_base), alone))
    crowd = [sequence(tiny_base, Row(ids[:n]), max_tokens=8, temperature=1.0, seed=n) for n in (1, 2)]
    again = sequence(tiny_base, Row(ids), max_tokens=8, temperature=1.0, seed=7)
    other = sequence(tiny_base, Row(ids), max_tokens=8, temperature=1.0, seed=8)
    run_to_the_end(_submitted(Scheduler(tiny_base), *crowd, again, other))
    assert again.tokens == alone.tokens and other.tokens != alone.tokens


def _submitted(scheduler, *sequences):
    scheduler.submit(*sequences)
    return scheduler


@pytest.mark.parametrize("limit", [{"top_k": 1}, {"top_p": 1e-6}])
def test_top_k_1_and_a_tiny_top_p_sample_the_greedy_tokens(tiny_base, limit):
    ids = tiny_base.tokenizer("Once upon a time")["input_ids"]
    greedy, sampled = sequence(tiny_base, Row(ids), max_tokens=6), sequence(tiny_base, Row(ids), max_tokens=6, temperature=1.5, **limit)
    run_to_the_end(_submitted(Scheduler(tiny_base), greedy, sampled))
    assert sampled.tokens == greedy.tokens


def test_min_tokens_holds_back_an_end_of_sequence_the_logit_bias_forces(tiny_base):
    eos = tiny_base.tokenizer.eos_token_id
    ids = tiny_base.tokenizer("Once upon a time")["input_ids"]
    seq = sequence(tiny_base, Row(ids), max_tokens=10, min_tokens=3, logit_bias=((eos, 100.0),))
    run_to_the_end(_submitted(Scheduler(tiny_base), seq))
    assert len(seq.tokens) == 4 and seq.tokens[-1] == eos and eos not in seq.tokens[:3]
    assert seq.deltas[-1].finish_reason == "stop" and seq.deltas[-1].generated == 4


def test_a_step_that_fails_ends_every_running_choice_with_the_error_and_the_loop_goes_on(tiny_base, monkeypatch):
    from softprompt.serving import running_batch

    scheduler = Scheduler(tiny_base)
    ids = tiny_base.tokenizer("Once upon a time")["input_ids"]
    first, second = sequence(tiny_base, Row(ids), max_tokens=5), sequence(tiny_base, Row(ids), 1, max_tokens=5)
    scheduler.submit(first, second)
    scheduler.run_iteration()
    monkeypatch.setattr(running_batch.RunningBatch, "step", lambda self: (_ for _ in ()).throw(RuntimeError("out of memory")))
    scheduler.run_iteration()
    assert [str(s.deltas[-1].error) for s in (first, second)] == ["out of memory"] * 2 and not scheduler.running.sequences
    monkeypatch.undo()
    later = sequence(tiny_base, Row(ids), max_tokens=3)
    run_to_the_end(_submitted(scheduler, later))
    assert len(later.tokens) == 3


def test_a_leaving_row_takes_its_width_with_it(tiny_base):
    """Rows are left-padded to the widest; when the widest leaves, the columns no one reads are dropped."""
    from softprompt.serving.running_batch import RunningBatch, prefill

    short, wide = (sequence(tiny_base, Row(list(range(10, 10 + n))), max_tokens=4) for n in (3, 7))
    batch = RunningBatch(tiny_base)
    for seq in (wide, short):
        _, key_values, mask = prefill(tiny_base, [seq])
        batch.join([seq], key_values, mask, [11])
    assert batch.mask.tolist() == [[1] * 7, [0] * 4 + [1] * 3] and batch.key_values[0][0].shape[2] == 7
    batch.step()
    batch.keep([1])
    assert batch.mask.tolist() == [[1] * 4] and all(k.shape[:3] == (1, 2, 4) for k, _ in batch.key_values)


def test_penalties_and_bias_move_the_logits_by_openais_formula(tiny_base):
    """logit - count * frequency_penalty - (count > 0) * presence_penalty + bias, over the tokens generated so far."""
    from softprompt.serving.sampling import _processed

    seq = sequence(tiny_base, Row([1]), presence_penalty=0.5, frequency_penalty=0.25, logit_bias=((9, -3.0),))
    seq.tokens = [5, 5, 7]
    changed = _processed(torch.zeros(1, 12), [seq], torch.tensor([2]))[0]
    assert changed[5] == -(2 * 0.25 + 0.5) and changed[7] == -(0.25 + 0.5) and changed[9] == -3.0 and changed[6] == 0
