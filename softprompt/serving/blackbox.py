"""The black-box endpoint (runtime/remote.py has the protocol and its client): score inputs under prompts a client
sends as input embeddings, so that it can tune them without the model's weights (`softprompt train --remote`).

Off unless `softprompt serve --blackbox`: it answers what any prompt would make the model say about the label
words, which a server of fixed prompts may not want to offer. Prompts arrive as (candidates, m, d) float32, base64
safetensors or nested float lists (never pickle), inside the server's body limit; their width must be the model's,
m at most MAX_PROMPT_TOKENS, every value finite. Inputs and label words are texts or token ids.
"""
from __future__ import annotations

import asyncio
import threading

import torch
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..backbones import FrozenModel, Injection
from ..errors import SoftPromptError
from ..runtime.batching import Encoded
from ..runtime.remote import INFO_PATH, SCORE_PATH, decode_prompts
from ..runtime.scoring import choice_scores

MAX_CANDIDATES, MAX_INPUTS, MAX_LABELS, MAX_PROMPT_TOKENS = 64, 64, 16, 256
ROWS_PER_PASS = 256  # rows of one forward pass: bounds the server's memory whatever a request holds


class EncodedPrompts(BaseModel):
    safetensors: str = Field(description="base64 of a safetensors file holding one float tensor 'prompts' (candidates, m, d)")


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompts: EncodedPrompts | list[list[list[float]]]
    inputs: list[str | list[int]] = Field(min_length=1, max_length=MAX_INPUTS, description="texts, or their token ids")
    label_words: list[str | list[int]] = Field(min_length=1, max_length=MAX_LABELS, description="scored after every input")


def mount_blackbox(app: FastAPI, base: FrozenModel, enabled: bool, max_body_bytes: int) -> None:
    """Add INFO_PATH and SCORE_PATH to `app`; while `enabled` is false they answer 403."""
    router, lock = APIRouter(), threading.Lock()  # one scoring at a time: its passes already fill the machine
    off = JSONResponse({"error": {"message": "the black-box endpoint is off: start the server with --blackbox", "code": 403}}, 403)
    limits = {"max_candidates": MAX_CANDIDATES, "max_inputs": MAX_INPUTS, "max_labels": MAX_LABELS,
              "max_prompt_tokens": MAX_PROMPT_TOKENS, "max_body_bytes": max_body_bytes}

    @router.get(INFO_PATH)
    async def info():
        if not enabled:
            return off
        return {"model": base.name, "fingerprint": base.fingerprint, "hidden_size": base.hidden_size,
                "embedding_std": base.embedding_std, "max_length": base.max_length, "vocab_size": len(base.tokenizer),
                "limits": limits}

    @router.post(SCORE_PATH)
    async def score(body: ScoreRequest):
        if not enabled:
            return off
        prompts = checked_prompts(base, decode_prompts(body.prompts if isinstance(body.prompts, list) else body.prompts.model_dump()))
        contexts = [token_ids(base, text, "inputs", True) for text in body.inputs]
        labels = [token_ids(base, word, "label_words", False) for word in body.label_words]
        longest = max(map(len, contexts)) + max(map(len, labels))
        if longest > base.max_length:  # the prompt comes on top, as in training (encode's rule)
            raise SoftPromptError(f"the longest input and label word make {longest} tokens: over the model's context of {base.max_length}")

        def scored():
            with lock, torch.no_grad():
                return label_logprobs(base, prompts, contexts, labels)
        logprobs = await asyncio.to_thread(scored)
        return {"object": "blackbox.scores", "model": base.name, "logprobs": logprobs.tolist(),
                "label_tokens": [len(label) for label in labels]}

    app.include_router(router)


def checked_prompts(base: FrozenModel, prompts: torch.Tensor) -> torch.Tensor:
    if prompts.dim() != 3 or prompts.shape[-1] != base.hidden_size:
        raise SoftPromptError(f"prompts must be (candidates, m, {base.hidden_size}): this model's embeddings have width "
                              f"{base.hidden_size}; got shape {tuple(prompts.shape)}")
    if not 1 <= prompts.shape[0] <= MAX_CANDIDATES or prompts.shape[1] > MAX_PROMPT_TOKENS:
        raise SoftPromptError(f"prompts: 1 to {MAX_CANDIDATES} candidates of at most {MAX_PROMPT_TOKENS} rows each, "
                              f"got {prompts.shape[0]} of {prompts.shape[1]}")
    if not torch.isfinite(prompts).all():
        raise SoftPromptError(f"prompts hold {int(prompts.isnan().sum())} NaN and {int(prompts.isinf().sum())} infinite values")
    return prompts


def token_ids(base: FrozenModel, value: str | list[int], field: str, is_input: bool) -> list[int]:
    """A text's token ids (an input gets the tokenizer's special tokens, as in training), or checked ids."""
    ids = base.tokenizer(value, add_special_tokens=is_input)["input_ids"] if isinstance(value, str) else value
    if not ids or not all(0 <= i < len(base.tokenizer) for i in ids):
        raise SoftPromptError(f"{field}: every entry must be a non-empty text or list of token ids below {len(base.tokenizer)}")
    return ids


def label_logprobs(base: FrozenModel, prompts: torch.Tensor, contexts: list[list[int]], labels: list[list[int]]) -> torch.Tensor:
    """(P, B, C) summed log-probability of each label after each context, read after each prompt: the forward
    pass `RemoteModel.choice_scores` stands for, over candidate-major rows as a local population is scored."""
    examples = [Encoded(context, labels[0], labels, 0, i) for i, context in enumerate(contexts)]
    rows_per_prompt = len(contexts) * (1 if all(len(label) == 1 for label in labels) else len(labels))
    per_pass = max(1, ROWS_PER_PASS // rows_per_prompt)
    scores = []
    for start in range(0, len(prompts), per_pass):
        chunk = prompts[start:start + per_pass]

        def prompt_fn(inputs, chunk=chunk) -> Injection:
            return Injection(embeds=chunk.repeat_interleave(inputs.batch_size // len(chunk), 0)) if chunk.shape[1] else Injection()
        scores.append(choice_scores(base, prompt_fn, examples * len(chunk), length_normalized=False).view(len(chunk), len(contexts), -1))
    return torch.cat(scores)
