"""The two computations training, evaluation and serving share: the log-likelihood of answer tokens after
a prompted context, and choice scoring. A method's prompt is always computed from the context alone."""
from __future__ import annotations

import torch

from ..backbones import BatchInputs, FrozenModel, Injection, prompted_forward
from .batching import Encoded, make_inputs
from .remote import RemoteModel


def target_logprobs(base: FrozenModel, prompt_fn, contexts: list[list[int]], targets: list[list[int]],
                    features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each target token after its context, under the prompted model: (B, K) log-probs
    and a (B, K) 0/1 mask of real target tokens (K = the longest target). The method reads the context
    only (`make_inputs(answer_lengths=...)`): the answer must not shape the prompt that predicts it."""
    inputs = make_inputs(base, [c + t for c, t in zip(contexts, targets)], features, [len(t) for t in targets])
    longest = max(len(t) for t in targets)
    output = prompted_forward(base, prompt_fn(inputs), inputs, logits_to_keep=longest + 1)[0]
    return answer_logprobs(output.logits, inputs.input_ids, [len(t) for t in targets])


def answer_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, answer_lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K) log-probability of each row's last answer_lengths[row] tokens and their (B, K) 0/1 mask, from
    the logits of (at least) the last K + 1 positions. Only those get logits: projecting every other
    position onto the vocabulary is waste."""
    longest = max(answer_lengths)
    logits = logits[:, -longest - 1:-1]  # (B, K, V): the positions that predict the answer tokens
    tokens = input_ids[:, -longest:]  # (B, K)
    is_answer = torch.zeros_like(tokens)
    for row, length in enumerate(answer_lengths):
        is_answer[row, longest - length:] = 1
    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return logprobs * is_answer, is_answer


def answer_scores(logprobs: torch.Tensor, is_answer: torch.Tensor, length_normalized: bool) -> torch.Tensor:
    """(B,) one score per answer: the summed log-probability, or its mean per token."""
    return logprobs.sum(-1) / (is_answer.sum(-1) if length_normalized else 1)


def lm_loss(base: FrozenModel, prompt_fn, batch: list[Encoded], features: torch.Tensor | None = None,
            groups: int = 1) -> tuple[torch.Tensor, int]:
    """Mean negative log-likelihood of the target tokens, and how many tokens the model processed. With `groups`
    > 1 the batch is that many equal blocks (one per candidate prompt) and the loss is (groups,), one per block."""
    logprobs, is_target = target_logprobs(base, prompt_fn, [e.context for e in batch], [e.target for e in batch], features)
    losses = -logprobs.view(groups, -1).sum(-1) / is_target.view(groups, -1).sum(-1)
    return (losses if groups > 1 else losses[0]), sum(len(e.context) + len(e.target) for e in batch)


def choice_loss(base: FrozenModel, prompt_fn, batch: list[Encoded], features: torch.Tensor | None = None,
                length_normalized: bool = False, groups: int = 1) -> tuple[torch.Tensor, int]:
    """Cross-entropy over the choices' scores (the decision the metric judges), and tokens processed; per block
    of the batch with `groups` > 1, as lm_loss."""
    scores = choice_scores(base, prompt_fn, batch, length_normalized, features)
    labels = torch.tensor([e.label for e in batch], device=scores.device)
    losses = torch.nn.functional.cross_entropy(scores, labels, reduction="none").view(groups, -1).mean(-1)
    return (losses if groups > 1 else losses[0]), sum(len(e.context) + 1 for e in batch)


def no_prompt(inputs: BatchInputs) -> Injection:
    """The bare frozen model (zero-shot)."""
    return Injection()


def choice_scores(base: FrozenModel, prompt_fn, batch: list[Encoded], length_normalized: bool,
                  features: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C) score of every choice. Single-token choices need one forward of the contexts alone."""
    if isinstance(base, RemoteModel):  # its forward passes run on its server
        return base.choice_scores(prompt_fn, batch, length_normalized)
    if all(len(c) == 1 for e in batch for c in e.choices):
        inputs = make_inputs(base, [e.context for e in batch], features)
        logits = prompted_forward(base, prompt_fn(inputs), inputs, logits_to_keep=1)[0].logits[:, -1]  # (B, V)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        return _per_example(batch, [logprobs[i, c[0]] for i, e in enumerate(batch) for c in e.choices])
    rows = [(e.context, c, i) for i, e in enumerate(batch) for c in e.choices]
    row_features = features[[i for _, _, i in rows]] if features is not None else None
    logprobs, is_target = target_logprobs(base, prompt_fn, [r[0] for r in rows], [r[1] for r in rows], row_features)
    return _per_example(batch, list(answer_scores(logprobs, is_target, length_normalized)))


def _per_example(batch: list[Encoded], flat_scores: list[torch.Tensor]) -> torch.Tensor:
    """Regroup scores listed choice by choice into (B, C_max); missing choices score -inf."""
    scores = torch.full((len(batch), max(len(e.choices) for e in batch)), float("-inf"), device=flat_scores[0].device)
    position = 0
    for row, example in enumerate(batch):
        scores[row, : len(example.choices)] = torch.stack(flat_scores[position : position + len(example.choices)])
        position += len(example.choices)
    return scores


