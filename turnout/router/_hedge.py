"""Hedged requests: a request still without an answer after a while is sent to the next candidate as well.

"The Tail at Scale" (Dean and Barroso, CACM 2013): a request that has waited past the usual time
is better raced on a second backend than waited out; it cuts the slowest percentiles sharply for
a few percent more load. The first attempt to answer wins (a stream answers at its first real token:
``_stream.open_stream`` reads up to it);
the other is cancelled at once, which closes its HTTP connection so the provider stops
generating. Only requests that are safe to send twice are hedged (:func:`hedgeable`: never pinned or
stateful calls), at most ``max_hedges`` per request, and each hedge is admitted as a retry, so the
retry budget caps hedging when everything is slow (an outage cannot double the load).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .._errors import ConfigError
from ..adapters import Call
from ..state import Admission
from ._events import RouterEvent, current_request

if TYPE_CHECKING:
    from ._router import OpFor, Router, Served
    from ._select import Candidate

__all__ = ["HEDGED", "Hedge", "hedgeable", "parse_hedge"]

log = logging.getLogger("turnout")

HEDGED = frozenset({"chat", "completions", "embeddings"})
"""Endpoints whose requests may be sent twice: they change nothing on the provider's side."""


def hedgeable(call: Call) -> bool:
    """Safe to send twice: chat, completions, embeddings, and a Responses call that stores nothing
    (``store=False``, native or bridged); never a pinned or stateful call."""
    name = call.endpoint.name
    return name in HEDGED or (name == "responses" and call.body.get("store") is False)


_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?)")


def parse_hedge(value: float | str | None, max_hedges: int = 1) -> Optional[Hedge]:
    """``0.5`` (seconds), ``"p95"`` (a percentile of the backend's recent latency), or ``None``/``""``: off."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if max_hedges < 1:
        raise ConfigError(f"max_hedges must be at least 1, got {max_hedges}")
    if isinstance(value, str):
        text = value.strip().lower()
        found = _PERCENTILE.fullmatch(text)
        if found is not None:
            return Hedge(percentile=float(found.group(1)), max_hedges=max_hedges)
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"hedge_after {value!r} is neither seconds (0.5) nor a percentile (p95)") from None
    if value <= 0:
        raise ConfigError(f"hedge_after must be more than 0 seconds, got {value}")
    return Hedge(seconds=float(value), max_hedges=max_hedges)


@dataclass(frozen=True)
class Hedge:
    """When to hedge (``seconds``, or ``percentile`` of the first backend's recent latency for the model)."""

    seconds: Optional[float] = None
    percentile: Optional[float] = None
    max_hedges: int = 1

    def delay(self, candidate: Candidate) -> Optional[float]:
        """How long the attempt on ``candidate`` waits alone; ``None`` while its percentile is unknown."""
        if self.seconds is not None:
            return self.seconds
        assert self.percentile is not None
        return candidate.runner.latency_percentile(candidate.model, self.percentile)

    async def race(
        self,
        router: Router,
        first: Candidate,
        admission: Admission,
        queue: list[Candidate],
        after: int,
        call: Call,
        errors: dict[str, BaseException],
        op_for: OpFor,
        left: int,
    ) -> tuple[Served | None, int]:
        """``first`` alone for its delay, then hedged on the next candidates in ``queue`` (from ``after``)
        with room and budget, up to ``left`` hedges: the first answer, and how many hedges were sent.
        A hedged-to candidate leaves the queue; ``None`` when every attempt failed (each in ``errors``)."""
        delay = self.delay(first)
        attempts: dict[asyncio.Future[Served | None], Candidate] = {
            asyncio.ensure_future(router._try(first, call, errors, op_for, admission)): first
        }
        used = 0
        loop = asyncio.get_running_loop()
        try:
            while attempts:
                wait = delay if used < left and delay is not None else None
                asked = loop.time()
                done, _ = await asyncio.wait(attempts, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if not done and wait is not None and loop.time() - asked > 1.5 * wait:
                    # this process was stalled (a full garbage collection, no CPU), not the backend: the
                    # answer may be waiting to be read, so it gets one more delay before a hedge is sent
                    done, _ = await asyncio.wait(attempts, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    launched = await self._launch(router, first, queue, after, call, errors, op_for, attempts)
                    used += launched
                    if not launched:
                        left = used  # no candidate with room or budget: wait the attempts out
                    continue
                for task in done:
                    attempts.pop(task)
                    served = task.result()  # a bad request raises here, and the others are cancelled below
                    if served is not None:
                        return served, used
            return None, used
        finally:
            await _cancel(attempts)

    async def _launch(
        self,
        router: Router,
        first: Candidate,
        queue: list[Candidate],
        after: int,
        call: Call,
        errors: dict[str, BaseException],
        op_for: OpFor,
        attempts: dict[asyncio.Future[Served | None], Candidate],
    ) -> int:
        for j in range(after, len(queue)):
            candidate = queue[j]
            if candidate.runner in (c.runner for c in attempts.values()):
                continue
            if not await candidate.runner.shared.can_retry():
                log.info("no hedge on %s: its retry budget is spent", candidate.runner.name)
                return 0
            admission = await candidate.runner.admit(call, hedge=True)
            if not admission.ok:
                continue
            queue.pop(j)
            log.info("backend %s is slow: hedging on %s", first.runner.name, candidate.runner.name)
            if router._emit:
                await router._emit(
                    RouterEvent("hedge", first.runner.name, to=candidate.runner.name, request=current_request.get())
                )
            attempts[asyncio.ensure_future(router._try(candidate, call, errors, op_for, admission))] = candidate
            return 1
        return 0


async def _cancel(attempts: dict[asyncio.Future[Any], Any]) -> None:
    """The losers cancelled, and waited for: their connections are closed before the winner is returned."""
    for task in attempts:
        task.cancel()
    if attempts:
        await asyncio.gather(*attempts, return_exceptions=True)
