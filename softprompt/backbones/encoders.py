"""Frozen encoders of the input for instance-aware methods (LoPA, IDPG): one pooled vector per text.

- an embedded sentence encoder (`minilm-l6`): its mean-pooled, L2-normalised states (sentence-transformers'
  recipe);
- `base`: the mean of the frozen model's own input embeddings (static, read from each batch);
- `base-mean` / `base-last`: the frozen model's own contextual last hidden state, averaged over the input's
  tokens or at its last token (LoPA's paper encodes with the foundation model itself).
Every encoder reads what the model reads: an input too long for it loses its beginning, not its end (the
formats put the question and the answer cue last).
"""
from __future__ import annotations

import copy
from functools import cache

import torch

from .causal_lm import FrozenModel
from .loading import load_model

BASE_ENCODER = "base"  # the frozen model's own mean input embedding, from the batch itself
CONTEXTUAL = {"base-mean", "base-last"}  # the frozen model's own last hidden state, computed once per example
MAX_TOKENS = 256


@cache
def _encoder(name: str) -> FrozenModel:
    return load_model(name)


@torch.no_grad()
def sentence_embeddings(name: str, base: FrozenModel, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """(N, f) float32 encodings of `texts` on the base model's device (see the module's docstring)."""
    model = base if name in CONTEXTUAL else _encoder(name)
    tokenizer = copy.copy(model.tokenizer)  # its own sides: the shared tokenizer stays as it is
    tokenizer.truncation_side, tokenizer.padding_side = "left", "right"
    pooled = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        batch = {key: value.to(model.device) for key, value in batch.items()}
        mask = batch["attention_mask"]
        if name in CONTEXTUAL:
            states = model.model(**batch, output_hidden_states=True).hidden_states[-1].float()
            last = mask.sum(1) - 1  # right padding: the last real token of each row
            pooled.append(states[torch.arange(len(states)), last] if name == "base-last" else _mean(states, mask))
        else:
            pooled.append(torch.nn.functional.normalize(_mean(model.model(**batch).last_hidden_state.float(), mask), dim=-1))
    return torch.cat(pooled).to(base.device)


def _mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


def encoder_width(name: str, base: FrozenModel) -> int:
    if name == BASE_ENCODER:
        return base.embedding_size
    return base.hidden_size if name in CONTEXTUAL else _encoder(name).hidden_size


def encode_inputs(name: str, base: FrozenModel, texts: list[str]) -> torch.Tensor | None:
    """Per-example features to compute once and cache; None when the encoding is the base model's own
    input embeddings, which every batch carries anyway."""
    return None if name == BASE_ENCODER else sentence_embeddings(name, base, texts)


def pooled_inputs(name: str, inputs) -> torch.Tensor:
    """The batch's pooled encodings (B, f): cached features, or the mean of its input embeddings."""
    return inputs.mean_embedding() if name == BASE_ENCODER else inputs.features
