"""Router events for users who export metrics: one hook, one small record per event."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Literal, Optional

__all__ = ["RouterEvent", "Hook", "Emit", "make_emit"]

log = logging.getLogger("turnout")

EventKind = Literal["attempt", "retry", "failure", "failover", "success"]


@dataclass(frozen=True)
class RouterEvent:
    """``kind`` happened on ``backend``; ``to`` is the next backend of a failover."""

    kind: EventKind
    backend: str
    error: Optional[BaseException] = None
    wait: Optional[float] = None
    to: Optional[str] = None


Hook = Callable[[RouterEvent], Awaitable[None]]
Emit = Callable[[RouterEvent], Awaitable[None]]


def make_emit(hook: Hook | None) -> Emit | None:
    """The router's event sink (``None`` without a hook: no event is even built); a failing
    hook is logged and never breaks a request."""
    if hook is None:
        return None

    async def emit(event: RouterEvent) -> None:
        try:
            await hook(event)
        except Exception:
            log.exception("turnout event hook failed on %s", event.kind)

    return emit
