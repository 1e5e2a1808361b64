"""Every method and baseline that runs on a ViT, through the same protocol on a tiny random DINOv2: what it declares,
batch invariance, gradients only on the prompt and the head, learning on a fixed batch, an exact save/load round trip;
and every other method refused, saying why."""
from __future__ import annotations

import pytest
import torch

from softprompt.backbones import Injection, class_logits, image_batch
from softprompt.errors import SoftPromptError
from softprompt.methods import METHODS, all_methods, build_method, methods_for
from softprompt.runtime.images import class_loss, encode_images
from softprompt.tasks.images import open_image
from softprompt.tuned import TunedPrompt, load_prompt

VISION = methods_for("vision")
INJECTION_PARTS = ("embeds", "key_values", "input_delta", "before_layer", "weight_updates")


def test_the_vision_methods_are_the_issue_s_grid():
    assert VISION == ["full-finetune", "linear-probe", "lora", "vpt-deep", "vpt-shallow"]


@pytest.fixture(params=VISION)
def vision_method(request):
    return request.param


def images(task, count=6):
    return [open_image(e.image) for e in task.test[:count]]


def test_a_batch_gives_every_image_its_solo_scores(vision_method, tiny_vit, tiny_image_task, vision_trained_like):
    method = vision_trained_like(vision_method)
    pictures = images(tiny_image_task)
    with torch.no_grad():
        inputs = image_batch(tiny_vit, pictures)
        together = class_logits(tiny_vit, method(inputs), inputs)
        for row, picture in enumerate(pictures):
            alone = image_batch(tiny_vit, [picture])
            torch.testing.assert_close(together[row], class_logits(tiny_vit, method(alone), alone)[0], atol=1e-5, rtol=1e-5)


def test_what_a_vision_method_declares_is_what_it_returns(vision_method, tiny_vit, tiny_image_task, vision_trained_like):
    method = vision_trained_like(vision_method)
    inputs = image_batch(tiny_vit, images(tiny_image_task, 2))
    injection = method(inputs)
    assert {part for part in INJECTION_PARTS if getattr(injection, part) is not None} == set(method.injects)
    assert (injection.embeds.shape[1] if injection.embeds is not None else 0) == method.prompt_length()
    assert injection.head is method.head and method.head.out_features == 3  # sized from the task's classes
    assert not method.input_dependent and method.shared_prefix() is None  # two-way attention: no prefix to cache


