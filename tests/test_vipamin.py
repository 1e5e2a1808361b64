"""VIPAMIN against its defining computation, written out by hand here from the ViT's own modules (no hooks, no
prompted pass): the keys of [CLS; P; patches] at layer 0, each prompt's top-k patches by cosine similarity of the
head-averaged, image-averaged keys, the mean of their embeddings; the attention output of the bare images at layer 0,
the projector onto its orthogonal complement, and the pseudo-inverse of the value map."""
from __future__ import annotations

import copy
import math

import torch

from softprompt.backbones import image_batch
from softprompt.methods import build_method
from softprompt.methods.vipamin import orthogonal_prompts, vipamin_prompts
from softprompt.tasks.images import open_image


def by_hand(base, pixels, start, top_k, mix):
    layer, heads = base.layers[0], base.config.num_attention_heads
    m, width = start.shape
    embeds = base.model.embeddings(pixels)  # (B, 1 + N, d)
    batch = embeds.shape[0]
    sequence = torch.cat([embeds[:, :1], start.expand(batch, -1, -1), embeds[:, 1:]], dim=1)
    keys = layer.attention.k_proj(layer.norm1(sequence)).view(batch, -1, heads, width // heads).mean(2).mean(0)
    matched = torch.zeros(m, width, dtype=start.dtype)
    for i in range(m):
        similarity = torch.tensor([torch.cosine_similarity(keys[1 + i], keys[1 + m + j], dim=0).item() for j in range(embeds.shape[1] - 1)])
        best = similarity.argsort(descending=True)[:top_k]
        matched[i] = embeds[:, 1:][:, best].mean(0).mean(0)
    x = layer.norm1(embeds)
    q, k, v = (proj(x).view(batch, -1, heads, width // heads).transpose(1, 2) for proj in
               (layer.attention.q_proj, layer.attention.k_proj, layer.attention.v_proj))
    attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width // heads), -1) @ v  # (B, h, T, d_h)
    outputs = attention.transpose(1, 2).reshape(batch, -1, width).mean(0)  # (T, d)
    projector = torch.eye(width) - outputs.T @ torch.linalg.pinv(outputs.T)  # onto the complement of the rows' span
    weight, bias = layer.attention.v_proj.weight, layer.attention.v_proj.bias
    orthogonal = torch.stack([torch.linalg.pinv(weight) @ (projector @ (weight @ r + bias) - bias) for r in start])
    return (1 - mix) * matched + mix * orthogonal


def test_vipamin_is_its_defining_computation(tiny_vit, tiny_image_task):
    """In float64: the value map's inverse (condition number ~300 here) would amplify float32 rounding to 1e-3."""
    base = copy.deepcopy(tiny_vit)
    base.model.double()
    pictures = [open_image(e.image) for e in tiny_image_task.train]
    torch.manual_seed(0)
    start = torch.empty(1, 4, base.hidden_size, dtype=torch.float64).uniform_(-0.1, 0.1)
    with torch.no_grad():
        ours = vipamin_prompts(base, image_batch(base, pictures), start, top_k=3, mix=0.3)[0]
        expected = by_hand(base, base.pixel_values(pictures).double(), start[0], top_k=3, mix=0.3)
    torch.testing.assert_close(ours, expected, atol=1e-8, rtol=1e-8)


def test_the_orthogonal_part_adds_values_outside_the_attention_s_subspace():
    torch.manual_seed(0)
    outputs = torch.randn(5, 7, 16)  # (B, T, d): T = 7 directions of 16
    weight, bias, start = torch.randn(16, 16), torch.randn(16), torch.randn(3, 16)
    values = orthogonal_prompts(outputs, start, weight, bias) @ weight.T + bias  # what the prompts' values become
    torch.testing.assert_close(values @ outputs.mean(0).T, torch.zeros(3, 7), atol=1e-3, rtol=0)
    assert values.norm() > 0.3 * (start @ weight.T + bias).norm()  # most of a random vector lies outside 7 of 16 dims


def test_vpt_deep_gets_a_vipamin_prompt_for_every_layer(tiny_vit, tiny_image_task):
    torch.manual_seed(0)
    method = build_method("vpt-deep", tiny_vit, {"init": "vipamin", "num_virtual_tokens": 3, "vipamin_top_k": 2})
    method.initialize(tiny_vit, tiny_image_task)
    torch.manual_seed(0)
    plain = build_method("vpt-deep", tiny_vit, {"num_virtual_tokens": 3})
    plain.initialize(tiny_vit, tiny_image_task)
    assert method.deep_embeddings.shape == (tiny_vit.num_layers - 1, 3, tiny_vit.hidden_size)
    for ours, xavier in ((method.embeddings, plain.embeddings), *zip(method.deep_embeddings, plain.deep_embeddings)):
        assert not torch.allclose(ours, xavier) and torch.isfinite(ours).all()
