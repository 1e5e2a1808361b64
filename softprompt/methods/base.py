"""The protocol every soft-prompt method implements.

A method is an `nn.Module` with a typed config. It builds its parameters from the config and the frozen
model's dimensions (`__init__`), may initialise them from the task (`initialize`), and for each batch
returns an `Injection` saying what to inject (`forward`). The trainer, evaluator, generator and CLI only use
this protocol, so a new method is one new file plus a line in the registry.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..backbones import BatchInputs, FrozenModel, Injection
from ..configs import at_least, check_types
from ..errors import SoftPromptError


@dataclass
class MethodConfig:
    learning_rate: float = 1e-2
    """Peak learning rate of AdamW for this method's parameters."""

    def __post_init__(self):
        check_types(self)
        hints = typing.get_type_hints(type(self))
        at_least(self, 0, *(name for name, hint in hints.items() if hint in (int, float)))
        for name in hints:
            if name.endswith("learning_rate") and getattr(self, name) == 0:
                raise SoftPromptError(f"{name} must be > 0")


class PromptMethod(nn.Module):
    name: ClassVar[str]
    description: ClassVar[str]  # one line, shown by `softprompt list`
    paper: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    # Declared facts, read by export, serving and the tests instead of running the method to find out
    # (tests/test_methods_contract.py checks every method's declarations against what it returns).
    injects: ClassVar[frozenset[str]] = frozenset({"embeds"})
    """The `Injection` fields `forward` sets: embeds, key_values, input_delta, before_layer."""
    input_dependent: ClassVar[bool] = False
    """Whether the prompt changes with the input's content (then it has no shared prefix to cache)."""
    presets: ClassVar[dict[str, dict]] = {}
    """Named configurations (`--preset NAME`): {"method_options": {...}, "train": {TrainConfig options}}."""
    kinds: ClassVar[frozenset[str]] = frozenset({"text"})
    """The backbone kinds (`FrozenModel.kind`) it works on; built on another it is refused, saying why."""

    def __init__(self, config: MethodConfig, base: FrozenModel):
        super().__init__()
        if base.kind not in self.kinds:
            raise SoftPromptError(f"method {self.name!r} cannot run on {base.name!r}, a {base.kind} backbone: {WHY_NOT[base.kind]}")
        self.config = config
        self.head = base_head(base, getattr(config, "num_classes", 0))  # None on a backbone that scores its own answers
        length = getattr(config, "num_virtual_tokens", None)
        if length is not None and not 1 <= length <= base.max_length:
            raise SoftPromptError(f"num_virtual_tokens must be between 1 and the model's context length {base.max_length}, got {length}")

    def prompt_length(self) -> int:
        """Positions the prompt adds before the text."""
        return self.config.num_virtual_tokens

    def initialize(self, base: FrozenModel, task) -> None:
        """Data-driven initialisation before training (from text, vocabulary, demonstrations...)."""

    def init_text(self, task) -> str:
        """The text a prompt starts from: the method's init_text option, else the task's description."""
        return getattr(self.config, "init_text", "") or task.description

    def fit_head(self, base: FrozenModel, task) -> None:
        """Size the classifier head to the task's classes, where the backbone reads classes through one (a ViT)."""
        if base.kind == "vision":
            self.config.num_classes = len(task.label_words)
            self.head = base_head(base, self.config.num_classes)

    def instance_features(self, base: FrozenModel, texts: list[str]) -> torch.Tensor | None:
        """Per-example features from a frozen encoder, computed once per example and cached by the caller."""
        return None

    def parameter_groups(self) -> list[dict]:
        """AdamW parameter groups: the classifier head (if any) at the config's head_learning_rate when it has one;
        methods with several learning rates override this."""
        head = list(self.head.parameters()) if self.head is not None else []
        rest = [p for p in self.parameters() if p.requires_grad and all(p is not h for h in head)]
        groups = [{"params": rest, "lr": self.config.learning_rate}] if rest else []
        return groups + ([{"params": head, "lr": getattr(self.config, "head_learning_rate", self.config.learning_rate)}] if head else [])

    def for_task(self, name: str) -> PromptMethod:
        """The prompt of one task when training on several at once. Methods that learn task-specific parts
        return a view sharing their parameters; every other method serves all tasks with one prompt."""
        return self

    def shared_prefix(self) -> Injection | None:
        """The part of the prompt read before the text that is the same for every input, as a batch-1
        `Injection` (embeds and/or key_values only), or None when the prompt depends on the input.

        A method returning one promises that `forward` returns exactly this prefix (expanded to the batch)
        plus, at most, an `input_delta`: inference may then replace the prefix by its keys/values,
        computed once (`prefix_cache`)."""
        return None

    def forward(self, inputs: BatchInputs) -> Injection:
        raise NotImplementedError


WHY_NOT = {  # why a method written for the other kind of backbone cannot run on this one
    "vision": "it is written for causal language models (it reads tokens, a vocabulary, a key/value cache or a text "
              "encoder); on a ViT use vpt-shallow, vpt-deep, linear-probe, lora or full-finetune",
    "text": "it trains a classifier head on a ViT's CLS state, which a causal language model does not have; on text use "
            "prompt-tuning (the same prompt at the input) or prefix-tuning (prompts in every layer)",
}


HEAD_LEARNING_RATE = 3e-3  # every method's head on a ViT, so that the grid compares what differs (the prompt)


@dataclass
class ClassifierConfig(MethodConfig):
    num_classes: int = field(default=0, metadata={"internal": True})
    """Outputs of the classifier head on a ViT's CLS state (set from the training task; 0 on text backbones)."""


def base_head(base: FrozenModel, num_classes: int) -> nn.Linear | None:
    """A ViT's trainable classifier head: a linear map of the final CLS state to class scores (PyTorch's default,
    seeded, initialisation: a zero head would give the prompt no gradient in the first step); None on a causal LM
    (it scores answer words) or before the classes are known."""
    if base.kind != "vision" or not num_classes:
        return None
    return nn.Linear(base.hidden_size, num_classes, device=base.device)


def init_text_ids(base: FrozenModel, text: str, length: int) -> torch.Tensor:
    """Token ids of `text`, repeated or truncated to exactly `length` tokens (for text initialisation)."""
    ids = base.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise SoftPromptError(f"init text {text!r} tokenizes to nothing")
    repeats = -(-length // len(ids))
    return torch.tensor((ids * repeats)[:length], device=base.device)


def text_embeddings(base: FrozenModel, text: str, length: int) -> torch.Tensor:
    """(length, d) float32 embeddings of `text`, repeated or truncated to `length` tokens: exactly what the model
    reads for that text (through its embedding layer, so Gemma's scaling is included)."""
    with torch.no_grad():
        return base.embed(init_text_ids(base, text, length)).float()
