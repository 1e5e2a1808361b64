"""Text generation through a prompt, decoding with the key/value cache."""
from __future__ import annotations

import math

import torch

from .engine import make_inputs
from .errors import SoftPromptError
from .models import FrozenModel
from .prompt import prompted_forward


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
    output, mask = prompted_forward(base, prompt_fn(inputs), inputs, logits_to_keep=1, use_cache=True)
    stop = torch.tensor(sorted(_stop_ids(base)))
    generator = torch.Generator().manual_seed(seed)
    finished = torch.zeros(len(contexts), dtype=torch.bool)
    produced = []
    for _ in range(max_new_tokens):
        logits = output.logits[:, -1].float()  # (B, V)
        if temperature > 0:
            next_ids = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator).squeeze(-1)
        else:
            next_ids = logits.argmax(-1)
        next_ids = next_ids.masked_fill(finished, base.tokenizer.pad_token_id)
        produced.append(next_ids)
        finished |= torch.isin(next_ids, stop)
        if finished.all():
            break
        positions = mask.sum(-1, keepdim=True)  # (B, 1): positions count real tokens only, so one past the last
        mask = torch.cat([mask, mask.new_ones(len(contexts), 1)], dim=1)
        output = base.model(input_ids=next_ids.unsqueeze(-1), attention_mask=mask, position_ids=positions,
                            past_key_values=output.past_key_values, use_cache=True, logits_to_keep=1)
    tokens = torch.stack(produced, dim=1).tolist() if produced else [[] for _ in contexts]
    return [_until_stop(row, set(stop.tolist())) for row in tokens]


def check_generation_options(max_new_tokens: int, temperature: float) -> None:
    if (not isinstance(max_new_tokens, int) or max_new_tokens < 1 or not isinstance(temperature, (int, float))
            or not 0 <= temperature < math.inf):
        raise SoftPromptError(f"max_new_tokens must be an integer >= 1 and temperature a finite number >= 0, "
                              f"got {max_new_tokens!r} and {temperature!r}")


def _stop_ids(base: FrozenModel) -> set[int]:
    ids = base.model.generation_config.eos_token_id if base.model.generation_config else None
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    return ids | {base.tokenizer.eos_token_id}


def _until_stop(row: list[int], stop: set[int]) -> list[int]:
    for position, token in enumerate(row):
        if token in stop:
            return row[:position]
    return row


def generate_text(base: FrozenModel, prompt_fn, texts: list[str], **options) -> list[str]:
    contexts = [base.tokenizer(text)["input_ids"] for text in texts]
    return [base.tokenizer.decode(ids, skip_special_tokens=True) for ids in generate_ids(base, prompt_fn, contexts, **options)]
