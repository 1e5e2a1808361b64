"""The next token of every row of a batch, each row under its own sampling parameters and random generator
(so a seeded choice gives the same text whatever shares its batch)."""
from __future__ import annotations

import torch

from .sequences import Sequence, TokenLogprob


def choose_tokens(logits: torch.Tensor, sequences: list[Sequence], stop_ids: torch.Tensor) -> tuple[list[int], list[TokenLogprob | None]]:
    """From (B, V) next-token logits: each row's token, and its log-probability entry where the row asked for one."""
    logits = logits.float()
    processed = _processed(logits, sequences, stop_ids)
    greedy = processed.argmax(-1).tolist()
    tokens = [greedy[i] if seq.params.temperature == 0 else _sample(processed[i], seq) for i, seq in enumerate(sequences)]
    return tokens, token_logprobs(logits, tokens, [seq.params.logprobs for seq in sequences])


def token_logprobs(logits: torch.Tensor, tokens: list[int], alternatives: list[int | None]) -> list[TokenLogprob | None]:
    """Log-probability of each row's token under the (B, V) logits, with its row's number of most likely
    alternatives; None for a row that asked for none (alternatives None)."""
    rows = [i for i, k in enumerate(alternatives) if k is not None]
    entries: list[TokenLogprob | None] = [None] * len(tokens)
    if not rows:
        return entries
    logprobs = torch.log_softmax(logits[rows].float(), dim=-1)
    most = max(alternatives[i] for i in rows)
    top_values, top_ids = logprobs.topk(most, dim=-1) if most else (logprobs[:, :0], logprobs[:, :0].long())
    for position, row in enumerate(rows):
        count = alternatives[row]
        top = list(zip(top_ids[position, :count].tolist(), top_values[position, :count].tolist()))
        entries[row] = TokenLogprob(tokens[row], float(logprobs[position, tokens[row]]), top)
    return entries


def _processed(logits: torch.Tensor, sequences: list[Sequence], stop_ids: torch.Tensor) -> torch.Tensor:
    """The logits with each row's penalties, logit bias and min_tokens applied (a copy, if any applies)."""
    if not any(seq.params.processes_logits for seq in sequences):
        return logits
    logits = logits.clone()
    for row, seq in enumerate(sequences):
        params = seq.params
        if seq.tokens and (params.presence_penalty or params.frequency_penalty):
            ids, counts = torch.unique(torch.tensor(seq.tokens), return_counts=True)
            logits[row, ids] -= counts * params.frequency_penalty + params.presence_penalty
        if params.logit_bias:
            ids, biases = zip(*params.logit_bias)
            logits[row, list(ids)] += torch.tensor(biases)
        if len(seq.tokens) < params.min_tokens:
            logits[row, stop_ids] = float("-inf")
    return logits


def _sample(logits: torch.Tensor, seq: Sequence) -> int:
    """One token from (V,) logits at the row's temperature, within its top_k and top_p."""
    params = seq.params
    scaled = logits / params.temperature
    if params.top_k and params.top_k < len(scaled):
        scaled = scaled.masked_fill(scaled < scaled.topk(params.top_k).values[-1], float("-inf"))
    probabilities = torch.softmax(scaled, -1)
    if params.top_p < 1:
        ordered, order = probabilities.sort(descending=True)
        ordered[ordered.cumsum(0) - ordered > params.top_p] = 0  # the fewest tokens whose mass reaches top_p
        probabilities = torch.zeros_like(probabilities).scatter(0, order, ordered)
    return int(torch.multinomial(probabilities, 1, generator=seq.generator))
