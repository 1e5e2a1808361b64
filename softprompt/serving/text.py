"""A choice's text as its tokens arrive, cut at the first stop string even when one spans several tokens."""
from __future__ import annotations

REPLACEMENT = "\ufffd"  # what a token that ends inside a multi-byte character decodes to


class TextStream:
    """Decodes a choice's tokens and releases its text piece by piece. Text that could still turn into a stop
    string is held back until it cannot, so a streamed choice never shows part of a stop string."""

    def __init__(self, tokenizer, stop: tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.released = ""
        self.stopped = False  # a stop string appeared: the text ends before it

    def add(self, token: int) -> str:
        """Take one generated token; return the text this releases (maybe none)."""
        self.ids.append(token)
        # The whole text is decoded again: a token may complete a character that the one before began.
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = self._first_stop(text)
        if cut is not None:
            self.stopped = True
            return self._release(text[:cut])
        if text.endswith(REPLACEMENT):  # wait for the rest of the character
            return ""
        return self._release(text[: len(text) - self._held_back(text)])

    def finish(self) -> str:
        """The text still held back, once the choice has ended without a stop string."""
        return "" if self.stopped else self._release(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def _first_stop(self, text: str) -> int | None:
        longest = max((len(s) for s in self.stop), default=0)
        start = max(0, len(self.released) - longest + 1)  # released text holds no stop string
        found = [index for index in (text.find(s, start) for s in self.stop) if index >= 0]
        return min(found) if found else None

    def _held_back(self, text: str) -> int:
        """Length of the longest end of `text` that begins some stop string."""
        return max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)

    def _release(self, text: str) -> str:
        piece = text[len(self.released):]
        if piece:
            self.released = text
        return piece
