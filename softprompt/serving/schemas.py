"""The request bodies the server accepts. Every model forbids fields it does not declare: an OpenAI parameter
this server does not implement is answered 400 with its name (and, for the ones in REFUSED, the reason),
never accepted and ignored. Null stands for "the default", as OpenAI clients send it."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import SoftPromptError
from .sequences import SamplingParams

MAX_TEXT_CHARS = 100_000
MAX_NEW_TOKENS = 1024
MAX_PROMPTS = 64
MAX_CHOICES = 16  # n
MAX_ROWS = 128  # prompts x n in one request
MAX_LOGPROBS = 20

_FUNCTIONS = "function and tool calling is not implemented"
_PLATFORM = "an OpenAI platform feature with no equivalent in this server"
REFUSED = {
    "best_of": "returning the best of several generated choices is not implemented (n returns them all)",
    "suffix": "text after the insertion point is not supported: a causal prompt only continues its input",
    "tools": _FUNCTIONS, "tool_choice": _FUNCTIONS, "functions": _FUNCTIONS, "function_call": _FUNCTIONS,
    "parallel_tool_calls": _FUNCTIONS,
    "audio": "only text is generated", "modalities": "only text is generated",
    "prediction": "predicted outputs are not implemented",
    "reasoning_effort": "no reasoning model is served", "verbosity": "no reasoning model is served",
    "web_search_options": "there is no web search",
    **dict.fromkeys(("service_tier", "store", "metadata", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options",
                     "safety_identifier", "moderation"), _PLATFORM),
}

TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=MAX_TEXT_CHARS)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Bias = Annotated[float, Field(ge=-100, le=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data):
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class ModelRequest(Strict):
    model: str = Field(min_length=1, max_length=200, description="a prompt file's name in the prompts directory, or the base model's name")


class StreamOptions(Strict):
    include_usage: bool = Field(False, description="end the stream with a chunk holding the usage")


class Sampling(ModelRequest):
    max_tokens: int = Field(16, ge=1, le=MAX_NEW_TOKENS)
    min_tokens: int = Field(0, ge=0, le=MAX_NEW_TOKENS, description="end-of-sequence is blocked before this many tokens")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 decodes greedily (the default here, unlike OpenAI's 1)")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1, le=1_000_000, description="sample among the k likeliest tokens; 0 or -1: no limit")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[Annotated[str, Field(pattern=r"^\d{1,9}$")], Bias] = Field(default_factory=dict, max_length=300)
    seed: int | None = Field(None, ge=0, le=2**62, description="the same seed and request give the same text")
    stop: Annotated[str, Field(min_length=1, max_length=200)] | Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=4)] = Field(default_factory=list)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions = Field(default_factory=StreamOptions)
    user: str = Field("", max_length=256, description="accepted and not used (OpenAI's end-user identifier)")

    def sampling_params(self, vocabulary: int, max_tokens: int, logprobs: int | None, prompt_logprobs: bool = False) -> SamplingParams:
        if self.min_tokens > max_tokens:
            raise SoftPromptError(f"min_tokens ({self.min_tokens}) is more than max_tokens ({max_tokens})")
        bias = tuple((int(token), value) for token, value in self.logit_bias.items())
        if any(token >= vocabulary for token, _ in bias):
            raise SoftPromptError(f"logit_bias: token ids must be below the vocabulary size {vocabulary}")
        return SamplingParams(max_tokens, self.min_tokens, self.temperature, self.top_p, max(self.top_k, 0), self.presence_penalty,
                              self.frequency_penalty, bias, self.seed, (self.stop,) if isinstance(self.stop, str) else tuple(self.stop),
                              logprobs, prompt_logprobs)


class CompletionRequest(Sampling):
    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_PROMPTS)] | TokenIds | \
        Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_PROMPTS)]
    echo: bool = Field(False, description="return the prompt before the completion")
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, description="log-probability of each token and of its N likeliest alternatives")


class TextPart(Strict):
    type: Literal["text"]
    text: Text


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: Text | Annotated[list[TextPart], Field(max_length=64)]

    def as_template_input(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        return {"role": self.role, "content": text}


class ResponseFormat(Strict):
    type: str = Field(max_length=50)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1, max_length=256)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS, description="the same as max_tokens")
    response_format: ResponseFormat | None = Field(None, description="only {'type': 'text'} (the default)")

    def checked_max_tokens(self) -> int:
        if self.response_format is not None and self.response_format.type != "text":
            raise SoftPromptError(f"response_format {self.response_format.type!r} is not supported: only 'text' (structured output is not implemented)")
        if self.top_logprobs is not None and not self.logprobs:
            raise SoftPromptError("top_logprobs needs logprobs: true")
        if self.max_completion_tokens is not None and "max_tokens" in self.model_fields_set:
            raise SoftPromptError("give max_tokens or max_completion_tokens, not both")
        return self.max_completion_tokens or self.max_tokens


class ClassifyRequest(ModelRequest):
    input: str | list[str] = Field(description="one text or up to 64, formatted as in training")


def unsupported_parameter(location: tuple) -> str:
    """The 400 message for a field no request model declares."""
    name = ".".join(str(part) for part in location[1:])  # location[0] is "body"
    reason = REFUSED.get(name)
    return f"unsupported parameter {name!r}" + (f": {reason}" if reason else " (not an option of this server)")
