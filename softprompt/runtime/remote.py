"""A frozen model that runs on a server (`softprompt serve --blackbox`, serving/blackbox.py): tuning against it
needs no weights here, only the tokenizer and what the server reports (embedding width and spread, context).

The protocol is two calls: GET INFO_PATH describes the model and the server's limits; POST SCORE_PATH scores every
input under every candidate prompt, prompts being (m, d) input embeddings, and answers each label word's summed
log-probability. `RemoteModel.choice_scores` is what `runtime.scoring.choice_scores` does for such a model.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..backbones.loading import load_tokenizer
from ..errors import SoftPromptError
from .batching import Encoded, make_inputs

INFO_PATH, SCORE_PATH = "/v1/blackbox/info", "/v1/blackbox/score"
TENSOR_NAME = "prompts"  # the one tensor of a request's safetensors: (candidates, m, d) float32


def encode_prompts(prompts: torch.Tensor) -> dict:
    """(P, m, d) prompts as a request field: base64 of a safetensors file (no pickle, exact float32)."""
    return {"safetensors": base64.b64encode(save_safetensors({TENSOR_NAME: prompts.float().contiguous()})).decode()}


def decode_prompts(field: dict | list) -> torch.Tensor:
    """A request's prompts as a float32 tensor, from base64 safetensors or nested float lists (shape unchecked)."""
    if isinstance(field, list):
        try:
            return torch.tensor(field, dtype=torch.float32)
        except (ValueError, TypeError) as error:
            raise SoftPromptError(f"prompts: not a regular (candidates, m, d) array of numbers ({error})") from error
    try:
        tensors = load_safetensors(base64.b64decode(field["safetensors"], validate=True))
    except Exception as error:  # noqa: BLE001 -- base64 and safetensors raise several kinds; all mean bad input
        raise SoftPromptError(f"prompts: not base64 of a safetensors file ({type(error).__name__})") from error
    if set(tensors) != {TENSOR_NAME} or not tensors[TENSOR_NAME].is_floating_point():
        raise SoftPromptError(f"prompts: the safetensors file must hold one floating tensor named {TENSOR_NAME!r}, "
                              f"found {sorted(tensors)}")
    return tensors[TENSOR_NAME].float()


@dataclass
class ServerSide:
    """Where a local model's weights would be: nothing runs here."""

    name_or_path: str  # as a transformers model's, for the model card
    device: torch.device = torch.device("cpu")

    def __call__(self, *args, **kwargs):
        raise SoftPromptError("this model runs on a server: only input-level prompts can be scored there")


