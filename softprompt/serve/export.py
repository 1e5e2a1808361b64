"""Input-level prompts for engines that take embeddings instead of token ids: vLLM
(`--enable-prompt-embeds`, the `prompt_embeds` input) and SGLang (`input_embeds`)."""
from __future__ import annotations

import torch

from ..api import TunedPrompt
from ..engine import make_inputs
from ..errors import SoftPromptError


@torch.no_grad()
def prompt_embeds(prompt: TunedPrompt, text: str) -> torch.Tensor:
    """The (m + T, d) embeddings the frozen model reads for `text` under `prompt`: the prompt's m vectors,
    then the text's T token embeddings (with any per-input update, as DePT's), exactly what our model feeds
    its first layer. Instance-dependent input-level prompts (LoPA, IDPG, PT-MoE) are computed for this text."""
    base = prompt.base
    inputs = make_inputs(base, [base.tokenizer(text)["input_ids"]], prompt.features([text]))
    made = prompt.method(inputs)
    if made.key_values is not None or made.before_layer is not None:
        raise SoftPromptError(f"a {prompt.method.name!r} prompt acts inside the model's layers; prompt_embeds can only carry "
                              "prompts read before the text (prompt-tuning, p-tuning, dept, context-tuning, lopa, idpg, pt-moe)")
    text_embeds = inputs.input_embeds[0] + (made.input_delta[0] if made.input_delta is not None else 0)
    return torch.cat([made.embeds[0].to(text_embeds.dtype), text_embeds]) if made.embeds is not None else text_embeds
