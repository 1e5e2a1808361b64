"""Multitask Prompt Tuning: one prompt shared by several tasks, specialised per task by a rank-1 factor."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ..errors import SoftPromptError
from ..backbones import BatchInputs, FrozenModel, Injection
from .base import MethodConfig, PromptMethod, text_embeddings


@dataclass
class MultitaskPromptTuningConfig(MethodConfig):
    num_virtual_tokens: int = 20
    """Length m of the shared prompt."""
    init_text: str = ""
    """Text initialising the shared prompt; empty means the tasks' descriptions."""
    learning_rate: float = 3e-2
    """Learning rate of the shared prompt."""
    task_learning_rate: float = 1e-2
    """Learning rate of the task-specific factors u_k, v_k."""
    tasks: list[str] = field(default_factory=list, metadata={"internal": True})
    """The tasks trained together, in order (set from the training data)."""
    active_task: str = field(default="", metadata={"internal": True})
    """Which of `tasks` this prompt serves (set when training writes one prompt file per task)."""


class MultitaskPromptTuning(PromptMethod):
    """Wang et al. 2023: task k reads P_k = P* ⊙ (u_k v_k^T), P* in R^{m x d} shared by every task,
    u_k in R^m and v_k in R^d its own. Trained jointly on all tasks (`--task sst2,rte,mrpc`); the paper's
    distillation from single-task teachers is left out. The factors start at ones, so every P_k starts at
    the shared text initialisation."""

    name = "multitask-prompt-tuning"
    description = "a prompt shared across tasks times a rank-1 task factor; train on several tasks at once"
    paper = "Wang et al. Multitask Prompt Tuning Enables Parameter-Efficient Transfer Learning. ICLR 2023"
    config_class = MultitaskPromptTuningConfig

    def __init__(self, config: MultitaskPromptTuningConfig, base: FrozenModel):
        super().__init__(config, base)
        self.shared = nn.Parameter(torch.zeros(config.num_virtual_tokens, base.embedding_size))  # P*: (m, d)
        self._build_factors(max(1, len(config.tasks)), base.embedding_size)  # one task until trained on several

    def _build_factors(self, count: int, width: int) -> None:
        device = self.shared.device  # rebuilt by initialize(), after the method was moved to the model's device
        self.token_factors = nn.Parameter(torch.ones(count, self.config.num_virtual_tokens, device=device))  # u_k: (K, m)
        self.feature_factors = nn.Parameter(torch.ones(count, width, device=device))  # v_k: (K, d)

    def initialize(self, base: FrozenModel, task) -> None:
        self.config.tasks = [part.name for part in task.subtasks()]
        self._build_factors(len(self.config.tasks), base.embedding_size)
        with torch.no_grad():
            self.shared.copy_(text_embeddings(base, self.init_text(task), self.config.num_virtual_tokens))

    def parameter_groups(self) -> list[dict]:
        return [{"params": [self.shared], "lr": self.config.learning_rate},
                {"params": [self.token_factors, self.feature_factors], "lr": self.config.task_learning_rate}]

    def for_task(self, name: str) -> MultitaskPromptTuning:
        if name not in self.config.tasks:
            raise SoftPromptError(f"this prompt was trained on tasks {self.config.tasks}, not {name!r}")
        view = copy.copy(self)  # shares the parameters (same dict of tensors); only the config differs
        view.config = replace(self.config, active_task=name)
        return view

    def task_prompt(self) -> torch.Tensor:
        """(m, d) prompt of the active task: P* ⊙ (u_k v_k^T)."""
        tasks = self.config.tasks
        if self.config.active_task:
            k = tasks.index(self.config.active_task)
        elif len(self.token_factors) == 1:
            k = 0
        else:
            raise SoftPromptError(f"this prompt serves several tasks {tasks}: pick one with for_task(name)")
        return self.shared * torch.outer(self.token_factors[k], self.feature_factors[k])

    def shared_prefix(self) -> Injection:
        return Injection(embeds=self.task_prompt().unsqueeze(0))

    def forward(self, inputs: BatchInputs) -> Injection:
        return Injection(embeds=self.task_prompt().expand(inputs.batch_size, -1, -1))
