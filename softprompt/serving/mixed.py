"""Mixed batches: one forward pass over rows that each use their own prompt (any method, any length, or
none), for scoring and for generation. Task-level prompts come from the prefix cache (`TunedPrompt`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..backbones import BatchInputs, FrozenModel, Injection, prompted_forward
from ..runtime.batching import make_inputs
from ..runtime.scoring import answer_logprobs


@dataclass
class Row:
    """One request's text in a mixed batch."""

    ids: list[int]  # the text's token ids
    tuned: object | None = None  # a TunedPrompt (or any function giving an Injection); None runs the bare model
    features: torch.Tensor | None = None  # (1, f) per-example features the prompt's method needs, if any
    answer_length: int = 0  # trailing tokens of `ids` that are an answer being scored, hidden from the method


def _row_injection(base: FrozenModel, row: Row) -> tuple[Injection, BatchInputs]:
    inputs = make_inputs(base, [row.ids], row.features, [row.answer_length])
    return (row.tuned(inputs) if row.tuned is not None else Injection()), inputs


def mixed_forward(base: FrozenModel, rows: list[Row], logits_to_keep: int = 1, use_cache: bool = False):
    """prompted_forward over a mixed batch: (HF output, mask over prefix + rows, merged inputs)."""
    injection, inputs = merge_rows([_row_injection(base, row) for row in rows])
    output, mask = prompted_forward(base, injection, inputs, logits_to_keep=logits_to_keep, use_cache=use_cache)
    return output, mask, inputs


@torch.no_grad()
def next_token_logprobs(base: FrozenModel, rows: list[Row]) -> torch.Tensor:
    """(B, V) log-probabilities of the token after each row's text, under each row's own injection."""
    return torch.log_softmax(mixed_forward(base, rows)[0].logits[:, -1].float(), dim=-1)


@torch.no_grad()
def answer_logprobs_of(base: FrozenModel, rows: list[Row]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K) log-probabilities of each row's answer tokens (rows hold context + answer) and their mask."""
    lengths = [row.answer_length for row in rows]
    output, _, inputs = mixed_forward(base, rows, logits_to_keep=max(lengths) + 1)
    return answer_logprobs(output.logits, inputs.input_ids, lengths)


def merge_rows(rows: list[tuple[Injection, BatchInputs]]) -> tuple[Injection, BatchInputs]:
    """One batch from rows that each carry their own batch-1 injection, of any method and length.

    Each row becomes [its injection's embeds; its text (+ its input_delta)], left-padded as a whole, so
    padding never sits between a injection and its text; its prefix keys/values are left-padded and masked
    (`key_values_mask`), and its layer hook sees only its own row. `prompted_forward` on the result then
    computes every row as it would alone. The merged input_ids carry the text's ids at the end of each row
    (what scoring reads) and 0 under the injection's embeds.
    """
    sequences, ids = [], []
    for injection, inputs in rows:
        if inputs.batch_size != 1 or not bool(inputs.attention_mask.all()):
            raise ValueError("merge_rows takes unpadded batch-1 rows")
        embeds = inputs.input_embeds[0] + (injection.input_delta[0] if injection.input_delta is not None else 0)
        if injection.embeds is not None:
            embeds = torch.cat([injection.embeds[0].to(embeds.dtype), embeds])
        sequences.append(embeds)
        ids.append(torch.cat([inputs.input_ids.new_zeros(len(embeds) - inputs.input_ids.shape[1]), inputs.input_ids[0]]))
    width = max(len(s) for s in sequences)
    batch_embeds = sequences[0].new_zeros(len(rows), width, sequences[0].shape[-1])  # (B, W, d)
    batch_ids = torch.zeros(len(rows), width, dtype=torch.long, device=batch_embeds.device)
    mask = torch.zeros_like(batch_ids)
    for row, (sequence, row_ids) in enumerate(zip(sequences, ids)):
        batch_embeds[row, width - len(sequence):] = sequence
        batch_ids[row, width - len(sequence):] = row_ids
        mask[row, width - len(sequence):] = 1
    injections = [injection for injection, _ in rows]
    key_values, key_values_mask = _merge_key_values(injections)
    return (Injection(key_values=key_values, key_values_mask=key_values_mask, before_layer=_row_hooks(injections, [len(s) for s in sequences])),
            BatchInputs(batch_ids, mask, batch_embeds))


def _merge_key_values(injections: list[Injection]):
    """Rows' prefix keys/values left-padded with zeros to the longest, and the (B, M) mask of real ones."""
    present = [p.key_values for p in injections if p.key_values]
    if not present:
        return None, None
    lengths = [p.key_values[0][0].shape[2] if p.key_values else 0 for p in injections]
    longest = max(lengths)
    mask = torch.zeros(len(injections), longest, dtype=torch.long, device=present[0][0][0].device)
    for row, length in enumerate(lengths):
        mask[row, longest - length:] = 1
    merged = []
    for layer in range(len(present[0])):
        first = present[0][layer][0]  # (1, h_kv, M_row, d_head)
        keys = first.new_zeros(len(injections), first.shape[1], longest, first.shape[3])  # (B, h_kv, M, d_head)
        values = keys.clone()
        for row, (injection, length) in enumerate(zip(injections, lengths)):
            if length:
                keys[row, :, longest - length:] = injection.key_values[layer][0][0]
                values[row, :, longest - length:] = injection.key_values[layer][1][0]
        merged.append((keys, values))
    return merged, mask


def _row_hooks(injections: list[Injection], lengths: list[int]):
    """One `before_layer` that runs each row's own hook on that row's unpadded tail, or None if no row has one."""
    if all(p.before_layer is None for p in injections):
        return None

    def before_layer(index: int, hidden: torch.Tensor) -> torch.Tensor:  # hidden: (B, W, d)
        rows = list(hidden.unbind(0))
        for row, (injection, length) in enumerate(zip(injections, lengths)):
            if injection.before_layer is not None:
                tail = injection.before_layer(index, rows[row][-length:].unsqueeze(0))[0]
                rows[row] = torch.cat([rows[row][:-length], tail])
        return torch.stack(rows)
    return before_layer
