"""Session affinity: a conversation goes back to the backend that served its last turn.

Providers cache a prompt's prefix per server (OpenAI, Anthropic, DeepSeek, vLLM's and SGLang's
prefix caches): sending a conversation's next turn where the last one went is cheaper and faster
than a random spread. A request names its session by ``prompt_cache_key``, else ``user``, else the
``x-turnout-session`` header (``extra_headers``); with ``affinity="hash"`` a request naming none is
known by a hash of its first messages.

This process remembers each session's backend (bounded, expiring); with shared state the admission
script also records it, and answers when another process moved the session (``Admission.moved``),
so every process agrees at no extra round trip.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any, Literal, Mapping, Optional

from ..state import _clock

__all__ = ["Affinity", "AffinityMode", "SESSION_HEADER", "session_of"]

AffinityMode = Literal["on", "off", "hash"]

SESSION_HEADER = "x-turnout-session"
"""The header (``extra_headers``) naming a request's session; never sent to a backend."""

HASHED_MESSAGES = 2
"""How many of a conversation's first messages name it under ``affinity="hash"``."""


def session_of(body: Mapping[str, Any], headers: Mapping[str, Any] | None, hashed: bool) -> Optional[str]:
    """The session a request names, or ``None``. Keys are hashed: no user id or prompt reaches the store."""
    named = body.get("prompt_cache_key") or body.get("user")
    if not named and headers:
        named = headers.get(SESSION_HEADER)
    if isinstance(named, str) and named:
        return _digest(named)
    if hashed:
        first = body.get("messages") or body.get("input")
        if isinstance(first, list) and first:
            return _digest(json.dumps(first[:HASHED_MESSAGES], sort_keys=True, default=str))
    return None


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class Affinity:
    """Each session's backend as this process last saw it: at most ``max_items``, each for ``ttl`` seconds."""

    def __init__(self, ttl: float, max_items: int = 100_000) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, session: str) -> Optional[str]:
        found = self._items.get(session)
        if found is None:
            return None
        if found[0] <= _clock.now():
            del self._items[session]
            return None
        return found[1]

    def put(self, session: str, backend: str) -> None:
        self._items.pop(session, None)
        self._items[session] = (_clock.now() + self.ttl, backend)
        if len(self._items) > self.max_items:
            self._items.popitem(last=False)
