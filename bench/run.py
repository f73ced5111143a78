"""turnout beside the raw openai SDK, same machine, same run, same loopback server.

``python -m bench`` measures every figure of issue 7 and prints a Markdown
table with each target beside it; ``--quick`` runs the same code with tiny
sample counts (a CI smoke test: it proves the harness works, its numbers
mean little). Results also go to a JSON file (``--json``).

Fairness: both sides talk to one server process (``bench.server``), with the
same timeout, ``max_retries=0`` and connection limits; latency samples are
interleaved request by request (raw, turnout, raw, ...) so drift, GC and
noisy neighbours hit both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Optional

import openai

import turnout
from bench.harness import (
    KEY,
    MESSAGES,
    MODEL,
    QUICK,
    ROOT,
    TIMEOUT,
    Report,
    Server,
    Sizes,
    adapter,
    chat_call,
    hand_failover,
    interleaved,
    ms,
    pct,
    raw_async,
    routed,
    rps,
    rss_mib,
    table,
)
from bench.responses import fig_responses
from bench.serve import fig_serve
from bench.state import fig_state
from bench.telemetry import fig_telemetry
from turnout import Backend, Router

# -- figures -------------------------------------------------------------------


async def fig_latency(srv: Server, n: Sizes, rep: Report) -> None:
    """1. Non-streamed latency at concurrency 1: raw vs one backend vs three (primary healthy)."""
    raw = raw_async(srv.ok)
    one = routed(Backend(adapter("a", srv.ok)))
    three = routed(*(Backend(adapter(x, srv.ok)) for x in ("a", "b", "c")))
    s = await interleaved(
        {"raw": chat_call(raw), "one": chat_call(one), "three": chat_call(three)}, n.latency_rounds, n.warmup
    )
    for label, key in (("1 backend", "one"), ("3 backends", "three")):
        rep.add(
            "1",
            f"latency p50, {label}, concurrency 1",
            "ms",
            ms(pct(s["raw"], 0.5)),
            ms(pct(s[key], 0.5)),
            target="≤ 1.05",
            ok=lambda r: r <= 1.05,
        )
        rep.add(
            "1",
            f"latency p99, {label}, concurrency 1",
            "ms",
            ms(pct(s["raw"], 0.99)),
            ms(pct(s[key], 0.99)),
            target="≤ 1.10",
            ok=lambda r: r <= 1.10,
        )
    await asyncio.gather(raw.close(), one.close(), three.close())


async def fig_stream(srv: Server, n: Sizes, rep: Report) -> None:
    """2. A 200-chunk stream: time to first chunk and to the last; and turnout as it was before issue 23,
    committing a stream at its first event and not checking that it ends whole, in the same run."""
    raw = raw_async(srv.ok)
    tout = routed(Backend(adapter("a", srv.ok)))
    names = ("raw", "turnout", "first event")
    samples: dict[str, dict[str, list[float]]] = {name: {"first": [], "total": []} for name in names}
    clock = time.perf_counter

    async def one(name: str, client: Any, record: bool) -> None:
        with _as_before_issue_23(name == "first event"):
            start = clock()
            stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            first = None
            count = 0
            async for _ in stream:
                if first is None:
                    first = clock()
                count += 1
            end = clock()
        assert count == 200, count
        if record:
            samples[name]["first"].append(first - start)  # type: ignore[operator]
            samples[name]["total"].append(end - start)

    clients = {"raw": raw, "turnout": tout, "first event": tout}
    for i in range(n.stream_rounds + max(3, n.warmup // 10)):
        order = names[i % 3 :] + names[: i % 3]  # who goes first rotates
        for name in order:
            await one(name, clients[name], i >= max(3, n.warmup // 10))
    for key, label in (("first", "stream: time to first chunk, p50"), ("total", "stream: 200 chunks total, p50")):
        rep.add(
            "2",
            label,
            "ms",
            ms(pct(samples["raw"][key], 0.5)),
            ms(pct(samples["turnout"][key], 0.5)),
            target="≤ 1.05",
            ok=lambda r: r <= 1.05,
        )
        rep.add(
            "2",
            f"{label}, committed at the first event (before issue 23)",
            "ms",
            ms(pct(samples["raw"][key], 0.5)),
            ms(pct(samples["first event"][key], 0.5)),
        )
    await asyncio.gather(raw.close(), tout.close())


def _as_before_issue_23(on: bool) -> Any:
    """The router as it streamed before issue 23: every event counts as a real token, every end as whole."""
    import contextlib
    from unittest import mock

    from turnout.router import _stream

    if not on:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(_stream, "usable", lambda data: True))
    stack.enter_context(mock.patch.object(_stream, "_says_whole", lambda window: True))
    return stack


async def fig_throughput(srv: Server, n: Sizes, rep: Report) -> None:
    """3. Requests per second at concurrency 64 and 256 (median of alternating repeats)."""
    raw = raw_async(srv.ok)
    tout = routed(Backend(adapter("a", srv.ok)))
    for conc in (64, 256):
        calls = {"raw": chat_call(raw), "turnout": chat_call(tout)}
        for call in calls.values():  # open the connections first
            await rps(call, conc, conc if n.throughput_repeats == 1 else conc * 4)
        got: dict[str, list[float]] = {"raw": [], "turnout": []}
        for i in range(n.throughput_repeats * 2):
            name = ("raw", "turnout")[i % 2] if (i // 2) % 2 == 0 else ("turnout", "raw")[i % 2]
            got[name].append(await rps(calls[name], conc, n.throughput_requests))
        rep.add(
            "3",
            f"throughput, concurrency {conc}",
            "req/s",
            statistics.median(got["raw"]),
            statistics.median(got["turnout"]),
            target="≥ 0.95",
            ok=lambda r: r >= 0.95,
        )
    await asyncio.gather(raw.close(), tout.close())


async def fig_failover(srv: Server, n: Sizes, rep: Report) -> None:
    """4. Failover: a refused primary before and after its cooldown opens; a 503 primary, max_retries=0.

    "Before the cooldown" is measured with ``allowed_fails`` so high the cooldown
    never opens, so every request pays the refused connection and the failover;
    the raw column is the same failover written by hand around two SDK clients.
    """
    never = 10**9
    removed = routed(Backend(adapter("good", srv.ok)))
    before = routed(
        Backend(adapter("dead", srv.refused), max_retries=0, allowed_fails=never), Backend(adapter("good", srv.ok))
    )
    after = routed(
        Backend(adapter("dead", srv.refused), max_retries=0, allowed_fails=1, cooldown=3600),
        Backend(adapter("good", srv.ok)),
    )
    busy = routed(
        Backend(adapter("busy", srv.err503), max_retries=0, allowed_fails=never), Backend(adapter("good", srv.ok))
    )
    raw_good, raw_dead, raw_busy = raw_async(srv.ok), raw_async(srv.refused), raw_async(srv.err503)

    def hand(primary: openai.AsyncOpenAI) -> Callable[[], Awaitable[Any]]:
        return lambda: hand_failover(primary, raw_good, model=MODEL, messages=MESSAGES)

    await chat_call(after)()  # the first request opens the cooldown
    assert after.router.stats()["dead"]["state"] == "open"
    s = await interleaved(
        {
            "raw": chat_call(raw_good),
            "removed": chat_call(removed),
            "before": chat_call(before),
            "after": chat_call(after),
            "busy": chat_call(busy),
            "hand_dead": hand(raw_dead),
            "hand_busy": hand(raw_busy),
        },
        n.failover_rounds,
        n.warmup // 4,
    )
    p50 = {k: ms(pct(v, 0.5)) for k, v in s.items()}
    rep.add(
        "4",
        "refused primary, cooldown not open: added latency p50",
        "ms",
        p50["hand_dead"] - p50["raw"],
        p50["before"] - p50["removed"],
        kind="ratio",
        note="raw: the same failover by hand",
    )
    rep.add(
        "4",
        "refused primary, cooldown open: p50 vs router without it",
        "ms",
        p50["removed"],
        p50["after"],
        target="≤ 1.05",
        ok=lambda r: r <= 1.05,
        note="raw column: router with the primary removed",
    )
    rep.add(
        "4",
        "503 primary, max_retries=0: added latency p50",
        "ms",
        p50["hand_busy"] - p50["raw"],
        p50["busy"] - p50["removed"],
        kind="ratio",
        note="raw: the same failover by hand",
    )
    rep.extra["failover_p50_ms"] = p50
    await asyncio.gather(*(c.close() for c in (removed, before, after, busy, raw_good, raw_dead, raw_busy)))


def fig_sync(srv: Server, n: Sizes, rep: Report) -> None:
    """5. The sync client: turnout.OpenAI (the router on the calling thread's own loop, backends sending
    synchronously) vs openai.OpenAI, for a chat call and a stream opened, read to its first chunk and closed.

    ``portal`` is the raw ``openai.AsyncOpenAI`` driven from this thread through
    turnout's background portal loop, without the router: the floor of the design
    the sync client had before (and still uses where a router needs a loop of its own).
    """
    from turnout._portal import run as portal_run

    raw = openai.OpenAI(api_key=KEY, base_url=srv.ok, max_retries=0, timeout=TIMEOUT)
    tout = turnout.OpenAI(router=Router([Backend(adapter("a", srv.ok))]))
    raw_async_client = raw_async(srv.ok)
    calls = {
        "raw": lambda: raw.chat.completions.create(model=MODEL, messages=MESSAGES),
        "turnout": lambda: tout.chat.completions.create(model=MODEL, messages=MESSAGES),
        "portal": lambda: portal_run(raw_async_client.chat.completions.create(model=MODEL, messages=MESSAGES)),
        "raw_stream": lambda: _first_chunk(raw),
        "turnout_stream": lambda: _first_chunk(tout),
    }
    for _ in range(n.warmup):
        for c in calls.values():
            c()
    s: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter
    names = list(calls)
    for i in range(n.sync_rounds):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            start = clock()
            calls[name]()
            s[name].append(clock() - start)
    rep.add(
        "5",
        "sync client latency p50",
        "ms",
        ms(pct(s["raw"], 0.5)),
        ms(pct(s["turnout"], 0.5)),
        target="≤ 1.10",
        ok=lambda r: r <= 1.10,
    )
    rep.add(
        "5",
        "sync client latency p99",
        "ms",
        ms(pct(s["raw"], 0.99)),
        ms(pct(s["turnout"], 0.99)),
        target="≤ 1.15",
        ok=lambda r: r <= 1.15,
    )
    rep.add(
        "5",
        "sync: raw AsyncOpenAI through the portal thread, no router, p50",
        "ms",
        ms(pct(s["raw"], 0.5)),
        ms(pct(s["portal"], 0.5)),
        note="the floor of a sync client on the async stack",
    )
    rep.add(
        "5",
        "sync stream: open, read the first chunk, close, p50",
        "ms",
        ms(pct(s["raw_stream"], 0.5)),
        ms(pct(s["turnout_stream"], 0.5)),
        target="≤ 1.15",
        ok=lambda r: r <= 1.15,
    )
    raw.close()
    tout.close()
    portal_run(raw_async_client.close())


def _first_chunk(client: Any) -> None:
    with client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as stream:
        next(iter(stream))


def _probe(kind: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.probe", kind], cwd=ROOT, check=True, capture_output=True, text=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def fig_startup(n: Sizes, rep: Report) -> None:
    """6 and 8. Fresh interpreters, raw and turnout alternating: import time, construction, memory."""
    runs: dict[str, list[dict[str, Any]]] = {"raw": [], "turnout": []}
    for _ in range(n.probe_samples):
        for kind in ("raw", "turnout"):
            runs[kind].append(_probe(kind))

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    rep.add(
        "6",
        "import time (from openai / from turnout import AsyncOpenAI), median",
        "ms",
        ms(med("raw", "import_s")),
        ms(med("turnout", "import_s")),
        kind="delta",
        target="≤ +60 ms",
        ok=lambda d: d <= 60,
    )
    loaded = sorted({m for r in runs["turnout"] for m in r["optional_modules_loaded"]})
    on_import = sorted({m for r in runs["turnout"] for m in r["optional_modules_on_import"]})
    ollama = float("ollama" in loaded)
    rep.add(
        "6",
        "ollama SDK loaded, with only OpenAI-compatible backends configured",
        "yes=1",
        None,
        ollama,
        kind="value",
        compare=ollama,
        target="0",
        ok=lambda v: v == 0,
        note=f"optional modules loaded by `from turnout import AsyncOpenAI`: {', '.join(on_import) or 'none'}; "
        f"after building routers: {', '.join(loaded) or 'none'}",
    )
    rep.add(
        "6",
        "extra RSS: 10 raw clients / router with 10 backends",
        "MiB",
        med("raw", "rss10_mib"),
        med("turnout", "rss10_mib"),
        kind="delta",
    )
    rep.add(
        "8",
        "construction: one raw client / router with 20 backends (fresh process)",
        "ms",
        ms(med("raw", "construct_s")),
        ms(med("turnout", "construct_s")),
        target="≤ 3.0",
        ok=lambda r: r <= 3.0,
    )
    rep.extra["probes"] = runs


def long_conversation(turns: int = 500) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """500 messages mixing user text, assistant tool calls and tool results, with five tools declared."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{t}",
                "description": f"Tool number {t}, which looks things up.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "what to look up"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
                        "filters": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["query"],
                },
            },
        }
        for t in range(5)
    ]
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful assistant."}]
    i = 0
    while len(messages) < turns:
        messages.append({"role": "user", "content": f"question {i}: " + "lorem ipsum dolor sit amet " * 8})
        call_id = f"call_{i}"
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": f"tool_{i % 5}", "arguments": json.dumps({"query": f"q{i}", "limit": 5})},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": "result " * 20})
        messages.append({"role": "assistant", "content": f"answer {i}: " + "consectetur adipiscing elit " * 6})
        i += 1
    return messages[:turns], tools


