"""Request bodies that hand a prompt + text to a serving engine as embeddings (see prompt_embeds.py):
vLLM's /v1/completions started with --enable-prompt-embeds takes `prompt_embeds`, the base64 of a
torch.save'd (m + T, d) tensor (its documented encoding); SGLang's /generate takes `input_embeds`, the same
tensor as per-token lists of floats. Not run against either engine here (they need a CUDA build)."""
from __future__ import annotations

import base64
import io

import torch

from ..tuned import TunedPrompt
from .prompt_embeds import prompt_embeds


def encode_tensor(tensor: torch.Tensor) -> str:
    """Base64 of torch.save(tensor): the encoding vLLM's server decodes with torch.load."""
    buffer = io.BytesIO()
    torch.save(tensor.detach().cpu().clone(), buffer)  # a clone: a view would save its whole underlying storage
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def vllm_completions_body(prompt: TunedPrompt, text: str, model: str, max_tokens: int = 16, temperature: float = 0.0) -> dict:
    """The JSON body of POST /v1/completions on a vLLM server serving `model` (the frozen model) with
    --enable-prompt-embeds. There is no `prompt`: vLLM's docs treat one beside `prompt_embeds` as another input."""
    return {"model": model, "prompt_embeds": encode_tensor(prompt_embeds(prompt, text)), "max_tokens": max_tokens,
            "temperature": temperature}


def sglang_generate_body(prompt: TunedPrompt, text: str, max_new_tokens: int = 16, temperature: float = 0.0) -> dict:
    """The JSON body of POST /generate on an SGLang server serving the frozen model."""
    return {"input_embeds": prompt_embeds(prompt, text).tolist(),
            "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": temperature}}
