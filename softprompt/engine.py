"""Tokenised examples, length-bucketed batches, and the two computations everything else uses:
the log-likelihood of target tokens after a prompted context, and choice scoring."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import SoftPromptError
from .models import FrozenModel
from .prompt import Prompt, PromptInputs, prompted_forward
from .tasks import Example, Task


@dataclass
class Encoded:
    context: list[int]  # token ids the model reads (left-truncated to fit)
    target: list[int]  # the continuation to learn (true choice or reference completion)
    choices: list[list[int]]  # every candidate continuation (empty for generation)
    label: int | None
    index: int  # position in the example list (to look up cached per-example features)


def encode(base: FrozenModel, examples: list[Example], max_length: int) -> list[Encoded]:
    """Tokenise once. Contexts longer than max_length minus the longest choice lose their beginning,
    which keeps the question and the answer cue that formats put last."""
    tokenizer = base.tokenizer
    limit = min(max_length, base.max_length)
    encoded = []
    for index, example in enumerate(examples):
        context = tokenizer(example.prompt)["input_ids"]
        choices = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in example.choices]
        target = choices[example.label] if example.is_choice else tokenizer(example.target, add_special_tokens=False)["input_ids"]
        if any(not c for c in choices) or not target:
            raise SoftPromptError(f"example {index}: an answer tokenizes to nothing ({example.choices or example.target!r})")
        room = limit - max(len(c) for c in [target, *choices])
        if room < 1:
            raise SoftPromptError(f"example {index}: the answer alone exceeds max_length {max_length}")
        encoded.append(Encoded(context[-room:], target, choices, example.label, index))
    return encoded


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and attention mask, padded on the left so every row ends at the last column."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, width - len(sequence):] = torch.tensor(sequence)
        mask[row, width - len(sequence):] = 1
    return ids, mask


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[list[int]]:
    """Batches of indices with similar lengths (little padding), in a seeded order.

    Shuffle, sort by length inside windows of 50 batches, cut into batches, shuffle the batches. The order
    is a pure function of (seed, epoch), so a resumed run sees exactly the same batches.
    """
    if not shuffle:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def make_inputs(base: FrozenModel, sequences: list[list[int]], features: torch.Tensor | None = None) -> PromptInputs:
    ids, mask = left_pad(sequences, base.tokenizer.pad_token_id)
    return PromptInputs(ids, mask, base.embed(ids), features)


def target_logprobs(base: FrozenModel, prompt_fn, contexts: list[list[int]], targets: list[list[int]],
                    features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each target token after its context, under the prompted model.

    Returns (B, K) log-probs and a (B, K) 0/1 mask of real target tokens (K = the longest target).
    Only the last K+1 positions get logits: the vocabulary projection of every other position is waste.
    """
    inputs = make_inputs(base, [c + t for c, t in zip(contexts, targets)], features)
    longest = max(len(t) for t in targets)
    logits = prompted_forward(base, prompt_fn(inputs), inputs, logits_to_keep=longest + 1)[0].logits[:, :-1]  # (B, K, V)
    tokens = inputs.input_ids[:, -longest:]  # (B, K): what each kept position predicts
    is_target = torch.zeros_like(tokens)
    for row, target in enumerate(targets):
        is_target[row, longest - len(target):] = 1
    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return logprobs * is_target, is_target


def lm_loss(base: FrozenModel, prompt_fn, batch: list[Encoded], features: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Mean negative log-likelihood of the target tokens, and how many tokens the model processed."""
    logprobs, is_target = target_logprobs(base, prompt_fn, [e.context for e in batch], [e.target for e in batch], features)
    return -logprobs.sum() / is_target.sum(), sum(len(e.context) + len(e.target) for e in batch)


def choice_loss(base: FrozenModel, prompt_fn, batch: list[Encoded], features: torch.Tensor | None = None,
                length_normalized: bool = False) -> tuple[torch.Tensor, int]:
    """Cross-entropy over the choices' scores (the decision the metric judges), and tokens processed."""
    scores = choice_scores(base, prompt_fn, batch, length_normalized, features)
    labels = torch.tensor([e.label for e in batch])
    return torch.nn.functional.cross_entropy(scores, labels), sum(len(e.context) + 1 for e in batch)


def no_prompt(inputs: PromptInputs) -> Prompt:
    """The bare frozen model (zero-shot)."""
    return Prompt()


def choice_scores(base: FrozenModel, prompt_fn, batch: list[Encoded], length_normalized: bool,
                  features: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C) score of every choice. Single-token choices need one forward of the contexts alone."""
    if all(len(c) == 1 for e in batch for c in e.choices):
        inputs = make_inputs(base, [e.context for e in batch], features)
        logits = prompted_forward(base, prompt_fn(inputs), inputs, logits_to_keep=1)[0].logits[:, -1]  # (B, V)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        return _per_example(batch, [logprobs[i, c[0]] for i, e in enumerate(batch) for c in e.choices])
    rows = [(e.context, c, i) for i, e in enumerate(batch) for c in e.choices]
    row_features = features[[i for _, _, i in rows]] if features is not None else None
    logprobs, is_target = target_logprobs(base, prompt_fn, [r[0] for r in rows], [r[1] for r in rows], row_features)
    scores = logprobs.sum(-1) / (is_target.sum(-1) if length_normalized else 1)
    return _per_example(batch, list(scores))


def _per_example(batch: list[Encoded], flat_scores: list[torch.Tensor]) -> torch.Tensor:
    """Regroup scores listed choice by choice into (B, C_max); missing choices score -inf."""
    scores = torch.full((len(batch), max(len(e.choices) for e in batch)), float("-inf"))
    position = 0
    for row, example in enumerate(batch):
        scores[row, : len(example.choices)] = torch.stack(flat_scores[position : position + len(example.choices)])
        position += len(example.choices)
    return scores


@torch.no_grad()
def accuracy(base: FrozenModel, prompt_fn, encoded: list[Encoded], task: Task, batch_size: int,
             features: torch.Tensor | None = None, progress=None) -> float:
    """Share of examples whose highest-scoring choice is the true one."""
    correct = 0
    for batch in bucketed_batches([len(e.context) for e in encoded], batch_size, 0, 0, shuffle=False):
        items = [encoded[i] for i in batch]
        batch_features = features[[e.index for e in items]] if features is not None else None
        scores = choice_scores(base, prompt_fn, items, task.length_normalized, batch_features)
        correct += sum(int(p) == e.label for p, e in zip(scores.argmax(-1), items))
        if progress is not None:
            progress.update(len(items))
    return correct / len(encoded)
