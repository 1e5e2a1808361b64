"""Input-level prompts for engines that take embeddings instead of token ids: vLLM
(`--enable-prompt-embeds`, the `prompt_embeds` input) and SGLang (`input_embeds`)."""
from __future__ import annotations

import torch

from ..errors import SoftPromptError
from ..methods import METHODS
from ..runtime.batching import make_inputs
from ..tuned import TunedPrompt

# Injection parts an engine's embedding input can carry: what the model reads before and as the text.
INPUT_LEVEL = frozenset({"embeds", "input_delta"})


def input_level_methods() -> list[str]:
    return sorted(name for name, cls in METHODS.items() if cls.injects <= INPUT_LEVEL)


@torch.no_grad()
def prompt_embeds(prompt: TunedPrompt, text: str) -> torch.Tensor:
    """The (m + T, d) embeddings the frozen model reads for `text` under `prompt`: the prompt's m vectors,
    then the text's T token embeddings (with any per-input update, as DePT's), exactly what our model feeds
    its first layer. Instance-dependent input-level prompts (LoPA, IDPG, PT-MoE) are computed for this text."""
    if prompt.base.kind != "text":
        raise SoftPromptError(f"{prompt.base.name} is a ViT: prompt_embeds feeds text engines (vLLM, SGLang)")
    if not prompt.method.injects <= INPUT_LEVEL:
        raise SoftPromptError(f"a {prompt.method.name!r} prompt acts inside the model's layers; prompt_embeds can only carry "
                              f"prompts read before the text ({', '.join(input_level_methods())})")
    base = prompt.base
    inputs = make_inputs(base, [base.tokenizer(text)["input_ids"]], prompt.features([text]))
    made = prompt.method(inputs)
    text_embeds = inputs.input_embeds[0] + (made.input_delta[0] if made.input_delta is not None else 0)
    return torch.cat([made.embeds[0].to(text_embeds.dtype), text_embeds]) if made.embeds is not None else text_embeds
