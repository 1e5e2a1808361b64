"""Text generation through a prompt, decoding with the key/value cache."""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ..backbones import FrozenModel, prompted_forward, weight_hooks
from ..errors import SoftPromptError
from .batching import make_inputs

FINISHED = -1  # what decode_steps yields for a row that has already stopped


@torch.no_grad()
def generate_ids(base: FrozenModel, prompt_fn, contexts: list[list[int]], max_new_tokens: int = 64,
                 temperature: float = 0.0, features: torch.Tensor | None = None, seed: int = 0) -> list[list[int]]:
    """New token ids for each context: greedy at temperature 0, else sampled. Stops at end-of-sequence.

    The prompt and the context run once (prefill); each new token then costs one position, reading the
    cached keys and values of everything before it.
    """
    check_generation_options(max_new_tokens, temperature)
    for index, context in enumerate(contexts):
        if len(context) + max_new_tokens > base.max_length:
            raise SoftPromptError(f"input {index} has {len(context)} tokens: with max_new_tokens {max_new_tokens} it "
                                  f"exceeds the model's context length {base.max_length}")
    inputs = make_inputs(base, contexts, features)
    injection = prompt_fn(inputs)
    output, mask = prompted_forward(base, injection, inputs, logits_to_keep=1, use_cache=True)
    steps = decode_steps(base, output, mask, [max_new_tokens] * len(contexts), [temperature] * len(contexts), seed,
                         injection.weight_updates)
    return collect(base, steps, len(contexts))


@torch.no_grad()
def decode_steps(base: FrozenModel, output, mask: torch.Tensor, max_new_tokens: list[int], temperatures: list[float],
                 seed: int = 0, weight_updates: dict | None = None) -> Iterator[torch.Tensor]:
    """From a prefill's output and mask, yield the (B,) next ids step by step; each row follows its own
    temperature (0: greedy) and limit, and yields FINISHED once it has produced a stop token or its limit.
    `weight_updates` (a method's change of the weights, see Injection) apply to every step as to the prefill."""
    device = output.logits.device
    stop = torch.tensor(sorted(stop_ids(base)), device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    temperature = torch.tensor(temperatures, dtype=torch.float32, device=device)  # (B,)
    limits = torch.tensor(max_new_tokens, device=device)
    finished = limits <= 0
    for step in range(max(max_new_tokens, default=0)):
        logits = output.logits[:, -1].float()  # (B, V)
        next_ids = logits.argmax(-1)
        if bool((temperature > 0).any()):
            scaled = torch.softmax(logits / temperature.clamp(min=1e-6).unsqueeze(-1), -1)
            next_ids = torch.where(temperature > 0, torch.multinomial(scaled, 1, generator=generator).squeeze(-1), next_ids)
        next_ids = next_ids.masked_fill(finished, FINISHED)
        yield next_ids
        finished |= torch.isin(next_ids, stop) | (step + 1 >= limits)
        if finished.all():
            return
        positions = mask.sum(-1, keepdim=True)  # (B, 1): positions count real tokens only, so one past the last
        mask = torch.cat([mask, mask.new_ones(len(limits), 1)], dim=1)
        feed = next_ids.masked_fill(next_ids == FINISHED, base.tokenizer.pad_token_id).unsqueeze(-1)
        with weight_hooks(base, weight_updates):
            output = base.model(input_ids=feed, attention_mask=mask, position_ids=positions,
                                past_key_values=output.past_key_values, use_cache=True, logits_to_keep=1)


def check_generation_options(max_new_tokens: int, temperature: float) -> None:
    if (not isinstance(max_new_tokens, int) or max_new_tokens < 1 or not isinstance(temperature, (int, float))
            or not 0 <= temperature < math.inf):
        raise SoftPromptError(f"max_new_tokens must be an integer >= 1 and temperature a finite number >= 0, "
                              f"got {max_new_tokens!r} and {temperature!r}")


def collect(base: FrozenModel, steps: Iterator[torch.Tensor], batch: int) -> list[list[int]]:
    """Each row's tokens from decode_steps, without the stop token."""
    stop, rows = stop_ids(base), [[] for _ in range(batch)]
    for next_ids in steps:
        for row, token in enumerate(next_ids.tolist()):
            if token != FINISHED and token not in stop:
                rows[row].append(token)
    return rows


def stop_ids(base: FrozenModel) -> set[int]:
    ids = base.model.generation_config.eos_token_id if base.model.generation_config else None
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    return ids | {base.tokenizer.eos_token_id}


def generate_text(base: FrozenModel, prompt_fn, texts: list[str], **options) -> list[str]:
    contexts = [base.tokenizer(text)["input_ids"] for text in texts]
    return [base.tokenizer.decode(ids, skip_special_tokens=True) for ids in generate_ids(base, prompt_fn, contexts, **options)]
