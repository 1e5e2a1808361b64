"""Who may call the server: with API keys set, every request but /health needs `Authorization: Bearer KEY`."""
from __future__ import annotations

import hmac
from pathlib import Path

from ..errors import SoftPromptError

OPEN_PATHS = frozenset({"/health"})  # a load balancer's probe carries no key


def read_api_keys(keys: list[str] | None, key_file: str | None) -> list[str]:
    """The keys given on the command line and in a file (one a line; blank lines and # comments skipped)."""
    found = list(keys or [])
    if key_file is not None:
        try:
            lines = Path(key_file).read_text().splitlines()
        except OSError as error:
            raise SoftPromptError(f"--api-key-file {key_file!r}: {error.strerror}") from error
        found += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            raise SoftPromptError(f"--api-key-file {key_file!r} holds no key")
    if any(not key.isprintable() or " " in key for key in found):
        raise SoftPromptError("an API key must be printable and hold no space")
    return found


class ApiKeys:
    def __init__(self, keys: list[str]):
        self._keys = [key.encode("utf-8") for key in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def allow(self, path: str, authorization: str | None) -> bool:
        if not self._keys or path in OPEN_PATHS:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = token.strip().encode("latin-1", "replace")  # header values arrive decoded as latin-1
        # Every key is compared, each in constant time: how long a refusal takes says nothing about the keys.
        return sum(hmac.compare_digest(given, key) for key in self._keys) > 0