async def fig_long(srv: Server, n: Sizes, rep: Report) -> None:
    """7. A 500-message request with tools, where the SDK's own request transform is expensive."""
    messages, tools = long_conversation()
    raw, tout = raw_async(srv.ok), routed(Backend(adapter("a", srv.ok)))
    failover = routed(
        Backend(adapter("busy", srv.err503), max_retries=0, allowed_fails=10**9), Backend(adapter("good", srv.ok))
    )
    raw_busy = raw_async(srv.err503)
    params = {"model": MODEL, "messages": messages, "tools": tools}

    def call(client: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: client.chat.completions.create(**params)

    s = await interleaved(
        {
            "raw": call(raw),
            "turnout": call(tout),
            "failover": call(failover),
            "hand": lambda: hand_failover(raw_busy, raw, **params),
        },
        n.long_rounds,
        min(3, n.long_rounds),
    )
    p50 = {k: ms(pct(v, 0.5)) for k, v in s.items()}
    rep.add(
        "7",
        "500 messages + tools, latency p50",
        "ms",
        p50["raw"],
        p50["turnout"],
        target="≤ 1.05 (nothing measurable)",
        ok=lambda r: r <= 1.05,
    )
    rep.add(
        "7",
        "500 messages + tools, 503 primary then failover, p50",
        "ms",
        p50["hand"],
        p50["failover"],
        note="raw: the same failover by hand",
    )
    await asyncio.gather(raw.close(), tout.close(), failover.close(), raw_busy.close())


async def _burst(call: Callable[[], Awaitable[Any]], total: int, concurrency: int = 16) -> None:
    await rps(call, concurrency, total)


async def fig_memory(srv: Server, n: Sizes, rep: Report) -> None:
    """9. RSS after many requests vs after a few, and 1,000 clients created, used and closed."""
    growth: dict[str, float] = {}
    for name, client in (("turnout", routed(Backend(adapter("a", srv.ok)))), ("raw", raw_async(srv.ok))):
        call = chat_call(client)
        await _burst(call, n.memory_small)
        gc.collect()
        small = rss_mib()
        await _burst(call, n.memory_large - n.memory_small)
        gc.collect()
        growth[name] = rss_mib() - small
        await client.close()
    rep.add(
        "9",
        f"RSS growth from {n.memory_small:,} to {n.memory_large:,} requests",
        "MiB",
        growth["raw"],
        growth["turnout"],
        kind="delta",
        target="≤ raw + 1 MiB",
        ok=lambda d: d <= 1.0,
    )

    refs: list[weakref.ref[Any]] = []
    warm = max(10, n.clients // 10)
    start_rss = 0.0
    for i in range(n.clients):
        if i == warm:
            gc.collect()
            start_rss = rss_mib()
        router = Router([Backend(adapter("a", srv.ok)), Backend(adapter("b", srv.ok))])
        client = turnout.AsyncOpenAI(router=router)
        await chat_call(client)()
        await client.close()
        refs += [weakref.ref(router), weakref.ref(client)]
        del router, client
    alive_before_gc = sum(r() is not None for r in refs)
    gc.collect()
    alive = sum(r() is not None for r in refs)
    grew = rss_mib() - start_rss
    rep.add(
        "9",
        f"{n.clients:,} clients created, used, closed: routers and clients alive after gc",
        "objects",
        None,
        float(alive),
        kind="value",
        compare=float(alive),
        target="0",
        ok=lambda v: v == 0,
        note=f"{alive_before_gc} alive before gc.collect()",
    )
    rep.add(
        "9",
        f"{n.clients:,} clients created, used, closed: RSS growth after the first {warm}",
        "MiB",
        None,
        grew,
        kind="value",
        compare=grew,
        target="≤ 2 MiB",
        ok=lambda v: v <= 2.0,
    )


# -- driver --------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "openai": openai.__version__,
        "turnout": turnout.__version__,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny samples: proves the harness runs (CI)")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write results (default bench/results.json, quick: bench/results-quick.json)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="FIGURE",
        default=None,
        help="run only this figure (repeatable: --only 2 --only 7), while working on it",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    out = args.json or ROOT / "bench" / ("results-quick.json" if args.quick else "results.json")
    rep = Report()
    started = time.perf_counter()
    info = machine()
    print(
        f"turnout bench ({'quick' if args.quick else 'full'}) on {info['cpu']}, {info['cores']} cores, "
        f"Python {info['python']}, openai {info['openai']}",
        flush=True,
    )
    timings: dict[str, float] = {}
    with Server() as srv:
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("1 latency", lambda: asyncio.run(fig_latency(srv, sizes, rep))),
            ("2 streaming", lambda: asyncio.run(fig_stream(srv, sizes, rep))),
            ("3 throughput", lambda: asyncio.run(fig_throughput(srv, sizes, rep))),
            ("4 failover", lambda: asyncio.run(fig_failover(srv, sizes, rep))),
            ("5 sync", lambda: fig_sync(srv, sizes, rep)),
            ("6+8 start-up", lambda: fig_startup(sizes, rep)),
            ("7 long conversation", lambda: asyncio.run(fig_long(srv, sizes, rep))),
            ("9 memory", lambda: asyncio.run(fig_memory(srv, sizes, rep))),
            ("10 serve", lambda: fig_serve(srv, sizes, rep)),
            ("11 responses", lambda: asyncio.run(fig_responses(srv, sizes, rep))),
            ("12 state", lambda: fig_state(srv, sizes, rep)),
            ("14 telemetry", lambda: asyncio.run(fig_telemetry(srv, sizes, rep))),
        ]
        for label, step in steps:
            if args.only and not set(args.only) & set(label.split()[0].split("+")):
                continue
            gc.collect()  # each figure starts from a clean heap, not the previous figure's garbage
            begun = time.perf_counter()
            step()
            timings[label] = round(time.perf_counter() - begun, 2)
    rep.extra["seconds_per_figure"] = timings
    rep.rows.sort(key=lambda r: int(r.fig))
    elapsed = time.perf_counter() - started
    text = table(rep)
    print()
    print(text)
    missed = [r for r in rep.rows if r.met is False]
    print(
        f"\n{len(rep.rows)} figures, {sum(r.met is True for r in rep.rows)} targets met, {len(missed)} missed; "
        f"{elapsed:.1f} s",
        flush=True,
    )
    info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"load average at start {info['loadavg_at_start']}, at end {info['loadavg_at_end']} "
        f"(on a shared machine, other work shows up as noise in both columns alike)"
    )
    payload = {
        "mode": "quick" if args.quick else "full",
        "machine": info,
        "seconds": elapsed,
        "command": "python -m bench" + (" --quick" if args.quick else ""),
        "figures": sorted({r.fig for r in rep.rows}, key=int),
        "rows": [asdict(r) for r in rep.rows],
        "extra": rep.extra,
        "table": text,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"results: {out}")
    return 0


def rows_of(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a results file (for tests and tools)."""
    yield from json.loads(path.read_text())["rows"]
