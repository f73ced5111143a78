"""Figure 10: ``turnout serve`` between the raw SDK and the benchmark server, vs the raw SDK straight to it.

Both sides are the same plain ``openai.AsyncOpenAI`` (``max_retries=0``), and
the server behind the proxy is the one the raw side talks to, so the
difference is the proxy: one more HTTP hop on loopback, uvicorn and
Starlette, and turnout's client and router in the server process. The
proxy runs as users run it, ``python -m turnout serve``, configured by
environment variables, in its own process; on this 2-core machine it
competes for the CPU with the benchmark process and the benchmark server,
as a sidecar proxy on a small box would.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench import harness as h

READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+/v1)")
START_LIMIT = 60.0


class Proxy:
    """``python -m turnout serve --port 0`` over one backend at ``backend_url``; stopped by SIGTERM."""

    def __init__(self, backend_url: str, key: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
        env.update(
            TURNOUT_BACKENDS="bench",
            TURNOUT_BACKEND__BENCH__PROVIDER="openai_compat",
            TURNOUT_BACKEND__BENCH__BASE_URL=backend_url,
            TURNOUT_BACKEND__BENCH__API_KEY=key,
            TURNOUT_MAX_RETRIES="0",
            TURNOUT_TIMEOUT="60",
        )
        # Its log goes to a file, not a pipe this process drains: a draining thread here waits for the GIL
        # behind the benchmark's own loop, the pipe fills, and the proxy would block on its access log.
        self.log = tempfile.NamedTemporaryFile("w+", prefix="turnout-serve-", suffix=".log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "turnout", "serve", "--port", "0"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            text=True,
        )
        self.url = ""
        self.access_lines = 0
        deadline = time.monotonic() + START_LIMIT
        while not self.url and self.proc.poll() is None and time.monotonic() < deadline:
            match = READY.search(Path(self.log.name).read_text())
            self.url = match.group(1) if match else ""
            time.sleep(0.05)
        if not self.url:
            self.stop()
            raise RuntimeError("turnout serve did not start (is the serve extra installed?)")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.access_lines = sum(" /v1/" in line for line in Path(self.log.name).read_text().splitlines())
            self.log.close()


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("starlette", "uvicorn", "multipart"))


def fig_serve(srv: Any, n: Any, rep: Any) -> None:
    """10. Latency at concurrency 1 (interleaved), a 200-chunk stream, throughput at concurrency 64."""

    if not available():
        print("  10  skipped: turnout serve needs the serve extra (pip install -e '.[serve]')", flush=True)
        return
    proxy = Proxy(srv.ok, h.KEY)
    try:
        asyncio.run(_measure(srv, proxy, n, rep, h))
    finally:
        status = proxy.stop()
    rep.extra["serve"] = {
        "exit_status_on_sigterm": status,
        "access_lines": proxy.access_lines,
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
    }


async def _measure(srv: Any, proxy: Proxy, n: Any, rep: Any, h: Any) -> None:
    raw, served = h.raw_async(srv.ok), h.raw_async(proxy.url)
    try:
        s = await h.interleaved({"raw": h.chat_call(raw), "serve": h.chat_call(served)}, n.latency_rounds, n.warmup)
        p50 = {k: h.ms(h.pct(v, 0.5)) for k, v in s.items()}
        rep.add(
            "10",
            "turnout serve: added latency p50, concurrency 1",
            "ms",
            p50["raw"],
            p50["serve"],
            kind="delta",
            target="≤ +1.0 ms (issue 27; LiteLLM's proxy: 3–12 ms)",
            ok=lambda d: d <= 1.0,
        )
        rep.add(
            "10",
            "turnout serve: latency p99, concurrency 1",
            "ms",
            h.ms(h.pct(s["raw"], 0.99)),
            h.ms(h.pct(s["serve"], 0.99)),
            kind="delta",
        )
        streams = await h.interleaved(
            {"raw": _stream_call(raw, h), "serve": _stream_call(served, h)}, n.stream_rounds, max(3, n.warmup // 10)
        )
        rep.add(
            "10",
            "turnout serve: 200-chunk stream, whole, p50",
            "ms",
            h.ms(h.pct(streams["raw"], 0.5)),
            h.ms(h.pct(streams["serve"], 0.5)),
            kind="delta",
        )
        conc = 64
        calls = {"raw": h.chat_call(raw), "serve": h.chat_call(served)}
        for call in calls.values():  # open the connections first
            await h.rps(call, conc, conc)
        got: dict[str, list[float]] = {"raw": [], "serve": []}
        for i in range(n.throughput_repeats * 2):
            name = ("raw", "serve")[i % 2] if (i // 2) % 2 == 0 else ("serve", "raw")[i % 2]
            got[name].append(await h.rps(calls[name], conc, n.throughput_requests))
        rep.add(
            "10",
            f"turnout serve: throughput, concurrency {conc}",
            "req/s",
            _median(got["raw"]),
            _median(got["serve"]),
            target="≥ 0.85",
            ok=lambda r: r >= 0.85,
            note="one proxy process (one worker) on the same 2 cores",
        )
    finally:
        await asyncio.gather(raw.close(), served.close())


def _stream_call(client: Any, h: Any) -> Callable[[], Any]:
    async def call() -> int:
        stream = await client.chat.completions.create(model=h.MODEL, messages=h.MESSAGES, stream=True)
        count = 0
        async for _ in stream:
            count += 1
        assert count == 200, count
        return count

    return call


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)
