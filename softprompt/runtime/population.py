"""Scoring many candidate parameter settings of one method on the same batch (forward-only optimizers).

`parameters_set_to` lends the method a candidate's values for a while; `stacked_prompt` scores all candidates in
one forward pass: the batch is repeated once per candidate and block k of its rows is prompted under candidate
k's values, the blocks' `Injection`s concatenated along the batch. That needs every part a method injects to be a
batch-first tensor (`STACKABLE`); a method that hooks layers or weights (CaPT, LoRA) acts on the whole batch, so
its candidates are scored one forward pass each."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..backbones import BatchInputs, Injection

STACKABLE = frozenset({"embeds", "key_values", "input_delta"})
Candidate = dict[torch.nn.Parameter, torch.Tensor]  # parameter -> the value it takes under this candidate


def stackable(method) -> bool:
    """Whether `stacked_prompt` can score this method's candidates in one forward pass."""
    return method.injects <= STACKABLE


@contextmanager
def parameters_set_to(values: Candidate) -> Iterator[None]:
    """The parameters hold `values` inside the block (the same Parameter objects: hooks built from them see it)."""
    saved = {parameter: parameter.data for parameter in values}
    for parameter, value in values.items():
        parameter.data = value.to(parameter.dtype)
    try:
        yield
    finally:
        for parameter, data in saved.items():
            parameter.data = data


def stacked_prompt(method, candidates: list[Candidate]):
    """A prompt function over len(candidates) equal blocks of rows, block k prompted under candidates[k]."""
    def prompt_fn(inputs: BatchInputs) -> Injection:
        size = inputs.batch_size // len(candidates)
        parts = []
        for k, values in enumerate(candidates):
            with parameters_set_to(values):
                parts.append(method(_rows(inputs, k * size, size)))
        return _concatenated(parts)
    return prompt_fn


def repeated(features: torch.Tensor | None, times: int) -> torch.Tensor | None:
    """Per-example features for a batch repeated `times` times."""
    return None if features is None else features.repeat(times, *[1] * (features.dim() - 1))


def _rows(inputs: BatchInputs, start: int, size: int) -> BatchInputs:
    def cut(tensor):
        return None if tensor is None else tensor[start:start + size]
    return BatchInputs(cut(inputs.input_ids), cut(inputs.attention_mask), cut(inputs.input_embeds), cut(inputs.features),
                       cut(inputs.context_mask))


def _concatenated(parts: list[Injection]) -> Injection:
    def cat(tensors):
        return None if tensors[0] is None else torch.cat(tensors)
    key_values = None
    if parts[0].key_values is not None:
        key_values = [(torch.cat([p.key_values[i][0] for p in parts]), torch.cat([p.key_values[i][1] for p in parts]))
                      for i in range(len(parts[0].key_values))]
    return Injection(embeds=cat([p.embeds for p in parts]), key_values=key_values,
                     key_values_mask=cat([p.key_values_mask for p in parts]), input_delta=cat([p.input_delta for p in parts]))
