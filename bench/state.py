"""Figure 12: the router's state in Redis (shared by many processes) vs in this process's memory, per request.

Both sides are turnout's client over one backend on the benchmark server;
they differ only in the store. The Redis side talks to a real ``redis-server``
on loopback, started here (``tests/support/redis_server.py``, the one the tests use),
and pays its round trip: one per request (the admission: breaker, windows,
budget); with a TPM limit, the token correction from the answer's usage is a
second, sent while the answer goes back to the caller.
The "limits" rows set RPM and TPM too high to ever be reached, so every
request is counted and none is held back, and ask for ``max_tokens=50``, so
each request's estimate is corrected from its answer. Latency is interleaved request by
request, as in figure 1.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

from bench import harness as h

LIMITS = {"rpm": 10**9, "tpm": 10**12}


def available() -> str | None:
    """Why the figure cannot run here, or ``None``."""
    if importlib.util.find_spec("redis") is None:
        return "the redis extra is not installed (pip install -e '.[redis]')"
    from tests.support.redis_server import redis_server_missing

    return redis_server_missing()


def fig_state(srv: Any, n: Any, rep: Any) -> None:
    from tests.support.redis_server import RedisServer

    missing = available()
    if missing:
        print(f"  12  skipped: {missing}", flush=True)
        return
    with RedisServer() as redis:
        asyncio.run(_measure(srv, redis.url, n, rep))


async def _measure(srv: Any, url: str, n: Any, rep: Any) -> None:
    from turnout import Backend, Router
    from turnout.state import RedisState

    def client(state: Any, **limits: int) -> Any:
        import turnout

        return turnout.AsyncOpenAI(router=Router([Backend(h.adapter("a", srv.ok), **limits)], state=state))

    clients = {
        "memory": client(None),
        "redis": client(RedisState(url)),
        "memory+limits": client(None, **LIMITS),
        "redis+limits": client(RedisState(url), **LIMITS),
    }
    try:
        # with limits, max_tokens makes the estimate differ from the answer's usage: every request is corrected
        calls = {
            name: h.chat_call(c, **({"max_tokens": 50} if "limits" in name else {})) for name, c in clients.items()
        }
        s = await h.interleaved(calls, n.latency_rounds, n.warmup)
        for label, mem, red, trips in (
            ("no limits", "memory", "redis", "one round trip"),
            (
                "RPM and TPM limits",
                "memory+limits",
                "redis+limits",
                "one round trip, and the token correction beside the answer",
            ),
        ):
            rep.add(
                "12",
                f"state in Redis vs in memory, {label}: added latency p50",
                "ms",
                h.ms(h.pct(s[mem], 0.5)),
                h.ms(h.pct(s[red], 0.5)),
                kind="delta",
                target="≤ +0.5 ms",
                ok=lambda d: d <= 0.5,
                note=f"{trips} to a loopback redis-server",
            )
            rep.add(
                "12",
                f"state in Redis vs in memory, {label}: latency p99",
                "ms",
                h.ms(h.pct(s[mem], 0.99)),
                h.ms(h.pct(s[red], 0.99)),
                kind="delta",
            )
        counted = (await clients["redis+limits"].router.shared_stats())["a"]["window"]
        rep.extra["state"] = {"redis_window_after_run": counted}
    finally:
        await asyncio.gather(*(c.close() for c in clients.values()))
