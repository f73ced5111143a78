"""One backend's state in this process: the breaker, the budget, the rate windows.

The in-memory store's backends, and what a Redis store falls back on while
Redis is unreachable. Fixed-size: a router holds no more after a million
requests than after ten. ``_scripts`` does the same in Redis, step for step.
"""

from __future__ import annotations

from typing import Optional

from . import _clock
from ._base import COOLING, PROBING, SPAN, Admission, Limits, Session, View

__all__ = ["LocalBackend", "Ring"]


class Ring:
    """Per-second counts over the last ``SPAN`` seconds: requests sent (retries included), tokens, retries.

    A slot is ``[second, requests, tokens, retries]``; slot ``second % SPAN`` is reused once its
    second has left the window.
    """

    __slots__ = ("slots",)

    def __init__(self) -> None:
        self.slots = [[-1, 0, 0, 0] for _ in range(SPAN)]

    def count(self, second: int, requests: int, tokens: int, retries: int) -> None:
        slot = self.slots[second % SPAN]
        if slot[0] != second:
            slot[0], slot[1], slot[2], slot[3] = second, 0, 0, 0
        slot[1] += requests
        slot[2] += tokens
        slot[3] += retries

    def correct(self, second: int, tokens: int) -> None:
        """Add ``tokens`` (negative: take away) to the second a request was counted in, if still in the window."""
        slot = self.slots[second % SPAN]
        if slot[0] == second:
            slot[2] = max(0, slot[2] + tokens)

    def totals(self, second: int, span: int = SPAN) -> tuple[int, int, int]:
        """Requests, tokens and retries over the ``span`` seconds ending with ``second``."""
        requests = tokens = retries = 0
        for s, r, t, x in self.slots:
            if second - span < s <= second:
                requests += r
                tokens += t
                retries += x
        return requests, tokens, retries

    def no_room(self, now: float, limits: Limits, tokens: int) -> tuple[str, float] | None:
        """Which window is full and the seconds until it has room for one more request of ``tokens``,
        or ``None`` when there is room. A request bigger than the whole TPM waits for an empty window."""
        second = int(now)
        used_r, used_t, _ = self.totals(second)
        rpm, tpm = limits.rpm or 0, limits.tpm or 0
        need = min(tokens, tpm) if tpm else 0
        over_r = rpm > 0 and used_r + 1 > rpm
        if not over_r and not (tpm > 0 and used_t + need > tpm):
            return None
        freed_r, freed_t = used_r, used_t
        for s, r, t, _ in sorted(slot for slot in self.slots if second - SPAN < slot[0] <= second):
            freed_r -= r
            freed_t -= t
            if (rpm == 0 or freed_r + 1 <= rpm) and (tpm == 0 or freed_t + need <= tpm):
                return ("rpm" if over_r else "tpm"), s + SPAN - now
        return ("rpm" if over_r else "tpm"), float(SPAN)


