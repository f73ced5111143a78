"""Per-backend memory of recent trouble: the cooldown breaker and the retry budget.

Both keep fixed-size state, so a long-lived router holds no more after a
million requests than after ten.
"""

from __future__ import annotations

import time

__all__ = ["Breaker", "RetryBudget", "now"]


def now() -> float:
    """The clock of cooldowns and budgets (tests move it instead of waiting)."""
    return time.monotonic()


class Breaker:
    """Cooldown after ``allowed_fails`` consecutive failed attempts, then one probe (half-open).

    closed     requests flow
    open       skipped until ``open_until``
    half-open  the cooldown ended: one request may probe; its success closes
               the breaker, its failure opens it for another cooldown
    """

    __slots__ = ("allowed_fails", "cooldown", "fails", "open_until", "probing", "openings")

    def __init__(self, allowed_fails: int, cooldown: float) -> None:
        self.allowed_fails = max(1, allowed_fails)
        self.cooldown = cooldown
        self.fails = 0
        self.open_until = 0.0
        self.probing = False
        self.openings = 0

    @property
    def state(self) -> str:
        if self.open_until == 0.0:
            return "closed"
        return "open" if now() < self.open_until else "half-open"

    def is_open(self) -> bool:
        """True while requests should skip this backend."""
        if self.open_until == 0.0:
            return False
        return now() < self.open_until or self.probing

    def admit(self) -> bool:
        """May a request use this backend now? Claims the probe when half-open."""
        if self.open_until == 0.0:
            return True
        if now() < self.open_until or self.probing:
            return False
        self.probing = True
        return True

    def succeeded(self) -> None:
        self.fails = 0
        self.open_until = 0.0
        self.probing = False

    def failed(self, *, now_open: bool = False) -> None:
        """Count one failed attempt; ``now_open`` opens at once (a refused key)."""
        self.fails += 1
        if now_open or self.probing or self.fails >= self.allowed_fails:
            self.open()

    def open(self) -> None:
        self.open_until = now() + self.cooldown
        self.probing = False
        self.openings += 1

    def release_probe(self) -> None:
        """The probe ended without a verdict on the backend (e.g. a bad request)."""
        self.probing = False


class RetryBudget:
    """Retries capped at ``ratio`` of the requests of the last ``window`` seconds, plus a floor.

    Google SRE's per-client retry budget and gRPC's retry throttling: when a
    backend fails broadly, retrying every failure multiplies the load on it,
    so past the budget the router fails over instead. ``minimum`` retries per
    window are always allowed so a quiet backend can still retry.
    """

    __slots__ = ("ratio", "minimum", "window", "denied", "_buckets")

    def __init__(self, ratio: float = 0.2, minimum: int = 10, window: int = 10) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self.window = window
        self.denied = 0
        self._buckets = [[-1, 0, 0] for _ in range(window)]  # [second, requests, retries]

    def _bucket(self) -> list[int]:
        second = int(now())
        bucket = self._buckets[second % self.window]
        if bucket[0] != second:
            bucket[0], bucket[1], bucket[2] = second, 0, 0
        return bucket

    def _totals(self) -> tuple[int, int]:
        oldest = int(now()) - self.window
        live = [b for b in self._buckets if b[0] > oldest]
        return sum(b[1] for b in live), sum(b[2] for b in live)

    def request(self) -> None:
        self._bucket()[1] += 1

    def can_retry(self) -> bool:
        requests, retries = self._totals()
        allowed = retries < self.minimum + self.ratio * requests
        if not allowed:
            self.denied += 1
        return allowed

    def retried(self) -> None:
        self._bucket()[2] += 1
