"""Router events for users who export metrics: one hook, one small record per event.

This is also the one place an attempt's timings are measured (:class:`AttemptTimes`, on the
monotonic clock): the events carry them, and the ``latency`` strategy and hedging read the
same measurement, never a second clock.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Literal, Optional

__all__ = ["RouterEvent", "AttemptTimes", "Hook", "Emit", "make_emit", "clock"]

log = logging.getLogger("turnout")

EventKind = Literal["attempt", "retry", "failure", "failover", "success", "hedge"]

clock = time.monotonic
"""The clock of attempts' timings."""


@dataclass(slots=True)
class AttemptTimes:
    """When one attempt started, produced its first usable answer (a stream's first event; a whole
    answer otherwise) and ended, in :data:`clock` seconds; ``None`` until it happens. The "attempt"
    event carries the object as it starts; it is filled in as the attempt goes on."""

    start: float
    first: Optional[float] = None
    end: Optional[float] = None

    @property
    def to_first(self) -> Optional[float]:
        """Seconds to the first answer: time to first token for a stream, the whole time otherwise."""
        return None if self.first is None else self.first - self.start


@dataclass(frozen=True)
class RouterEvent:
    """``kind`` happened on ``backend``; ``to`` is the next backend of a failover, or the backend a
    hedge was sent to; ``times`` an attempt's timings (on "attempt" and "success")."""

    kind: EventKind
    backend: str
    error: Optional[BaseException] = None
    wait: Optional[float] = None
    to: Optional[str] = None
    times: Optional[AttemptTimes] = None


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