class LocalBackend:
    """The breaker, budget and windows of one backend, in this process.

    closed     requests flow
    open       skipped until ``open_until``
    half-open  the cooldown ended: one request may probe; its success closes the
               breaker, its failure opens it for another cooldown
    """

    __slots__ = ("limits", "fails", "open_until", "probing", "openings", "full_until", "full_what", "ring", "in_flight")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.fails = 0
        self.open_until = 0.0
        self.probing = False
        self.openings = 0
        self.full_until = 0.0
        self.full_what = ""
        self.ring = Ring()
        self.in_flight = 0

    # -- the steps, synchronous: the Redis store's fallback calls them as they are ---------
    def admit_now(self, tokens: int, hold: bool = True, hedge: bool = False) -> Admission:
        now = _clock.now()
        probe = False
        if hold:
            if self.open_until:
                if now < self.open_until:
                    return Admission(False, wait=self.open_until - now, why=COOLING)
                if self.probing:
                    return Admission(False, why=PROBING)
                probe = True
            if now < self.full_until:
                return Admission(False, wait=self.full_until - now, why=self.full_what, full=True)
            if self.limits.rpm or self.limits.tpm:
                held = self.ring.no_room(now, self.limits, tokens)
                if held is not None:
                    return Admission(False, wait=held[1], why=held[0], full=True)
        second = int(now)
        self.ring.count(second, 1, tokens, 1 if hedge else 0)
        if probe:
            self.probing = True
        self.in_flight += 1
        return Admission(True, probe=probe, tokens=tokens, second=second, fails=self.fails)

    def again_now(self, tokens: int) -> Admission:
        now = _clock.now()
        if self.limits.rpm or self.limits.tpm:
            held = self.ring.no_room(now, self.limits, tokens)
            if held is not None:
                return Admission(False, wait=held[1], why=held[0], full=True)
        second = int(now)
        self.ring.count(second, 1, tokens, 1)
        return Admission(True, tokens=tokens, second=second, fails=self.fails)

    def succeeded_now(self) -> None:
        self.fails = 0
        self.open_until = 0.0
        self.probing = False

    def failed_now(self, cool: bool = False, open_for: Optional[float] = None) -> bool:
        now = _clock.now()
        self.fails += 1
        half_open = bool(self.open_until) and now >= self.open_until
        if open_for is None and (cool or half_open or self.fails >= self.limits.allowed_fails):
            open_for = self.limits.cooldown
        if open_for is not None:
            until = now + open_for
            if now < self.open_until:  # open already (another request's failure): only a longer wait extends it
                self.open_until = max(self.open_until, until)
            else:
                self.open_until = until
                self.probing = False
                self.openings += 1
        return now < self.open_until

    def release_now(self, admission: Admission) -> None:
        if admission.probe:
            self.probing = False

    def full_now(self, seconds: float, what: str) -> None:
        until = _clock.now() + seconds
        if until > self.full_until:
            self.full_until, self.full_what = until, what

    def used_now(self, admission: Admission, tokens: int) -> None:
        if tokens != admission.tokens:
            self.ring.correct(admission.second, tokens - admission.tokens)

    def can_retry_now(self) -> bool:
        requests, _, retries = self.ring.totals(int(_clock.now()), self.limits.budget_window)
        return retries < self.limits.budget_min + self.limits.budget_ratio * (requests - retries)

    def view(self) -> View:
        now = _clock.now()
        used_r, used_t, _ = self.ring.totals(int(now))
        if not self.open_until:
            state = "closed"
        else:
            state = "open" if now < self.open_until else "half-open"
        full = now < self.full_until
        return View(
            state,
            max(0.0, self.open_until - now),
            self.fails,
            self.openings,
            used_r,
            used_t,
            self.full_what if full else None,
            self.full_until - now if full else 0.0,
            shared=False,
        )

    def is_open(self) -> bool:
        return bool(self.open_until) and (_clock.now() < self.open_until or self.probing)

    # -- the BackendState protocol --------------------------------------------------------------
    async def admit(
        self, tokens: int, *, hold: bool = True, hedge: bool = False, session: Optional[Session] = None
    ) -> Admission:
        return self.admit_now(tokens, hold, hedge)

    def done(self, admission: Admission) -> None:
        if self.in_flight > 0:
            self.in_flight -= 1

    def busy(self) -> int:
        return self.in_flight

    async def again(self, tokens: int) -> Admission:
        return self.again_now(tokens)

    async def succeeded(self, admission: Admission) -> None:
        self.succeeded_now()

    async def failed(self, *, cool: bool = False, open_for: Optional[float] = None) -> bool:
        return self.failed_now(cool, open_for)

    async def release(self, admission: Admission) -> None:
        self.release_now(admission)

    async def full(self, seconds: float, what: str) -> None:
        self.full_now(seconds, what)

    async def used(self, admission: Admission, tokens: int) -> None:
        self.used_now(admission, tokens)

    async def can_retry(self) -> bool:
        return self.can_retry_now()

    async def refresh(self) -> View:
        return self.view()
