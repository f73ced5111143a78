"""The in-memory store, the default: each backend's breaker, budget and rate windows in this process
(``_local``), and a bounded, expiring map of JSON-shaped values."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ._base import Limits
from ._clock import now
from ._local import LocalBackend

__all__ = ["MemoryState", "now"]


class MemoryState:
    """Values kept for ``ttl`` seconds, at most ``max_items`` of them (the oldest written goes first).

    Bounded both ways so a long-lived router holds no more after a million
    stored responses than after ``max_items``.
    """

    shared = False

    def __init__(self, *, max_items: int = 10_000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def __repr__(self) -> str:
        return f"MemoryState(items={len(self._items)}, max_items={self.max_items})"

    async def get(self, key: str) -> dict[str, Any] | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] <= now():
            del self._items[key]
            return None
        return found[1]

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None:
        self._items.pop(key, None)
        self._items[key] = (now() + ttl, value)
        self._trim()

    async def delete(self, key: str) -> bool:
        found = self._items.pop(key, None)
        return found is not None and found[0] > now()

    def _trim(self) -> None:
        """Drop the expired entries at the old end, then the oldest beyond the bound."""
        t = now()
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > t and len(self._items) <= self.max_items:
                return
            del self._items[key]

    def backend(self, name: str, limits: Limits) -> LocalBackend:
        """A backend's breaker, budget and windows, kept here: nothing to share, nothing to wait for."""
        return LocalBackend(limits)

    async def aclose(self) -> None:
        pass
