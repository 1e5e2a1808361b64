"""What the scheduler works on: a choice being generated (`Sequence`, one row of the running batch), a
scoring request (`ScoreJob`), and what a sequence reports back to its request (`Delta`)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .mixed import Row
from .text import TextStream


@dataclass(frozen=True)
class SamplingParams:
    """How one choice is decoded. Penalties and logit_bias change the logits that are sampled from;
    reported log-probabilities are the model's own (before any of them)."""

    max_tokens: int = 16
    min_tokens: int = 0  # end-of-sequence is blocked until this many tokens were generated
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: no limit
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias) pairs
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # report each token's log-probability and this many alternatives; None: none
    prompt_logprobs: bool = False  # also report the prompt tokens' log-probabilities (echo)

    @property
    def processes_logits(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.logit_bias or self.min_tokens)


@dataclass
class TokenLogprob:
    token: int
    logprob: float | None  # None for a prompt's first token, which nothing predicts
    top: list[tuple[int, float]] = field(default_factory=list)  # the most likely tokens at this position


@dataclass
class Delta:
    """What one choice gained in one step: released text, its new token's log-probability, and the finish
    reason once it is done ("stop" or "length"); or the error that ended it; or its prompt's log-probabilities."""

    index: int
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    generated: int = 0  # tokens generated so far (usage counts them all, end-of-sequence included)
    error: Exception | None = None
    prompt_logprobs: list[TokenLogprob] | None = None  # sent once, before the first token, when asked for


@dataclass
class Sequence:
    """One choice of a request, generated as one row of the running batch."""

    row: Row
    params: SamplingParams
    index: int  # the choice's index in the response
    emit: Callable[[Delta], None]  # hands a Delta to the request (thread-safe)
    text: TextStream
    tokens: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    submitted: float = field(default_factory=time.perf_counter)
    finished: bool = False
    cancelled: bool = False  # the request went away: the row leaves at the next step

    def __post_init__(self):
        if self.params.temperature > 0:
            self.generator = torch.Generator()
            if self.params.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(self.params.seed + self.index)  # choices of one request differ

    def send(self, delta: Delta) -> None:
        try:
            self.emit(delta)
        except RuntimeError:  # the request's event loop is closed: nobody is listening any more
            self.cancelled = True


@dataclass
class ScoreJob:
    """Score of each choice (token ids) after the row's text: summed log-probability, or its mean per token.
    `resolve(scores)` or `fail(error)` answers the request (thread-safe); `cancelled()` says it went away."""

    row: Row
    choices: list[list[int]]
    length_normalized: bool
    resolve: Callable[[torch.Tensor], None]
    fail: Callable[[Exception], None]
    cancelled: Callable[[], bool] = lambda: False
