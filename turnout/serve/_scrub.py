"""Secrets never leave the server: not in an answer, a log line, a health report.

Settings mask keys and error messages are built without them, but a backend
may echo its key in an error ("Incorrect API key provided: sk-..."), and a
bug may put one in a traceback. Everything the server writes or answers in
words passes through :class:`Scrubber` last.
"""

from __future__ import annotations

from typing import Iterable

from pydantic import SecretStr

from ..settings import ResolvedConfig

__all__ = ["Scrubber", "secrets_of"]

_MIN_SECRET = 8  # shorter values are too likely to be ordinary words


class Scrubber:
    """Replaces every known secret in a text with ``****``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "****")
        return text


def secrets_of(config: ResolvedConfig, keys: Iterable[SecretStr] = ()) -> list[str]:
    """The serve keys, and every backend's key and header values (headers often carry keys)."""
    found = [key.get_secret_value() for key in keys]
    for backend in config.backends:
        if backend.api_key.value is not None:
            found.append(backend.api_key.value.get_secret_value())
        found += [value.get_secret_value() for value in (backend.headers.value or {}).values()]
    return found
