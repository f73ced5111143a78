"""Router events: the one record of what each request and each attempt did, and when.

Every subscriber (the ``on_event`` hook, telemetry) reads the same events;
nothing else measures an attempt: its timings (:class:`AttemptTimes`, on
:data:`clock`, the monotonic clock) are taken here, carried by its events, and
read by the ``latency`` strategy and hedging too, never a second clock. No
event is even built while nobody listens.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Optional

import httpx2

from ..adapters._base import Raw

__all__ = [
    "RouterEvent",
    "RequestInfo",
    "AttemptTimes",
    "Hook",
    "Emit",
    "Events",
    "make_emit",
    "current_request",
    "clock",
]

log = logging.getLogger("turnout")

EventKind = Literal[
    "request",
    "attempt",
    "success",
    "attempt_failed",
    "retry",
    "failure",
    "failover",
    "skipped",
    "hedge",
    "stream_end",
    "done",
]
"""``request``: a request arrived (``backend`` is empty). ``attempt``: an attempt on ``backend`` starts.
``success``: it answered (``first``: when its answer, a stream's first event, was in; ``end``: the same, or ``None``
for a stream, whose end is its ``stream_end``). ``attempt_failed``: it failed with ``error``. ``retry``: the backend
is tried again after ``wait`` seconds. ``failure``: the backend is given up on. ``failover``: the walk moves from
``backend`` to ``to``. ``skipped``: ``backend`` was not tried (``reason``). ``hedge``: ``backend`` was slow, the
request is also sent to ``to``. ``stream_end``: a committed stream ended (``reason``: ``whole``, ``broken`` with
``error``, or ``closed`` by the caller before its end). ``done``: the request was answered by ``backend`` (a stream:
committed to it) or failed with ``error``."""

clock = time.monotonic
"""The clock of every event's times."""


@dataclass(eq=False)
class RequestInfo:
    """One request, the same object in each of its events; ``notes`` is where a subscriber keeps its own state.
    ``body`` is the request's body, to read; a subscriber changes it with :meth:`change` only."""

    endpoint: str
    model: Optional[str]
    stream: bool
    body: dict[str, Any]
    start: float
    notes: dict[str, Any] = field(default_factory=dict)
    raw: Optional[Raw] = None

    def change(self, key: str, value: Any) -> None:
        """Set ``key`` of the body the backends are sent (on the ``request`` event, before any attempt): the
        body is then encoded anew, not sent as the caller's own bytes."""
        self.body[key] = value
        if self.raw is not None:
            self.raw.changed = True


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
    request: Optional[RequestInfo] = None
    attempt: int = 0
    """The attempt's number on this backend for this request (1: the first try)."""
    start: Optional[float] = None
    first: Optional[float] = None
    end: Optional[float] = None
    """The request's (``request``, ``done``) or the attempt's times as they were when the event was told;
    ``times`` is the attempt's own record, filled in as it goes on (a stream's end too)."""
    response: Optional[httpx2.Response] = None
    reason: Optional[str] = None
    times: Optional[AttemptTimes] = None


Hook = Callable[[RouterEvent], Awaitable[None]]
Emit = Callable[[RouterEvent], Awaitable[None]]

current_request: ContextVar[RequestInfo | None] = ContextVar("turnout_request", default=None)
"""The request the router is serving in this context (set only while someone listens)."""


class Events:
    """The router's event sink: every subscribed hook, in order; false while there is none, so callers skip
    building events. A failing hook is logged and never breaks a request."""

    def __init__(self, hooks: list[Hook]) -> None:
        self.hooks = hooks

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def add(self, hook: Hook) -> None:
        self.hooks.append(hook)

    async def __call__(self, event: RouterEvent) -> None:
        for hook in self.hooks:
            try:
                await hook(event)
            except Exception:
                log.exception("turnout event hook failed on %s", event.kind)


def make_emit(hook: Hook | None) -> Events:
    return Events([hook] if hook is not None else [])
