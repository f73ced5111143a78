"""Where the router keeps what outlives one request.

Per backend: the breaker, the retry budget, the rate windows and the limits
providers announce in their headers; and stored Responses conversations (a
bounded, expiring key-value map). :class:`MemoryState` (the default) keeps
them in this process; ``RedisState`` (``TURNOUT_STATE_URL``, the extra
``turnout[redis]``) shares them between every process that names the same
Redis server and prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import COOLING, PROBING, Admission, BackendState, Limits, Session, State, View
from ._memory import MemoryState

if TYPE_CHECKING:
    from ._redis import RedisState

__all__ = [
    "Admission",
    "BackendState",
    "COOLING",
    "Limits",
    "MemoryState",
    "PROBING",
    "RedisState",
    "Session",
    "State",
    "View",
    "open_state",
]


def open_state(url: str | None, *, prefix: str = "turnout", timeout: float = 0.5) -> State:
    """The store a URL names: ``redis://`` or ``rediss://`` (TLS), ``unix://`` for a socket; none: memory."""
    if not url:
        return MemoryState()
    from ._redis import RedisState

    return RedisState(url, prefix=prefix, timeout=timeout)


def __getattr__(name: str) -> Any:
    if name == "RedisState":  # redis-py is imported only by programs that configure it
        from ._redis import RedisState

        return RedisState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
