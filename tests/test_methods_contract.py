"""Every registered method, through the same protocol: shapes, padding invariance, gradients only on the
prompt, learning on a fixed batch, and an exact save/load round trip. New methods are tested by adding them."""
from __future__ import annotations

import pytest
import torch

from softprompt.tuned import TunedPrompt, load_prompt
from softprompt.runtime.batching import encode, make_inputs
from softprompt.runtime.scoring import lm_loss
from softprompt.runtime.generation import generate_ids
from softprompt.methods import METHODS, build_method
from softprompt.backbones import prompted_forward


def built(name, base, task):
    torch.manual_seed(0)
    method = build_method(name, base)
    method.initialize(base, task)
    return method


@pytest.fixture(params=sorted(METHODS))
def method_name(request):
    return request.param


def features(method, base, examples):
    with torch.no_grad():
        return method.instance_features(base, [e.text for e in examples])


def test_padding_never_changes_a_row(method_name, tiny_base, tiny_task):
    """A left-padded batch gives each row exactly the logits it gets alone (prompt | pad | text is safe)."""
    method = built(method_name, tiny_base, tiny_task).eval()
    examples = tiny_task.train[:4]
    sequences = [e.context for e in encode(tiny_base, examples, 128)]
    assert len({len(s) for s in sequences}) > 1, "the rows must differ in length for this test to mean anything"
    encoded = features(method, tiny_base, examples)
    with torch.no_grad():
        inputs = make_inputs(tiny_base, sequences, encoded)
        batched = prompted_forward(tiny_base, method(inputs), inputs, logits_to_keep=1)[0].logits[:, -1]
        for row, sequence in enumerate(sequences):
            alone = make_inputs(tiny_base, [sequence], encoded[row:row + 1] if encoded is not None else None)
            single = prompted_forward(tiny_base, method(alone), alone, logits_to_keep=1)[0].logits[0, -1]
            torch.testing.assert_close(batched[row], single, atol=1e-4, rtol=1e-4)


def test_only_the_prompt_gets_gradients_and_the_loss_falls(method_name, tiny_base, tiny_task):
    method = built(method_name, tiny_base, tiny_task)
    batch = encode(tiny_base, tiny_task.train, 128)
    encoded = features(method, tiny_base, tiny_task.train)
    optimizer = torch.optim.AdamW(method.parameter_groups())  # each method's own default learning rate(s)
    first = None
    for _ in range(15):
        loss, _ = lm_loss(tiny_base, method, batch, encoded)
        loss.backward()
        first = first if first is not None else loss.item()
        optimizer.step()
        optimizer.zero_grad()
    assert all(p.grad is None for p in tiny_base.model.parameters())
    assert lm_loss(tiny_base, method, batch, encoded)[0].item() < first - 0.1  # deterministic: a disconnected gradient leaves it unchanged


def test_save_load_round_trip_is_exact(method_name, tiny_base, tiny_task, tmp_path):
    method = built(method_name, tiny_base, tiny_task)
    with torch.no_grad():
        for parameter in method.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)  # not just the initial values
    path = tmp_path / "p.safetensors"
    TunedPrompt(tiny_base, method, {"task": "reviews"}).save(path)
    loaded = load_prompt(path, tiny_base)
    assert loaded.method.state_dict().keys() == method.state_dict().keys()
    method.eval()
    encoded = features(method, tiny_base, tiny_task.test)
    inputs = make_inputs(tiny_base, [e.context for e in encode(tiny_base, tiny_task.test, 128)], encoded)
    with torch.no_grad():
        expected = prompted_forward(tiny_base, method(inputs), inputs)[0].logits
        got = prompted_forward(tiny_base, loaded.method(inputs), inputs)[0].logits
    assert torch.equal(expected, got)
    assert loaded.info["task"] == "reviews"


def test_every_method_is_listed_with_a_paper(method_name):
    cls = METHODS[method_name]
    assert cls.description and cls.paper and cls.name == method_name


def test_batched_generation_equals_one_row_at_a_time(method_name, tiny_base, tiny_task):
    """Decoding with the cache after any kind of prompt (embeddings, prefix keys/values, layer hooks)."""
    method = built(method_name, tiny_base, tiny_task).eval()
    examples = tiny_task.test
    contexts = [e.context for e in encode(tiny_base, examples, 128)]
    encoded = features(method, tiny_base, examples)
    together = generate_ids(tiny_base, method, contexts, max_new_tokens=5, features=encoded)
    for row, context in enumerate(contexts):
        alone = generate_ids(tiny_base, method, [context], max_new_tokens=5,
                             features=encoded[row:row + 1] if encoded is not None else None)
        assert together[row] == alone[0]
    assert all(len(ids) == 5 for ids in together)  # a random model does not stop early: all steps ran
