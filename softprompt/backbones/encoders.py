"""Frozen sentence encoders for instance-aware methods (LoPA, IDPG): one pooled vector per text."""
from __future__ import annotations

from functools import cache

import torch

from .causal_lm import FrozenModel
from .loading import load_model

BASE_ENCODER = "base"  # the frozen model's own mean input embedding


@cache
def _encoder(name: str) -> FrozenModel:
    return load_model(name)


@torch.no_grad()
def sentence_embeddings(name: str, base: FrozenModel, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """(N, f) L2-normalised mean-pooled embeddings (sentence-transformers' recipe for MiniLM);
    with name "base", the mean of the frozen model's own input embeddings."""
    model = base if name == BASE_ENCODER else _encoder(name)
    pooled = []
    for start in range(0, len(texts), batch_size):
        batch = model.tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
        batch = {key: value.to(model.device) for key, value in batch.items()}
        states = model.embed(batch["input_ids"]) if name == BASE_ENCODER else model.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled.append((states * mask).sum(1) / mask.sum(1).clamp(min=1))
    embeddings = torch.cat(pooled).float().to(base.device)
    return torch.nn.functional.normalize(embeddings, dim=-1) if name != BASE_ENCODER else embeddings


def encoder_width(name: str, base: FrozenModel) -> int:
    return base.embedding_size if name == BASE_ENCODER else _encoder(name).hidden_size


def encode_inputs(name: str, base: FrozenModel, texts: list[str]) -> torch.Tensor | None:
    """Per-example features to compute once and cache; None when the encoding is the base model's own
    embeddings, which every batch carries anyway."""
    return None if name == BASE_ENCODER else sentence_embeddings(name, base, texts)


def pooled_inputs(name: str, inputs) -> torch.Tensor:
    """The batch's pooled encodings (B, f): cached features, or the mean of its input embeddings."""
    return inputs.mean_embedding() if name == BASE_ENCODER else inputs.features
