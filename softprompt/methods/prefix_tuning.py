"""Prefix Tuning / P-Tuning v2: trainable keys and values prepended inside every attention layer."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..backbones import BatchInputs, FrozenModel, Injection
from .base import MethodConfig, PromptMethod, init_text_ids


@dataclass
class PrefixTuningConfig(MethodConfig):
    num_virtual_tokens: int = 20
    """Prefix length m (positions added in every layer)."""
    projection_hidden_size: int = 0
    """0: keys/values are the parameters (P-Tuning v2). >0: [K;V] = MLP(Q), Linear(d->h)-tanh-Linear(h->2*L*kv)."""
    init_text: str = ""
    """Without projection, start from the real keys/values the frozen model computes for this text
    (empty: the task's description). Li & Liang found real-word activations a much better start than noise."""
    learning_rate: float = 5e-3


class PrefixTuning(PromptMethod):
    """Li & Liang 2021; Liu et al. 2022. Per layer l: K_l, V_l in R^{m x h_kv x d_head} (grouped-query
    attention: h_kv is num_key_value_heads). The text's position ids start at m, after the prefix.
    """

    name = "prefix-tuning"
    description = "trainable keys/values in every layer (P-Tuning v2; optional MLP reparameterisation)"
    paper = "Li & Liang. Prefix-Tuning. ACL 2021; Liu et al. P-Tuning v2. ACL 2022"
    config_class = PrefixTuningConfig
    injects = frozenset({"key_values"})

    def __init__(self, config: PrefixTuningConfig, base: FrozenModel):
        super().__init__(config, base)
        self.shape = (base.num_layers, 2, base.num_kv_heads, config.num_virtual_tokens, base.head_dim)
        kv_size = base.num_layers * 2 * base.num_kv_heads * base.head_dim
        hidden = config.projection_hidden_size
        if hidden:
            self.inputs = nn.Parameter(torch.randn(config.num_virtual_tokens, base.hidden_size) * 0.02)  # Q
            self.mlp = nn.Sequential(nn.Linear(base.hidden_size, hidden), nn.Tanh(), nn.Linear(hidden, kv_size))
        else:
            self.key_values = nn.Parameter(torch.randn(self.shape) * 0.02)  # (L, 2, h_kv, m, d_head)

    def initialize(self, base: FrozenModel, task) -> None:
        if self.config.projection_hidden_size:
            return
        ids = init_text_ids(base, self.init_text(task), self.config.num_virtual_tokens)
        with torch.no_grad():  # the real keys/values of the text; copied into the float32 parameter
            cache = base.model(input_ids=ids.unsqueeze(0), use_cache=True).past_key_values
            real = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers])
            self.key_values.copy_(real)

    def layer_key_values(self) -> torch.Tensor:
        """All prefixes as one tensor: (L, 2, h_kv, m, d_head)."""
        if self.config.projection_hidden_size:
            m = self.config.num_virtual_tokens
            kv = self.mlp(self.inputs).view(m, self.shape[0], 2, self.shape[2], self.shape[4])  # (m, L, 2, h_kv, dh)
            return kv.permute(1, 2, 3, 0, 4)
        return self.key_values

    def shared_prefix(self) -> Injection:
        return self._prompt(1)

    def forward(self, inputs: BatchInputs) -> Injection:
        return self._prompt(inputs.batch_size)

    def _prompt(self, batch: int) -> Injection:
        kv = self.layer_key_values()
        return Injection(key_values=[(layer[0].expand(batch, -1, -1, -1), layer[1].expand(batch, -1, -1, -1)) for layer in kv])
