"""Every registered method (and baseline), through the same protocol: what it declares, padding invariance,
gradients only on the prompt, learning on a fixed batch, an exact save/load round trip, cached generation,
and a prompt read from the context alone. New methods are tested by adding them to the registry."""
from __future__ import annotations

import pytest
import torch

from softprompt.tuned import TunedPrompt, load_prompt
from softprompt.runtime.batching import encode, make_inputs
from softprompt.runtime.scoring import lm_loss
from softprompt.runtime.generation import generate_ids
from softprompt.methods import BASELINES, METHODS, build_method
from softprompt.backbones import Injection, prompted_forward, weight_hooks
from softprompt.runtime.scoring import target_logprobs


def built(name, base, task):
    torch.manual_seed(0)
    method = build_method(name, base)
    method.initialize(base, task)
    return method


@pytest.fixture(params=sorted({**METHODS, **BASELINES}))
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
    cls = {**METHODS, **BASELINES}[method_name]
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


INJECTION_PARTS = ("embeds", "key_values", "input_delta", "before_layer", "weight_updates")


def test_what_a_method_declares_is_what_it_returns(method_name, tiny_base, tiny_task, trained_like):
    """injects, prompt_length and input_dependent, which export and serving read instead of probing."""
    method = trained_like(method_name)  # off its initial values: IDPG, LoRA start input-blind or as the bare model
    first, second = tiny_task.train[0], tiny_task.train[2]  # two different inputs
    made = [_injection_and_prompt_logits(method, tiny_base, example) for example in (first, second)]
    injection = made[0][0]
    assert {part for part in INJECTION_PARTS if getattr(injection, part) is not None} == set(method.injects)
    length = (injection.embeds.shape[1] if injection.embeds is not None else 0) + (
        injection.key_values[0][0].shape[2] if injection.key_values else 0)
    assert length == method.prompt_length()
    if injection.embeds is not None:  # the states at the prompt's own positions differ only if the input shapes them
        differs = not torch.allclose(made[0][1], made[1][1], atol=1e-5)
    elif injection.key_values is not None:
        differs = any(not torch.equal(a, b) for x, y in zip(made[0][0].key_values, made[1][0].key_values) for a, b in zip(x, y))
    else:
        probe = torch.randn(1, 3, tiny_base.hidden_size)
        differs = any(not torch.equal(made[0][0].weight_updates[k](probe), made[1][0].weight_updates[k](probe)) for k in injection.weight_updates)
    assert differs == method.input_dependent


def _injection_and_prompt_logits(method, base, example) -> tuple[Injection, torch.Tensor]:
    inputs = make_inputs(base, [encode(base, [example], 128)[0].context], features(method, base, [example]))
    with torch.no_grad():
        injection = method(inputs)
        logits = prompted_forward(base, injection, inputs, logits_to_keep=0)[0].logits
    m = injection.embeds.shape[1] if injection.embeds is not None else 0
    return injection, logits[0, :m]


def test_scoring_an_answer_uses_the_prompt_of_the_context_alone(method_name, tiny_base, tiny_task, trained_like):
    """The answer must never shape the prompt that predicts it: its log-probabilities when scored in one pass
    equal those of feeding it token by token after a prefill of the context alone, as generation does."""
    assert_answer_blind(trained_like(method_name), tiny_base, tiny_task)


# Options under which the input reaches the prompt through the batch itself (not through cached features).
READS_THE_BATCH = [("lopa", {"instance_encoder": "base"}), ("idpg", {"instance_encoder": "base"}), ("pt-moe", {"num_experts": 2, "top_k": 2})]


@pytest.mark.parametrize("name, options", READS_THE_BATCH)
def test_a_prompt_computed_from_the_batch_never_reads_the_answer(name, options, tiny_base, tiny_task, trained_like):
    assert_answer_blind(trained_like(name, options, nudge=1.0), tiny_base, tiny_task)  # an input signal strong enough to see


def assert_answer_blind(method, tiny_base, tiny_task):
    example = tiny_task.test[0]
    context = encode(tiny_base, [example], 128)[0].context
    answer = tiny_base.tokenizer(" a warm and witty delight", add_special_tokens=False)["input_ids"]
    encoded = features(method, tiny_base, [example])
    with torch.no_grad():
        while_scoring = []
        scored, _ = target_logprobs(tiny_base, lambda batch: while_scoring.append(method(batch)) or while_scoring[-1],
                                    [context], [answer], encoded)
        inputs = make_inputs(tiny_base, [context], encoded)
        injection = method(inputs)
        if injection.embeds is not None:  # the prompt itself, where it is a tensor
            torch.testing.assert_close(while_scoring[0].embeds, injection.embeds, atol=1e-6, rtol=0)
        output, mask = prompted_forward(tiny_base, injection, inputs, logits_to_keep=1, use_cache=True)
        stepwise = []
        for token in answer:
            stepwise.append(torch.log_softmax(output.logits[0, -1].float(), -1)[token])
            position = mask.sum(-1, keepdim=True)
            mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
            with weight_hooks(tiny_base, injection.weight_updates):
                output = tiny_base.model(input_ids=torch.tensor([[token]]), attention_mask=mask, position_ids=position,
                                         past_key_values=output.past_key_values, use_cache=True, logits_to_keep=1)
    torch.testing.assert_close(scored[0], torch.stack(stepwise), atol=1e-4, rtol=1e-4)
