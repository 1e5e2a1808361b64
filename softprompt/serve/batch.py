"""Mixed batches: one forward pass over rows that each use their own prompt (any method, any length, or
none), for scoring and for generation. Task-level prompts come from the prefix cache (`TunedPrompt`)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..engine import make_inputs
from ..generate import decode_steps
from ..models import FrozenModel
from ..prompt import Prompt, PromptInputs, merge_rows, prompted_forward


@dataclass
class Row:
    """One request's text in a mixed batch."""

    ids: list[int]  # the text's token ids
    prompt: object | None = None  # a TunedPrompt (or any prompt function); None runs the bare model
    features: torch.Tensor | None = None  # (1, f) per-example features the prompt's method needs, if any


def _row_prompt(base: FrozenModel, row: Row) -> tuple[Prompt, PromptInputs]:
    inputs = make_inputs(base, [row.ids], row.features)
    return (row.prompt(inputs) if row.prompt is not None else Prompt()), inputs


def mixed_forward(base: FrozenModel, rows: list[Row], logits_to_keep: int = 1, use_cache: bool = False):
    """prompted_forward over a mixed batch: (HF output, mask over prefix + rows, merged inputs)."""
    prompt, inputs = merge_rows([_row_prompt(base, row) for row in rows])
    output, mask = prompted_forward(base, prompt, inputs, logits_to_keep=logits_to_keep, use_cache=use_cache)
    return output, mask, inputs


@torch.no_grad()
def next_token_logprobs(base: FrozenModel, rows: list[Row]) -> torch.Tensor:
    """(B, V) log-probabilities of the token after each row's text, under each row's own prompt."""
    return torch.log_softmax(mixed_forward(base, rows)[0].logits[:, -1].float(), dim=-1)


@torch.no_grad()
def target_logprobs(base: FrozenModel, rows: list[Row], targets: list[list[int]]) -> torch.Tensor:
    """(B,) summed log-probability of each target continuation after its row (rows hold context + target)."""
    longest = max(len(t) for t in targets)
    output, _, inputs = mixed_forward(base, rows, logits_to_keep=longest + 1)
    logprobs = torch.log_softmax(output.logits[:, :-1].float(), dim=-1)  # (B, K, V)
    tokens = inputs.input_ids[:, -longest:]  # (B, K)
    picked = logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return torch.stack([picked[row, longest - len(t):].sum() for row, t in enumerate(targets)])


@torch.no_grad()
def generate_steps(base: FrozenModel, rows: list[Row], max_new_tokens: list[int], temperatures: list[float],
                   seed: int = 0) -> Iterator[torch.Tensor]:
    """Decode a mixed batch: one prefill, then (B,) new ids per step (see generate.decode_steps)."""
    output, mask, _ = mixed_forward(base, rows, use_cache=True)
    yield from decode_steps(base, output, mask, max_new_tokens, temperatures, seed)