def test_only_the_prompt_and_head_get_gradients_and_the_loss_falls(vision_method, tiny_vit, tiny_image_task, vision_trained_like):
    method = vision_trained_like(vision_method).train()
    batch = encode_images(tiny_vit, tiny_image_task.train)
    optimizer = torch.optim.AdamW(method.parameter_groups())
    first = None
    for step in range(10):
        loss, positions = class_loss(tiny_vit, method, batch)
        loss.backward()
        if step == 0:
            assert all(p.grad is None for p in tiny_vit.model.parameters())
            assert [name for name, p in method.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
            assert positions == len(batch) * (1 + tiny_vit.num_patches)
        first = first if first is not None else loss.item()
        optimizer.step()
        optimizer.zero_grad()
    assert class_loss(tiny_vit, method, batch)[0].item() < first - 0.05


def test_save_load_round_trip_is_exact(vision_method, tiny_vit, tiny_image_task, vision_trained_like, tmp_path):
    method = vision_trained_like(vision_method)
    TunedPrompt(tiny_vit, method, {"task": "stripes", "label_words": list(tiny_image_task.label_words)}).save(tmp_path / "p.safetensors")
    loaded = load_prompt(tmp_path / "p.safetensors", tiny_vit)
    assert loaded.method.state_dict().keys() == method.state_dict().keys() and "head.weight" in method.state_dict()
    inputs = image_batch(tiny_vit, images(tiny_image_task))
    with torch.no_grad():
        assert torch.equal(class_logits(tiny_vit, method(inputs), inputs), class_logits(tiny_vit, loaded.method(inputs), inputs))


def test_vpt_shallow_is_prompt_tuning_with_the_prompt_after_cls(tiny_vit, tiny_image_task, vision_trained_like):
    """The same computation as text prompt tuning (the class is a subclass that adds initialisations only)."""
    method = vision_trained_like("vpt-shallow")
    assert isinstance(method, METHODS["prompt-tuning"])
    seen = []
    handle = tiny_vit.layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    inputs = image_batch(tiny_vit, images(tiny_image_task, 2))
    with torch.no_grad():
        class_logits(tiny_vit, method(inputs), inputs)
    handle.remove()
    m = method.prompt_length()
    torch.testing.assert_close(seen[0][:, 1:1 + m], method.embeddings.expand(2, -1, -1))
    torch.testing.assert_close(seen[0][:, [0, *range(1 + m, seen[0].shape[1])]], inputs.input_embeds)  # CLS, then the patches


def test_vpt_deep_replaces_the_prompt_slots_at_every_layer(tiny_vit, tiny_image_task, vision_trained_like):
    method = vision_trained_like("vpt-deep")
    seen = {}
    handles = [layer.norm1.register_forward_pre_hook(lambda module, args, i=i: seen.setdefault(i, args[0]))  # inside the layer
               for i, layer in enumerate(tiny_vit.layers)]
    inputs = image_batch(tiny_vit, images(tiny_image_task, 2))
    with torch.no_grad():
        class_logits(tiny_vit, method(inputs), inputs)
    for handle in handles:
        handle.remove()
    m = method.prompt_length()
    assert method.deep_embeddings.shape[0] == tiny_vit.num_layers - 1
    for layer in range(1, tiny_vit.num_layers):
        torch.testing.assert_close(seen[layer][:, 1:1 + m], method.deep_embeddings[layer - 1].expand(2, -1, -1))


def test_the_bare_pass_reads_the_model_s_own_cls_state(tiny_vit, tiny_image_task):
    inputs = image_batch(tiny_vit, images(tiny_image_task, 2))
    with torch.no_grad():
        ours = class_logits(tiny_vit, Injection(head=torch.nn.Identity()), inputs)
        theirs = tiny_vit.model(pixel_values=tiny_vit.pixel_values(images(tiny_image_task, 2))).pooler_output
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("name", sorted(all_methods()))
def test_a_method_for_the_other_kind_is_refused_saying_why(name, tiny_vit, tiny_base):
    if name in VISION and "text" in all_methods()[name].kinds:
        pytest.skip(f"{name} runs on both kinds")
    if name in VISION:
        with pytest.raises(SoftPromptError, match=rf"method '{name}' cannot run on .*, a text backbone: it trains a classifier head on a ViT's CLS state"):
            build_method(name, tiny_base)
    else:
        with pytest.raises(SoftPromptError, match=rf"method '{name}' cannot run on .*, a vision backbone: it is written for causal language models"):
            build_method(name, tiny_vit)


def test_a_vit_alone_answers_nothing(tiny_vit, tiny_image_task):
    inputs = image_batch(tiny_vit, images(tiny_image_task, 1))
    with pytest.raises(SoftPromptError, match="it has no answer of its own to score"):
        class_logits(tiny_vit, Injection(), inputs)


def test_full_finetune_covers_every_linear_and_norm_weight(tiny_vit, vision_trained_like):
    method = vision_trained_like("full-finetune")
    frozen = {name for name, _ in tiny_vit.model.named_parameters()}
    tuned = {key.replace("/", ".") + ".weight" for key in method.weight_deltas} | {key.replace("/", ".") + ".bias" for key in method.bias_deltas}
    assert frozen - tuned == {"embeddings.cls_token", "embeddings.mask_token", "embeddings.position_embeddings",
                              "embeddings.patch_embeddings.projection.weight", "embeddings.patch_embeddings.projection.bias",
                              *(f"encoder.layer.{i}.layer_scale{j}.lambda1" for i in range(tiny_vit.num_layers) for j in (1, 2))}


def test_gradient_checkpointing_keeps_a_deep_prompt_s_gradients(tiny_vit, tiny_image_task, vision_trained_like):
    batch = encode_images(tiny_vit, tiny_image_task.train[:4])

    def gradients():
        method = vision_trained_like("vpt-deep").train()
        class_loss(tiny_vit, method, batch)[0].backward()
        tiny_vit.release_hooks()
        return {name: p.grad for name, p in method.named_parameters()}

    plain = gradients()
    tiny_vit.enable_checkpointing()
    try:
        recomputed = gradients()
    finally:
        tiny_vit.disable_checkpointing()
    for name in plain:
        torch.testing.assert_close(recomputed[name], plain[name], atol=1e-6, rtol=1e-5)
