"""Tokenised examples, length-bucketed batches, and left-padded model inputs."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backbones import BatchInputs, FrozenModel
from ..errors import SoftPromptError
from ..tasks import Example


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
        context = tokenizer(example.text)["input_ids"]
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


def make_inputs(base: FrozenModel, sequences: list[list[int]], features: torch.Tensor | None = None,
                answer_lengths: list[int] | None = None) -> BatchInputs:
    """Left-padded inputs. With `answer_lengths`, each sequence ends with an answer of that many tokens that
    is being scored: the context mask hides it from the method (see BatchInputs.context_mask)."""
    ids, mask = (tensor.to(base.device) for tensor in left_pad(sequences, base.tokenizer.pad_token_id))
    context = None
    if answer_lengths is not None:
        context = mask.clone()
        for row, length in enumerate(answer_lengths):
            context[row, context.shape[1] - length:] = 0
    return BatchInputs(ids, mask, base.embed(ids), features, context)


