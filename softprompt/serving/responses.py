"""OpenAI's response formats: a choice of /v1/completions or /v1/chat/completions, whole or as streamed
chunks, with log-probabilities in each endpoint's own format."""
from __future__ import annotations

from dataclasses import dataclass, field

from .sequences import Delta, TokenLogprob


@dataclass
class ChoiceState:
    """One choice of a response, as its deltas arrive."""

    index: int
    prompt: int  # which of the request's prompts it continues
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    pending: list[TokenLogprob] = field(default_factory=list)  # streamed: entries whose text is not sent yet
    finish_reason: str | None = None
    generated: int = 0
    opened: bool = False  # streamed: a first chunk was sent
    offset: int = 0  # streamed completions: text_offset of the next token

    def add(self, delta: Delta) -> str:
        """Take a delta; returns its text."""
        entries = (delta.prompt_logprobs or []) + delta.logprobs
        self.logprobs += entries
        self.pending += entries
        self.text += delta.text
        self.generated = max(self.generated, delta.generated)
        self.finish_reason = delta.finish_reason or self.finish_reason
        return delta.text


def token_text(tokenizer, token: int) -> str:
    return tokenizer.decode([token])


class CompletionShape:
    object = chunk_object = "text_completion"

    def __init__(self, tokenizer, logprobs: bool, echo: list[str] | None = None):
        self.tokenizer, self.with_logprobs, self.echo = tokenizer, logprobs, echo

    def choice(self, state: ChoiceState) -> dict:
        logprobs = completion_logprobs(self.tokenizer, state.logprobs, 0)[0] if self.with_logprobs else None
        return {"index": state.index, "text": self._echoed(state) + state.text, "logprobs": logprobs, "finish_reason": state.finish_reason}

    def opening(self, state: ChoiceState) -> dict | None:
        return None

    def chunk_due(self, state: ChoiceState, text: str) -> bool:
        """Whether a streamed chunk is due: new text, the end, or the echoed prompt not sent yet."""
        return bool(text) or state.finish_reason is not None or (self.echo is not None and not state.opened)

    def piece(self, state: ChoiceState, text: str) -> dict:
        """A streamed chunk's choice: the new text (after the echoed prompt, the first time) and its tokens."""
        text = ("" if state.opened else self._echoed(state)) + text
        logprobs = None
        if self.with_logprobs:
            logprobs, state.offset = completion_logprobs(self.tokenizer, state.pending, state.offset)
        return {"index": state.index, "text": text, "logprobs": logprobs, "finish_reason": state.finish_reason}

    def _echoed(self, state: ChoiceState) -> str:
        return self.echo[state.prompt] if self.echo else ""


class ChatShape:
    object, chunk_object = "chat.completion", "chat.completion.chunk"

    def __init__(self, tokenizer, logprobs: bool):
        self.tokenizer, self.with_logprobs = tokenizer, logprobs

    def choice(self, state: ChoiceState) -> dict:
        return {"index": state.index, "message": {"role": "assistant", "content": state.text},
                "logprobs": self._logprobs(state.logprobs), "finish_reason": state.finish_reason}

    def opening(self, state: ChoiceState) -> dict:
        return {"index": state.index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}

    def chunk_due(self, state: ChoiceState, text: str) -> bool:
        return bool(text) or state.finish_reason is not None

    def piece(self, state: ChoiceState, text: str) -> dict:
        delta = {"content": text} if text or state.finish_reason is None else {}
        return {"index": state.index, "delta": delta, "logprobs": self._logprobs(state.pending), "finish_reason": state.finish_reason}

    def _logprobs(self, entries: list[TokenLogprob]) -> dict | None:
        if not self.with_logprobs:
            return None
        return {"content": [{**self._token(e.token, e.logprob), "top_logprobs": [self._token(t, lp) for t, lp in e.top]} for e in entries],
                "refusal": None}

    def _token(self, token: int, logprob: float) -> dict:
        text = token_text(self.tokenizer, token)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


def completion_logprobs(tokenizer, entries: list[TokenLogprob], start: int) -> tuple[dict, int]:
    """The completions API's logprobs (tokens, their log-probabilities, the likeliest alternatives with the
    chosen token among them, and character offsets), and the offset after the last token."""
    tokens = [token_text(tokenizer, e.token) for e in entries]
    offsets = []
    for token in tokens:
        offsets.append(start)
        start += len(token)
    top = []
    for entry, token in zip(entries, tokens):
        alternatives = None
        if entry.logprob is not None:  # a prompt's first token has nothing before it
            alternatives = {token_text(tokenizer, t): lp for t, lp in entry.top}
            alternatives.setdefault(token, entry.logprob)
        top.append(alternatives)
    return {"tokens": tokens, "token_logprobs": [e.logprob for e in entries], "top_logprobs": top, "text_offset": offsets}, start
