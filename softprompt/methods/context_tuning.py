"""Context Tuning: a prompt initialised from demonstrations of the training set, then tuned."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backbones import FrozenModel
from .base import text_embeddings
from .prompt_tuning import PromptTuning, PromptTuningConfig


@dataclass
class ContextTuningConfig(PromptTuningConfig):
    num_virtual_tokens: int = 96
    """Prompt length m: the demonstrations' tokens, repeated or cut to m."""
    num_demonstrations: int = 4
    """k training examples (balanced over labels where there are labels) written as the initial prompt."""
    learning_rate: float = 3e-2


class ContextTuning(PromptTuning):
    """Context Tuning (2025): the soft prompt starts as the embeddings of k demonstrations
    ("<input><answer>" blocks, separated by blank lines) instead of an instruction or noise.
    Input-level variant; demonstrations are drawn with a fixed seed, cycling through the labels."""

    name = "context-tuning"
    description = "prompt initialised from k training demonstrations, then tuned"
    paper = "Context Tuning for In-Context Optimization. 2025"
    config_class = ContextTuningConfig

    def initialize(self, base: FrozenModel, task) -> None:
        text = "\n\n".join(e.text + e.target for e in demonstrations(task.train, self.config.num_demonstrations)) + "\n\n"
        with torch.no_grad():
            self.embeddings.copy_(text_embeddings(base, text, self.config.num_virtual_tokens))


def demonstrations(examples: list, k: int, seed: int = 0) -> list:
    """k examples in a seeded order, taking labels in turn so every label is shown."""
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    by_label: dict = {}
    for i in order:
        by_label.setdefault(examples[i].label, []).append(examples[i])
    queues, chosen = list(by_label.values()), []
    while len(chosen) < min(k, len(examples)):
        for queue in queues:
            if queue and len(chosen) < k:
                chosen.append(queue.pop(0))
    return chosen
