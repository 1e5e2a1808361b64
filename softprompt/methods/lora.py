"""LoRA, the weight-space baseline every prompt method is compared against: it trains through the same
Trainer, files and evaluation, but changes the frozen model's layers instead of adding a prompt."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..backbones import BatchInputs, FrozenModel, Injection
from ..errors import SoftPromptError
from .base import HEAD_LEARNING_RATE, ClassifierConfig, PromptMethod


@dataclass
class LoraConfig(ClassifierConfig):
    rank: int = 8
    """Rank r of each update B A."""
    alpha: float = 16.0
    """Scale of the update: (alpha / r) B A."""
    target_modules: str = ""
    """Comma-separated names of the linear layers to adapt (the last part of each module's path); empty: PEFT's
    default for the model's family (q_proj,v_proj for Llama-likes, c_attn for GPT-2, query_key_value for Falcon
    and GPT-NeoX), else the first of q_proj,v_proj / qkv_proj the model has."""
    learning_rate: float = 1e-3
    head_learning_rate: float = HEAD_LEARNING_RATE
    """On a ViT: learning rate of the classifier head on the CLS state (unused on text models)."""


class LowRankAdaptation(PromptMethod):
    """Hu et al. 2022: a frozen linear layer y = W x gets y + (alpha / r) B A x, A in R^{r x in} (PEFT's
    Kaiming-uniform init), B in R^{out x r} zero-initialised, so training starts from the frozen model.
    Applied as an output hook on each target layer (`Injection.weight_updates`): the shared model's weights
    are never touched, so zero-shot scoring and other prompts on the same model stay exact. Tested equal to
    PEFT's LoraModel (tests/test_lora.py)."""

    name = "lora"
    description = "baseline, not a prompt: low-rank updates of the frozen model's attention projections"
    paper = "Hu et al. LoRA: Low-Rank Adaptation of Large Language Models. ICLR 2022"
    config_class = LoraConfig
    injects = frozenset({"weight_updates"})
    kinds = frozenset({"text", "vision"})  # on a ViT it also trains the classifier head every method there has

    def __init__(self, config: LoraConfig, base: FrozenModel):
        super().__init__(config, base)
        names = _target_names(config.target_modules, base)
        modules = dict(base.model.named_modules())
        self.targets = [path for path, module in modules.items() if _widths(module) and path.rsplit(".", 1)[-1] in names]
        if not self.targets or config.rank < 1:
            raise SoftPromptError(f"lora needs rank >= 1 and linear layers named {sorted(names)}; {type(base.model).__name__} "
                                  f"has {len(self.targets)} of them (rank {config.rank}): set --target-modules")
        self.down = nn.ParameterDict()  # A per target: (r, in)
        self.up = nn.ParameterDict()  # B per target: (out, r)
        for path in self.targets:
            key = path.replace(".", "/")  # a ParameterDict key may not hold dots
            width_in, width_out = _widths(modules[path])
            self.down[key] = nn.Parameter(torch.empty(config.rank, width_in))
            nn.init.kaiming_uniform_(self.down[key], a=math.sqrt(5))
            self.up[key] = nn.Parameter(torch.zeros(width_out, config.rank))

    def prompt_length(self) -> int:
        return 0  # nothing is added before the text

    def initialize(self, base: FrozenModel, task) -> None:
        self.fit_head(base, task)

    def forward(self, inputs: BatchInputs) -> Injection:
        scale = self.config.alpha / self.config.rank

        def update(key: str):
            return lambda x: scale * (x @ self.down[key].T.to(x.dtype)) @ self.up[key].T.to(x.dtype)
        return Injection(weight_updates={path: update(path.replace(".", "/")) for path in self.targets}, head=self.head)


FALLBACK_TARGETS = ("q_proj,v_proj", "qkv_proj")


def _target_names(option: str, base: FrozenModel) -> set[str]:
    if option:
        return {name.strip() for name in option.split(",") if name.strip()}
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    if base.config.model_type in PEFT_DEFAULTS:
        return set(PEFT_DEFAULTS[base.config.model_type])
    present = {path.rsplit(".", 1)[-1] for path, module in base.model.named_modules() if _widths(module)}
    return next((set(c.split(",")) for c in FALLBACK_TARGETS if set(c.split(",")) <= present), set(FALLBACK_TARGETS[0].split(",")))


def _widths(module: nn.Module) -> tuple[int, int] | None:
    """(input, output) width of a linear layer: nn.Linear, or GPT-2's Conv1D (weight stored as (in, out))."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D":
        return tuple(module.weight.shape)
    return None
