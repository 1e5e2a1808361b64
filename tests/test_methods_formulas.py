"""Each method's defining computation, checked against the formula written out independently."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from softprompt.runtime.batching import encode, make_inputs
from softprompt.errors import SoftPromptError
from softprompt.methods import build_method
from softprompt.methods.context_tuning import demonstrations
from softprompt.methods.prompt_tuning import initial_embeddings
from softprompt.backbones import prompted_forward
from softprompt.tasks import combine_tasks


def batch_of(base, task, method=None, count=4):
    examples = task.train[:count]
    features = method.instance_features(base, [e.text for e in examples]) if method is not None else None
    return make_inputs(base, [e.context for e in encode(base, examples, 128)], features)


def masked_mean(states, mask):
    mask = mask.unsqueeze(-1).float()
    return (states * mask).sum(1) / mask.sum(1)


@pytest.mark.parametrize("sink, with_own_state, gated", [(False, False, False), (True, False, False), (True, True, False), (False, False, True)])
def test_capt_capsule_is_task_vector_plus_mean_of_previous_layer(tiny_base, tiny_task, sink, with_own_state, gated):
    method = build_method("capt", tiny_base, {"sink_token": sink, "mean_includes_capsule": with_own_state, "mean_gate": gated})
    with torch.no_grad():
        method.task_vectors.normal_()
        if gated:
            method.mean_gates.normal_()
    inputs = batch_of(tiny_base, tiny_task)
    entering, leaving = {}, {}
    hooks = []
    for i, layer in enumerate(tiny_base.layers):
        # input_layernorm is the first thing a Llama layer does: it sees the state after CaPT's rewrite.
        hooks.append(layer.input_layernorm.register_forward_pre_hook(lambda m, a, i=i: entering.__setitem__(i, a[0])))
        hooks.append(layer.register_forward_hook(lambda m, a, out, i=i: leaving.__setitem__(i, out[0] if isinstance(out, tuple) else out)))
    with torch.no_grad():
        prompted_forward(tiny_base, method(inputs), inputs)
    for hook in hooks:
        hook.remove()
    at = 1 if sink else 0  # the capsule's position: after the BOS sink, or first
    if sink:
        torch.testing.assert_close(entering[0][:, 0], tiny_base.embed(torch.tensor([tiny_base.tokenizer.bos_token_id]))[0].expand(4, -1))
    mask = inputs.attention_mask
    previous = [inputs.input_embeds] + [leaving[i][:, at + 1:] for i in range(tiny_base.num_layers - 1)]
    own = [torch.zeros_like(inputs.input_embeds[:, 0])] + [leaving[i][:, at] for i in range(tiny_base.num_layers - 1)]
    for i in range(tiny_base.num_layers):
        if with_own_state:  # the capsule's incoming state counts as one more token of the mean
            mean = (own[i] + (previous[i] * mask.unsqueeze(-1)).sum(1)) / (mask.sum(1, keepdim=True) + 1)
        else:
            mean = masked_mean(previous[i], mask)
        gate = method.mean_gates[i] if gated else 1.0
        torch.testing.assert_close(entering[i][:, at], method.task_vectors[i] + gate * mean, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in method.parameters()) == tiny_base.num_layers * (tiny_base.hidden_size + gated)


def test_capt_gated_capsule_starts_as_a_zero_vector_and_its_gates_learn(tiny_base, tiny_task):
    method = build_method("capt", tiny_base, {"mean_gate": True})
    inputs = batch_of(tiny_base, tiny_task)
    entering = {}
    hooks = [layer.input_layernorm.register_forward_pre_hook(lambda m, a, i=i: entering.__setitem__(i, a[0]))
             for i, layer in enumerate(tiny_base.layers)]
    logits = prompted_forward(tiny_base, method(inputs), inputs)[0].logits
    for hook in hooks:
        hook.remove()
    assert all(torch.count_nonzero(entering[i][:, 0]) == 0 for i in entering)  # untrained: the slot is empty at every layer
    logits[:, -1].logsumexp(-1).sum().backward()
    assert method.mean_gates.grad.abs().min() > 0  # each layer's gate gets a gradient from its mean


def test_lopa_prompt_is_shared_times_sigmoid_of_low_rank_product(tiny_base, tiny_task):
    method = build_method("lopa", tiny_base, {"num_virtual_tokens": 5, "rank": 2})
    method.initialize(tiny_base, tiny_task)
    with torch.no_grad():  # the generators start near zero; make their dependence on the input visible
        for weight in [*method.u_net.parameters(), *method.v_net.parameters()]:
            weight.normal_(generator=torch.Generator().manual_seed(weight.numel()))
    inputs = batch_of(tiny_base, tiny_task, method)
    z = method(inputs).embeds
    e = inputs.features
    u = method.u_net(e).view(-1, 5, 2)
    v = method.v_net(e).view(-1, tiny_base.hidden_size, 2)
    expected = torch.stack([method.shared * torch.sigmoid(u[b] @ v[b].T) for b in range(len(e))])
    torch.testing.assert_close(z, expected)
    assert not torch.allclose(z[0], z[1], atol=1e-7), "the prompt must depend on the input"
    assert e.shape[1] == 384  # MiniLM-L6 sentence embeddings


def test_pt_moe_router_weights_are_sparse_and_prompt_is_their_mixture(tiny_base, tiny_task):
    method = build_method("pt-moe", tiny_base, {"num_experts": 4, "top_k": 2, "rank": 8})
    method.initialize(tiny_base, tiny_task)
    method.eval()  # no router noise, so two calls route alike
    with torch.no_grad():
        method.router.weight.normal_()
    inputs = batch_of(tiny_base, tiny_task)
    weights = method.routing_weights(inputs.mean_embedding())
    assert ((weights > 0).sum(-1) == 2).all() and (weights >= 0).all() and (weights.sum(-1) <= 1 + 1e-6).all()
    prompt = method(inputs).embeds
    for b in range(inputs.batch_size):
        mixed = sum(weights[b, i] * method.experts[i] for i in range(4)) @ method.projection
        torch.testing.assert_close(prompt[b], mixed)


def test_pt_moe_starts_from_the_low_rank_text_embedding(tiny_base, tiny_task):
    method = build_method("pt-moe", tiny_base, {"rank": 20})  # full rank: the SVD gives the text back
    method.initialize(tiny_base, tiny_task)
    method.eval()
    with torch.no_grad():
        method.router.weight.zero_()  # uniform router: weight 1/N on the kept expert
        prompt = method(batch_of(tiny_base, tiny_task, count=1)).embeds[0]
    text = initial_embeddings(tiny_base, "text", tiny_task.description, 20)
    assert (prompt - text).norm() / text.norm() < 0.03  # only the 1% expert-splitting noise remains


def test_dept_updates_each_real_token_by_its_position_row(tiny_base, tiny_task):
    method = build_method("dept", tiny_base, {"rank": 3, "alpha": 6.0})
    with torch.no_grad():
        method.feature_factors.normal_()
    inputs = batch_of(tiny_base, tiny_task)
    delta = method(inputs).input_delta
    for b in range(inputs.batch_size):
        real = inputs.attention_mask[b].nonzero().squeeze(-1)
        expected = 2.0 * method.position_factors[: len(real)] @ method.feature_factors  # alpha / r = 2
        torch.testing.assert_close(delta[b, real], expected)
        assert delta[b, inputs.attention_mask[b] == 0].abs().sum() == 0
    groups = method.parameter_groups()
    assert [g["lr"] for g in groups] == [3e-2, 1e-2]


def test_context_tuning_starts_from_balanced_demonstrations(tiny_base, tiny_task):
    chosen = demonstrations(tiny_task.train, 4)
    assert sorted(e.label for e in chosen) == [0, 0, 1, 1]
    method = build_method("context-tuning", tiny_base, {"num_virtual_tokens": 12})
    method.initialize(tiny_base, tiny_task)
    first = chosen[0].text + chosen[0].target
    ids = tiny_base.tokenizer(first, add_special_tokens=False)["input_ids"][:12]
    torch.testing.assert_close(method.embeddings[: len(ids)], tiny_base.embedding_matrix[ids])


def test_idpg_starts_at_its_bias_and_then_depends_on_the_input(tiny_base, tiny_task):
    method = build_method("idpg", tiny_base, {"num_virtual_tokens": 5})
    method.initialize(tiny_base, tiny_task)
    inputs = batch_of(tiny_base, tiny_task, method)
    prompt = method(inputs).embeds
    torch.testing.assert_close(prompt[0], method.bias)
    with torch.no_grad():
        method.up.weight.normal_()
    prompt = method(inputs).embeds
    assert not torch.allclose(prompt[0], prompt[1])


def test_pt_moe_refuses_a_rank_above_the_prompt_length(tiny_base):
    with pytest.raises(SoftPromptError, match="rank <= num_virtual_tokens"):
        build_method("pt-moe", tiny_base, {"num_virtual_tokens": 8, "rank": 16})


def test_multitask_prompt_is_shared_prompt_times_rank_one_task_factor(tiny_base, tiny_task):
    two_tasks = combine_tasks([tiny_task, replace(tiny_task, name="moods")])
    method = build_method("multitask-prompt-tuning", tiny_base, {"num_virtual_tokens": 5})
    method.initialize(tiny_base, two_tasks)
    text = initial_embeddings(tiny_base, "text", two_tasks.description, 5)
    inputs = batch_of(tiny_base, tiny_task)
    for name in ("reviews", "moods"):  # every task starts at the shared text initialisation
        torch.testing.assert_close(method.for_task(name)(inputs).embeds[0], text)
    with torch.no_grad():
        method.token_factors.normal_()
        method.feature_factors.normal_()
    for k, name in enumerate(("reviews", "moods")):
        expected = method.shared * (method.token_factors[k].unsqueeze(1) * method.feature_factors[k].unsqueeze(0))
        torch.testing.assert_close(method.for_task(name)(inputs).embeds[1], expected)
    assert not torch.allclose(method.for_task("reviews").task_prompt(), method.for_task("moods").task_prompt())
    with pytest.raises(SoftPromptError, match="pick one with for_task"):
        method(inputs)
    with pytest.raises(SoftPromptError, match="not 'copa'"):
        method.for_task("copa")


@pytest.mark.parametrize("encoder", ["base-last", "base-mean"])
def test_the_contextual_encoder_is_the_frozen_models_own_last_hidden_state(tiny_base, encoder):
    from softprompt.backbones.encoders import MAX_TOKENS, sentence_embeddings

    texts = ["Review: a triumph\nSentiment:", "word " * (MAX_TOKENS + 40) + "Question: good?\nAnswer:"]
    features = sentence_embeddings(encoder, tiny_base, texts)
    for text, feature in zip(texts, features):
        ids = tiny_base.tokenizer(text)["input_ids"][-MAX_TOKENS:]  # a long input keeps its end, as the model does
        with torch.no_grad():
            states = tiny_base.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        torch.testing.assert_close(feature, states[-1] if encoder == "base-last" else states.mean(0), atol=1e-4, rtol=1e-4)
    method = build_method("lopa", tiny_base, {"instance_encoder": encoder, "encoder_hidden_size": 0})
    assert method.u_net[0].in_features == method.u_net[0].out_features == tiny_base.hidden_size  # generators as wide as the encoder
