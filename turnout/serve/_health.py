"""``GET /health/backends``: each backend's breaker state, rate windows, counters and last error, without a
request to any (with TURNOUT_STATE_URL, the state as every process sharing it sees it).

The router counts requests and keeps each breaker; the last error of each
backend is remembered here from the router's events. ``?probe=1`` also asks
every backend now (its model list), as ``turnout health`` does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from .._errors import describe
from ..router import Router, RouterEvent

__all__ = ["LastErrors", "report"]


class LastErrors:
    """The router's event hook: each backend's latest failure (a retry or a failover), with its time."""

    def __init__(self) -> None:
        self.by_backend: dict[str, tuple[str, float]] = {}

    async def record(self, event: RouterEvent) -> None:
        if event.error is not None and event.kind in ("retry", "failure"):
            self.by_backend[event.backend] = (describe(event.error), time.time())


async def report(
    router: Router, errors: LastErrors, scrub: Callable[[str], str], *, probe: bool, timeout: float = 10.0
) -> dict[str, Any]:
    """JSON-able, in the order requests try the backends; nothing in it is a secret or an address."""
    stats = await router.shared_stats() if router.state.shared else router.stats()
    probed: dict[str, Any] = {}
    if probe:
        try:
            probed = await asyncio.wait_for(router.health(), timeout)
        except asyncio.TimeoutError:
            probed = {}
    backends = []
    for backend in router.backends:
        counters = stats[backend.name]
        error, at = errors.by_backend.get(backend.name, (None, None))
        entry: dict[str, Any] = {
            "name": backend.name,
            "state": counters["state"],
            "requests": counters["requests"],
            "successes": counters["successes"],
            "failures": counters["failures"],
            "retries": counters["retries"],
            "cooldowns": counters["cooldowns"],
            "cooldown_remaining": counters["cooldown_remaining"],
            "window": counters["window"],
            "provider_limit": counters["provider_limit"],
            "last_error": scrub(error) if error else None,
            "last_error_at": at,
        }
        if probe:
            health = probed.get(backend.name)
            entry["probe"] = (
                None
                if health is None
                else {
                    "up": health.up,
                    "latency_ms": round(health.latency * 1000, 1),
                    "models": health.models,
                    "error": scrub(health.error) if health.error else None,
                }
            )
        backends.append(entry)
    return {"object": "list", "data": backends}