@dataclass
class RemoteModel:
    """What a client holds of a served model. The attributes FrozenModel shares mean the same here."""

    url: str
    name: str
    tokenizer: object
    fingerprint: str
    hidden_size: int
    max_length: int
    embedding_std: float
    limits: dict  # max_candidates, max_inputs, max_prompt_tokens, max_body_bytes

    kind = "text"  # scored by its answers' log-probabilities (runtime/kinds.py), on the server
    device = torch.device("cpu")  # where the client's tensors (the prompt, the scores) live
    dtype = torch.float32

    def __post_init__(self):
        self.model = ServerSide(self.name)

    @property
    def embedding_size(self) -> int:
        return self.hidden_size

    @property
    def embedding_matrix(self):
        raise SoftPromptError(f"the embedding table of {self.name!r} stays on its server ({self.url}): a remote run "
                              "starts from what needs none (prompt tuning: --init random)")

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*input_ids.shape, 0)  # zero-width: a remote run's methods never read the text's embeddings

    def choice_scores(self, prompt_fn, batch: list[Encoded], length_normalized: bool) -> torch.Tensor:
        """(B, C) scores of every choice, as runtime.scoring.choice_scores, computed on the server."""
        prompt = prompt_fn(make_inputs(self, [e.context for e in batch]))
        if any(part is not None for part in (prompt.key_values, prompt.input_delta, prompt.before_layer, prompt.weight_updates)):
            raise SoftPromptError("a remote model takes input-level prompts (embeddings read before the text) only")
        prompts, prompt_of_row = _distinct(prompt.embeds, len(batch), self.hidden_size)
        scores = torch.full((len(batch), max(len(e.choices) for e in batch)), float("-inf"))
        for choices, rows in _rows_by_choices(batch).items():
            contexts = list(dict.fromkeys(tuple(batch[r].context) for r in rows))
            logprobs = self.label_logprobs(prompts, [list(c) for c in contexts], [list(c) for c in choices])
            lengths = torch.tensor([len(c) for c in choices], dtype=torch.float32) if length_normalized else 1
            for r in rows:
                scores[r, :len(choices)] = logprobs[prompt_of_row[r], contexts.index(tuple(batch[r].context))] / lengths
        return scores

    def label_logprobs(self, prompts: torch.Tensor, contexts: list[list[int]], choices: list[list[int]]) -> torch.Tensor:
        """(P, B, C) summed log-probability of each choice after each context under each prompt, in as many
        requests as the server's limits ask."""
        per_prompt = 4 * prompts[0].numel() * 4 / 3 + 64  # base64 of float32, and a margin
        room = self.limits["max_body_bytes"] - 1024 - 16 * sum(map(len, contexts)) - 16 * sum(map(len, choices))
        step = max(1, min(self.limits["max_candidates"], int(room // per_prompt)))
        width = self.limits["max_inputs"]
        return torch.cat([torch.cat([self._score(prompts[p:p + step], contexts[i:i + width], choices)
                                     for i in range(0, len(contexts), width)], dim=1)
                          for p in range(0, len(prompts), step)])

    def _score(self, prompts: torch.Tensor, contexts: list[list[int]], choices: list[list[int]]) -> torch.Tensor:
        body = {"prompts": encode_prompts(prompts), "inputs": contexts, "label_words": choices}
        return torch.tensor(request(self.url + SCORE_PATH, body)["logprobs"], dtype=torch.float32)


def _distinct(embeds: torch.Tensor | None, rows: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct (m, d) prompts of a batch's rows (a population's rows repeat each candidate's), and each row's."""
    if embeds is None or embeds.shape[1] == 0:  # the bare model: one empty prompt
        return torch.zeros(1, 0, width), torch.zeros(rows, dtype=torch.long)
    prompts, prompt_of_row = torch.unique(embeds.detach().float().reshape(rows, -1), dim=0, return_inverse=True)
    return prompts.view(len(prompts), *embeds.shape[1:]), prompt_of_row


def _rows_by_choices(batch: list[Encoded]) -> dict[tuple, list[int]]:
    """Row numbers grouped by their answer choices (label words are one request's field, shared by its inputs)."""
    groups: dict[tuple, list[int]] = {}
    for row, example in enumerate(batch):
        groups.setdefault(tuple(tuple(c) for c in example.choices), []).append(row)
    return groups


def request(url: str, body: dict | None = None, timeout: float = 600.0) -> dict:
    """GET (no body) or POST JSON; the answer's JSON, or a SoftPromptError with the server's message."""
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        try:
            detail = json.loads(detail)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            pass
        raise SoftPromptError(f"{url} answered {error.code}: {detail}") from error
    except (urllib.error.URLError, OSError) as error:
        raise SoftPromptError(f"cannot reach {url}: {getattr(error, 'reason', error)}") from error


def connect(url: str, model: str) -> RemoteModel:
    """The served model at `url`, which must be `model` (whose tokenizer, alone, is loaded here)."""
    if not url.startswith(("http://", "https://")):
        raise SoftPromptError(f"remote must be an http:// or https:// URL, got {url!r}")
    url = url.rstrip("/")
    info = request(url + INFO_PATH)
    if info["model"] != model:
        raise SoftPromptError(f"the server at {url} serves {info['model']!r}, not {model!r}: pass --model {info['model']}")
    tokenizer = load_tokenizer(model)
    if len(tokenizer) != info["vocab_size"]:
        raise SoftPromptError(f"the tokenizer of {model!r} here has {len(tokenizer)} tokens, the server's {info['vocab_size']}")
    return RemoteModel(url, info["model"], tokenizer, info["fingerprint"], info["hidden_size"], info["max_length"],
                       info["embedding_std"], info["limits"])

