"""Figure 13: what routing by latency, load and session costs per request, beside ``weighted``; and hedging's p99.

``python -m bench.routing`` (add ``--quick`` for tiny samples). Three parts:

1. **Ordering, CPU time only** (this process's, so a loaded machine's waits are left out). ``Router._plan`` (the candidates, their capabilities and the strategy's
   order: everything a request's routing decides before it is sent) over three backends of one
   priority level, each strategy timed in turns, loop by loop, median of the rounds. Latency has
   measurements for every backend; affinity names a session this router has seen.
2. **Through the client.** turnout's client over three backends (names on the benchmark server's one
   port), interleaved request by request as in figure 1: the client's CPU time per request (p50) and
   the latency (p50), beside ``weighted``; the same request naming a session with affinity off shows
   what the SDK spends on the extra ``user`` parameter, so the difference of the two rows is affinity's.
3. **Hedging.** A loopback backend whose every 10th request takes 3 s and a second one: 200 requests,
   ten at a time, without hedging and with ``hedge_after="p90"``: p50, p99 and attempts per request.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import time
from typing import Any, Awaitable, Callable

STRATEGIES = ("weighted", "latency", "least-busy")


def _router(url: str, strategy: str, **options: Any) -> Any:
    from bench import harness as h
    from turnout import Backend, Router

    return Router([Backend(h.adapter(name, url), priority=0) for name in "abc"], strategy=strategy, **options)


def ordering_cost(url: str, loops: int, rounds: int) -> dict[str, float]:
    """Microseconds per request ``_plan`` takes, each variant timed in turns."""
    from openai._models import FinalRequestOptions

    from turnout.adapters import Call
    from turnout.router import endpoint_for

    options = FinalRequestOptions.construct(
        method="post",
        url="/chat/completions",
        json_data={"model": "bench-model", "messages": [{"role": "user", "content": "ping"}]},
    )
    call = Call(endpoint_for("post", "/chat/completions"), options, False)
    routers = {s: _router(url, s) for s in STRATEGIES}
    for runner in routers["latency"]._runners:
        for seconds in (0.010, 0.011, 0.012):
            runner._latency.setdefault(
                "bench-model", __import__("turnout.router._strategy", fromlist=["Latency"]).Latency()
            ).add(seconds)
    routers["weighted+session"] = _router(url, "weighted")
    routers["weighted+session"]._affinity.put("s1", "b")
    plans: dict[str, Callable[[], Any]] = {name: (lambda r=r: r._plan(call)) for name, r in routers.items()}
    plans["weighted+session"] = lambda r=routers["weighted+session"]: r._plan(call, "s1")
    samples: dict[str, list[float]] = {name: [] for name in plans}
    for _ in range(rounds):
        for name, plan in plans.items():
            start = time.process_time()
            for _ in range(loops):
                plan()
            samples[name].append((time.process_time() - start) / loops * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


async def through_client(url: str, rounds: int, warmup: int, cpu: dict[str, list[float]]) -> dict[str, list[float]]:
    import turnout
    from bench import harness as h

    clients = {s: turnout.AsyncOpenAI(router=_router(url, s)) for s in STRATEGIES}
    calls = {s: h.chat_call(c) for s, c in clients.items()}
    calls["weighted+session"] = h.chat_call(clients["weighted"], user="session-1")
    # the same request with affinity off: what the SDK itself spends on one more parameter
    clients["off"] = turnout.AsyncOpenAI(router=_router(url, "weighted", affinity="off"))
    calls["user, affinity off"] = h.chat_call(clients["off"], user="session-1")
    try:
        return await h.interleaved(calls, rounds, warmup, cpu)
    finally:
        await asyncio.gather(*(c.close() for c in clients.values()))


async def hedging(requests: int, at_once: int = 10) -> dict[str, dict[str, float]]:
    import turnout
    from tests.support.loopback import OpenAIServer
    from turnout import Backend, OpenAICompatAdapter, Router

    out: dict[str, dict[str, float]] = {}
    for label, hedge in (("no hedging", None), ("hedge_after=p90", "p90")):
        with OpenAIServer() as tail, OpenAIServer() as other:
            tail.latency = other.latency = 0.02
            backends = [
                Backend(OpenAICompatAdapter(n, preset="vllm", base_url=s.base_url, timeout=30), priority=i)
                for i, (n, s) in enumerate((("tail", tail), ("other", other)))
            ]
            client = turnout.AsyncOpenAI(router=Router(backends, hedge_after=hedge, retry_budget_min=requests))
            call = functools.partial(
                client.chat.completions.create, model="test-model", messages=[{"role": "user", "content": "hi"}]
            )
            await _pool(call, 30, at_once)  # warm-up: the percentile is known
            tail.latency = lambda n: 3.0 if n % 10 == 0 else 0.02
            before = len(tail.requests) + len(other.requests)
            times = await _pool(call, requests, at_once)
            await client.close()
            ranked = sorted(times)
            out[label] = {
                "p50_ms": ranked[len(ranked) // 2] * 1000,
                "p99_ms": ranked[min(len(ranked) - 1, int(len(ranked) * 0.99))] * 1000,
                "attempts_per_request": (len(tail.requests) + len(other.requests) - before) / requests,
            }
    return out


async def _pool(call: Callable[[], Awaitable[Any]], total: int, at_once: int) -> list[float]:
    """``total`` calls by ``at_once`` workers, each call's seconds."""
    left = iter(range(total))
    times: list[float] = []

    async def worker() -> None:
        for _ in left:
            start = time.perf_counter()
            await call()
            times.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(at_once)))
    return times


def main() -> None:
    from bench import harness as h

    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    loops, rounds, latency_rounds, requests = (200, 3, 30, 50) if args.quick else (5000, 9, 600, 200)
    print(f"load before: {os.getloadavg()}")
    with h.Server() as srv:
        cost = ordering_cost(srv.ok, loops, rounds)
        print("13  ordering per request (CPU, median of rounds):")
        for name, us in cost.items():
            print(f"    {name:18s} {us:7.2f} µs  ({us - cost['weighted']:+.2f} µs beside weighted)")
        cpu: dict[str, list[float]] = {}
        lat = asyncio.run(through_client(srv.ok, latency_rounds, 20, cpu))
        base, base_cpu = h.pct(lat["weighted"], 0.5), h.pct(cpu["weighted"], 0.5)
        print("13  through the client, per request p50 (interleaved): CPU time, latency")
        for name, values in lat.items():
            p50, used = h.pct(values, 0.5), h.pct(cpu[name], 0.5)
            print(
                f"    {name:18s} CPU {h.ms(used):6.3f} ms ({h.ms(used - base_cpu):+.3f})  "
                f"latency {h.ms(p50):6.3f} ms ({h.ms(p50 - base):+.3f}) beside weighted"
            )
    print("13  hedging, a backend whose every 10th request takes 3 s, ten at a time:")
    for label, figures in asyncio.run(hedging(requests)).items():
        print(
            f"    {label:18s} p50 {figures['p50_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms  "
            f"attempts/request {figures['attempts_per_request']:.3f}"
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
