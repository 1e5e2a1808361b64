"""VIPAMIN (Park & Chung, NeurIPS 2025, arXiv 2510.16446): initial visual prompts from one look at the training
images, for VPT-shallow (layer 0) and VPT-deep (every layer l).

- Matching (embedding selection): with VPT's random prompts in place, compare each prompt's key with the patches'
  keys at layer l (cosine similarity of the keys averaged over heads and images, as the authors' code averages); the
  prompt becomes the mean of the layer-l input states of its top-k most similar patches (averaged over images), so
  it starts out attending like, and looking like, a semantically coherent group of patches.
- Orthogonalizing (subspace expansion): the attention outputs of layer l on the images without prompts (before the
  output projection, averaged over images) span a subspace S; a random vector r (the prompt's VPT start) is mapped to
  the value space, v = W_v r + b_v, projected onto the orthogonal complement of S, and mapped back with the
  pseudo-inverse: p = W_v^+ (P_perp v - b_v). So the prompt's value carries directions the pretrained attention does
  not produce. (The value map is taken without the LayerNorm in front of it, as the authors' code does; their script
  multiplies by W_v^+ from the right, we apply it as the inverse of v = W_v r + b_v.)
- The prompt is (1 - mix) * matched + mix * orthogonal.
"""
from __future__ import annotations

import torch

from ..backbones import BatchInputs, FrozenViT, Injection, class_logits


@torch.no_grad()
def vipamin_prompts(base: FrozenViT, inputs: BatchInputs, start: torch.Tensor, top_k: int, mix: float) -> torch.Tensor:
    """(L', m, d) prompts for layers 0..L'-1 from their VPT starts `start` (L', m, d), on the images of `inputs`."""
    states, keys = _prompted_states_and_keys(base, inputs, start)
    outputs = _attention_outputs(base, inputs, len(start))
    prompts, precision = [], start.dtype  # float32 (the prompt's) even on a bf16 model
    for layer in range(len(start)):
        matched = matched_prompts(states[layer].to(precision), keys[layer].to(precision), start.shape[1], top_k,
                                  base.config.num_attention_heads)
        value = base.layers[layer].attention.v_proj
        orthogonal = orthogonal_prompts(outputs[layer].to(precision), start[layer], value.weight.to(precision), value.bias.to(precision))
        prompts.append((1 - mix) * matched + mix * orthogonal)
    return torch.stack(prompts)


def matched_prompts(states: torch.Tensor, keys: torch.Tensor, m: int, top_k: int, heads: int) -> torch.Tensor:
    """(m, d): each prompt's top-k patches by key similarity, their input states averaged. `states` and `keys` are
    (B, 1 + m + N, d) for [CLS; prompts; patches]."""
    batch, length, width = keys.shape
    mean_keys = keys.view(batch, length, heads, width // heads).mean(2).mean(0)  # (1 + m + N, d_head)
    unit = torch.nn.functional.normalize(mean_keys, dim=-1)
    similarity = unit[1:1 + m] @ unit[1 + m:].T  # (m, N): prompts against patches
    chosen = similarity.topk(min(top_k, similarity.shape[1]), dim=-1).indices  # (m, k)
    patch_states = states[:, 1 + m:].mean(0)  # (N, d)
    return patch_states[chosen].mean(1)


def orthogonal_prompts(outputs: torch.Tensor, start: torch.Tensor, value_weight: torch.Tensor,
                       value_bias: torch.Tensor) -> torch.Tensor:
    """(m, d): W_v^+ (P_perp (W_v r + b_v) - b_v) for each row r of `start`, P_perp projecting onto the orthogonal
    complement of the span of the (B, T, d) attention outputs' image average."""
    vectors, strengths, _ = torch.linalg.svd(outputs.mean(0).T, full_matrices=False)  # (d, T), (T,)
    # An orthonormal basis of S: directions of (numerically) zero strength are not in the span. (A QR basis would
    # keep them when the tokens' outputs are nearly dependent, and project out random directions.)
    basis = vectors[:, strengths > strengths.max() * max(outputs.shape[1:]) * torch.finfo(strengths.dtype).eps]
    values = start @ value_weight.T + value_bias  # (m, d)
    outside = values - (values @ basis) @ basis.T  # P_perp v, row by row
    return (outside - value_bias) @ torch.linalg.pinv(value_weight).T


def _prompted_states_and_keys(base: FrozenViT, inputs: BatchInputs, start: torch.Tensor):
    """Each layer's input states and key projections with the start prompts in place (replaced at every layer l < L')."""
    states, keys, handles = {}, {}, []
    for index in range(len(start)):
        layer = base.layers[index]
        handles.append(layer.register_forward_pre_hook(lambda module, args, index=index: states.__setitem__(index, args[0])))
        handles.append(layer.attention.k_proj.register_forward_hook(
            lambda module, args, output, index=index: keys.__setitem__(index, output)))
    batch = inputs.batch_size
    deep = (lambda layer, hidden: torch.cat([hidden[:, :1], start[layer].expand(batch, -1, -1).to(hidden.dtype),
                                             hidden[:, 1 + start.shape[1]:]], dim=1) if layer < len(start) else hidden)
    try:
        class_logits(base, Injection(embeds=start[0].expand(batch, -1, -1), before_layer=deep, head=torch.nn.Identity()), inputs)
    finally:
        for handle in handles:
            handle.remove()
    return states, keys


def _attention_outputs(base: FrozenViT, inputs: BatchInputs, layers: int) -> dict[int, torch.Tensor]:
    """Each layer's attention output before the output projection, (B, 1 + N, d), on the images alone."""
    outputs, handles = {}, []
    for index in range(layers):
        handles.append(base.layers[index].attention.o_proj.register_forward_pre_hook(
            lambda module, args, index=index: outputs.__setitem__(index, args[0])))
    try:
        class_logits(base, Injection(head=torch.nn.Identity()), inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs
