"""What every store keeps for the router, and the answers it gives.

A store holds, per backend, the breaker (consecutive failures, cooldown,
the half-open probe), the retry budget's counts, the rate windows (requests
and tokens per second over the last 61 seconds) and the limit a provider's
own headers announced; plus a small key-value map for stored conversations.
:class:`MemoryState` keeps them in this process; ``RedisState`` shares them
between processes. Both answer with the same objects, so the router never
asks which one it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

__all__ = ["Limits", "Admission", "View", "BackendState", "State", "Session", "COOLING", "PROBING", "SPAN"]

SPAN = 61
"""Seconds a rate window looks back: the last 60 whole seconds and the current one, so that no
60-second interval ever holds more than the limit."""

COOLING = "cooling down"
PROBING = "probed by another request"


@dataclass(frozen=True)
class Limits:
    """One backend's knobs, as the store enforces them (every process passes its own). The router
    fills them in from its backend (``turnout.knobs`` holds their defaults); the last two are the
    store's own."""

    allowed_fails: int
    cooldown: float
    rpm: Optional[int]
    tpm: Optional[int]
    budget_ratio: float
    budget_min: int
    budget_window: int = 10
    probe_lease: float = 60.0
    """How long a half-open probe is held; it lapses after this if its process dies mid-probe."""
    busy: bool = False
    """Count requests in flight across processes too (the ``least-busy`` strategy; in memory they always are)."""


@dataclass(frozen=True, slots=True)
class Session:
    """A request's session, for affinity: its key, how long the store keeps it (seconds), and the
    backends it may be sent to instead (the same priority level, not tried yet in this request)."""

    key: str
    ttl: float
    others: tuple[str, ...] = ()


@dataclass(slots=True)
class Admission:
    """Whether one request may go to a backend now, and what it was counted as.

    ``why`` names what held it back: ``COOLING``, ``PROBING``, ``"rpm"``, ``"tpm"``, or the limit a
    provider announced (``"requests"``, ``"tokens"``); ``full`` is true for rate limits, which free up
    by themselves after ``wait`` seconds, unlike a cooldown, which ends in a probe.
    """

    ok: bool
    probe: bool = False
    wait: float = 0.0
    why: str = ""
    full: bool = False
    tokens: int = 0
    second: int = 0
    fails: int = 0
    """Consecutive failures when it was admitted: a success need not reset a count that was 0."""
    attempts: int = 0
    """Attempts made under it so far (the router's count: a retry takes its own room in the windows)."""
    moved: str = ""
    """Not admitted because the request's session was last served by this other backend (shared state)."""


@dataclass(frozen=True)
class View:
    """One backend's state as last seen, for ``router.stats()`` and ``turnout health``."""

    state: str  # closed | open | half-open
    cooldown_remaining: float
    fails: int
    openings: int
    rpm_used: int
    tpm_used: int
    provider_limit: Optional[str]
    provider_remaining: float
    shared: bool

    def as_dict(self, limits: Limits) -> dict[str, Any]:
        return {
            "state": self.state,
            "cooldown_remaining": round(self.cooldown_remaining, 3),
            "cooldowns": self.openings,
            "window": {
                "rpm": self.rpm_used if limits.rpm else None,
                "rpm_limit": limits.rpm,
                "tpm": self.tpm_used if limits.tpm else None,
                "tpm_limit": limits.tpm,
            },
            "provider_limit": None
            if self.provider_limit is None
            else {"limit": self.provider_limit, "remaining": round(self.provider_remaining, 3)},
            "shared": self.shared,
        }


class BackendState(Protocol):
    """One backend's state in one store. Every method is one step (one round trip for Redis)."""

    limits: Limits

    async def admit(
        self, tokens: int, *, hold: bool = True, hedge: bool = False, session: Optional[Session] = None
    ) -> Admission:
        """Check the breaker, the provider's limit and the windows, and count the request if it may go
        (and as in flight); a half-open breaker's probe is claimed. ``hold=False`` counts it whatever
        (a pinned request, or the one tried when every candidate cools down) and never claims a probe;
        ``hedge`` counts it as a retry too (the budget). A shared store records ``session`` as served
        here, or answers ``moved`` when another of ``session.others`` served it last."""
        ...

    def done(self, admission: Admission) -> None:
        """An admitted request ended (its answer read, or it failed): no longer in flight. Never waits."""
        ...

    def busy(self) -> int:
        """Requests in flight on this backend as last seen (every process's, with shared state), no round trip."""
        ...

    async def again(self, tokens: int) -> Admission:
        """A retry's room in the windows, counted as a retry when there is some."""
        ...

    async def succeeded(self, admission: Admission) -> None: ...

    async def failed(self, *, cool: bool = False, open_for: Optional[float] = None) -> bool:
        """Count a failed attempt; open the breaker at ``allowed_fails`` in a row, at a failed probe,
        or at once (``cool``: for the cooldown; ``open_for``: for that long). True while it is open."""
        ...

    async def release(self, admission: Admission) -> None:
        """The request ended without a verdict on the backend: give its probe back."""
        ...

    async def full(self, seconds: float, what: str) -> None:
        """The provider said it has no room for ``seconds`` (``what``: requests or tokens)."""
        ...

    async def used(self, admission: Admission, tokens: int) -> None:
        """The answer's real token count, correcting the estimate the request was counted with."""
        ...

    async def can_retry(self) -> bool:
        """Retries stay under the budget's share of requests (over ``budget_window`` seconds)."""
        ...

    def is_open(self) -> bool:
        """The breaker as last seen (no round trip): is the backend cooling down?"""
        ...

    def view(self) -> View:
        """The state as last seen, without a round trip."""
        ...

    async def refresh(self) -> View:
        """The state read from the store now."""
        ...


class State(Protocol):
    """A store: the router's per-backend state, and a key-value map of JSON objects with expiry."""

    shared: bool
    """True when other processes see the same state."""

    def backend(self, name: str, limits: Limits) -> BackendState: ...

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def put(self, key: str, value: dict[str, Any], ttl: float) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def aclose(self) -> None: ...
