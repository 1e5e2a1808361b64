"""A mixed batch (rows with different methods, prompt lengths and the bare model) gives every row the
logits and greedy tokens it gets alone; padding only ever sits left of a whole [prompt; text] row."""
from __future__ import annotations

import torch

from softprompt.tuned import TunedPrompt
from softprompt.runtime.batching import encode, make_inputs
from softprompt.runtime.scoring import no_prompt
from softprompt.runtime.generation import generate_ids
from softprompt.methods import METHODS, build_method
from softprompt.backbones import prompted_forward
from softprompt.serving.mixed import merge_rows
from softprompt.serving.mixed import Row, _row_injection, next_token_logprobs
from softprompt.serving.scheduler import Scheduler
from softprompt.serving.sequences import SamplingParams, Sequence
from softprompt.serving.text import TextStream


def mixed_rows(base, task):
    """Every method once (two prompt-tuning lengths) plus a bare row, each on a different review."""
    torch.manual_seed(0)
    methods = [build_method(name, base) for name in sorted(METHODS)] + [build_method("prompt-tuning", base, {"num_virtual_tokens": 3})]
    rows = []
    examples = (task.train + task.test) * 2
    for method, example in zip([*methods, None], examples):
        ids = encode(base, [example], 128)[0].context
        if method is None:
            rows.append(Row(ids))
            continue
        method.initialize(base, task)
        with torch.no_grad():
            for parameter in method.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
            features = method.instance_features(base, [example.text])
        rows.append(Row(ids, TunedPrompt(base, method.eval(), {}), features))
    return rows


def alone_logits(base, row):
    inputs = make_inputs(base, [row.ids], row.features)
    prompt_fn = row.tuned.method if row.tuned else no_prompt
    with torch.no_grad():
        return torch.log_softmax(prompted_forward(base, prompt_fn(inputs), inputs, logits_to_keep=1)[0].logits[0, -1], -1)


def test_every_row_of_a_mixed_batch_scores_as_alone(tiny_base, tiny_task):
    rows = mixed_rows(tiny_base, tiny_task)
    assert len({len(r.ids) for r in rows}) > 1
    batched = next_token_logprobs(tiny_base, rows)
    for row_index, row in enumerate(rows):
        torch.testing.assert_close(batched[row_index], alone_logits(tiny_base, row), atol=1e-4, rtol=1e-4)


def test_padding_only_precedes_whole_rows(tiny_base, tiny_task):
    rows = mixed_rows(tiny_base, tiny_task)
    with torch.no_grad():
        prompt, inputs = merge_rows([_row_injection(tiny_base, row) for row in rows])
    for mask in inputs.attention_mask:
        first = int(mask.argmax())
        assert mask[first:].all() and not mask[:first].any()
    for mask in prompt.key_values_mask:
        first = int(mask.argmax()) if mask.any() else len(mask)
        assert mask[first:].all() and not mask[:first].any()


def test_mixed_generation_equals_each_row_alone(tiny_base, tiny_task):
    rows = mixed_rows(tiny_base, tiny_task)
    limits = [5] * len(rows)
    limits[0] = 2  # per-row limits
    together = generate_together(tiny_base, rows, limits)
    for row, limit, produced in zip(rows, limits, together):
        method = row.tuned.method if row.tuned else no_prompt
        assert produced == generate_ids(tiny_base, method, [row.ids], limit, features=row.features)[0]
        assert len(produced) == limit


def generate_together(base, rows, limits) -> list[list[int]]:
    """Greedy tokens of all rows, prefilled together in one mixed batch and decoded together by the scheduler."""
    sequences = [Sequence(row, SamplingParams(max_tokens=limit), i, lambda delta: None, TextStream(base.tokenizer))
                 for i, (row, limit) in enumerate(zip(rows, limits))]
    scheduler = Scheduler(base, max_batch_size=len(rows))
    scheduler.submit(*sequences)
    while scheduler.waiting or scheduler.running.sequences:
        scheduler.run_iteration()
    return [seq.tokens for seq in sequences]
