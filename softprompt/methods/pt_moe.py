"""PT-MoE: prompts mixed from low-rank experts with a shared projection and a noisy sparse router."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import SoftPromptError
from ..backbones import BatchInputs, FrozenModel, Injection
from .base import MethodConfig, PromptMethod, text_embeddings


@dataclass
class PtMoeConfig(MethodConfig):
    num_virtual_tokens: int = 20
    """Prompt length T."""
    num_experts: int = 4
    """N experts A_i in R^{T x R}."""
    rank: int = 16
    """R, the shared rank: P = (sum_i w_i A_i) B with B in R^{R x d}."""
    top_k: int = 1
    """Experts kept per input (the router's sparsity)."""
    router_noise: float = 0.1
    """Std of the multiplicative Gaussian noise on router logits during training."""
    init_text: str = ""
    """Text whose embeddings' SVD initialises A_i and B; empty means the task's description."""
    learning_rate: float = 3e-2


class PromptTuningMixtureOfExperts(PromptMethod):
    """Li, Su, Collier 2025. Router logits l = W mean(E(x)) + b, times (1 + eps) while training; weights
    w = softmax(l) kept on the top-k experts (not renormalised, so the router keeps a gradient);
    P(x) = (sum_i w_i A_i) B. Init: text embeddings E = U S V^T, A_i = U_R S_R^(1/2), B = S_R^(1/2) V_R^T.
    Choice left open: A_i is scaled by N (the router's initial weight is ~1/N), plus 1% noise to tell the
    experts apart, so the first prompt is the rank-R text embedding.
    """

    name = "pt-moe"
    description = "mixture of low-rank prompt experts with a shared projection and a noisy top-k router"
    paper = "Li, Su, Collier. PT-MoE: An Efficient Finetuning Framework for Integrating Mixture-of-Experts into Prompt Tuning. 2025 (arXiv 2505.09519)"
    config_class = PtMoeConfig
    input_dependent = True  # the router reads the input
    # arXiv 2505.09519, appendix tables 8-9: T 40, N 2, rank 36, router noise 0.01; lr 2e-5 constant after 500
    # warm-up steps, batch 64, 1500 steps.
    presets = {"paper": {"method_options": {"num_virtual_tokens": 40, "num_experts": 2, "rank": 36, "router_noise": 0.01},
                         "train": {"learning_rate": 2e-5, "lr_schedule": "constant", "warmup_steps": 500, "batch_size": 64,
                                   "max_steps": 1500}}}

    def __init__(self, config: PtMoeConfig, base: FrozenModel):
        super().__init__(config, base)
        n, t, r, d = config.num_experts, config.num_virtual_tokens, config.rank, base.embedding_size
        if not 1 <= r <= min(t, d) or not 1 <= config.top_k <= n:
            raise SoftPromptError(f"pt-moe needs 1 <= rank <= num_virtual_tokens ({t}) and 1 <= top_k <= num_experts ({n}); "
                                  f"got rank={r}, top_k={config.top_k}")
        self.experts = nn.Parameter(torch.randn(n, t, r) * 0.02)  # A: (N, T, R)
        self.projection = nn.Parameter(torch.randn(r, d) * 0.02)  # B: (R, d)
        self.router = nn.Linear(d, n)
        nn.init.normal_(self.router.weight, std=1e-3)
        nn.init.zeros_(self.router.bias)

    def initialize(self, base: FrozenModel, task) -> None:
        c = self.config
        text = text_embeddings(base, self.init_text(task), c.num_virtual_tokens)
        u, s, vh = torch.linalg.svd(text, full_matrices=False)
        root = s[: c.rank].sqrt()
        a = u[:, : c.rank] * root  # (T, R)
        with torch.no_grad():
            self.projection.copy_(root.unsqueeze(1) * vh[: c.rank])
            self.experts.copy_(c.num_experts * a * (1 + 0.01 * torch.randn(c.num_experts, *a.shape).to(a.device)))

    def routing_weights(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, N) sparse weights: softmax of the (noisy) logits, zero outside the top-k."""
        logits = self.router(pooled)
        if self.training and self.config.router_noise:
            logits = logits * (1 + self.config.router_noise * torch.randn_like(logits))
        weights = torch.softmax(logits, dim=-1)
        kept = torch.zeros_like(weights).scatter(-1, weights.topk(self.config.top_k, dim=-1).indices, 1.0)
        return weights * kept

    def forward(self, inputs: BatchInputs) -> Injection:
        weights = self.routing_weights(inputs.mean_embedding())  # (B, N)
        mixed = torch.einsum("bn,ntr->btr", weights, self.experts)  # (B, T, R)
        return Injection(embeds=mixed @ self.projection)  # (B, T, d)
