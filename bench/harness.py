"""What every figure shares: sample sizes, the report, the benchmark server, clients, and the timing loops.

bench/run.py runs the figures; the figure modules (responses, serve, state) import
this module, never run.py, so nothing here imports back.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import openai

import turnout
from turnout import Backend, OpenAICompatAdapter, Router

MODEL = "bench-model"
KEY = "sk-bench"
TIMEOUT = 60.0
MESSAGES = [{"role": "user", "content": "ping"}]
ROOT = Path(__file__).resolve().parent.parent


# -- sizes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """Sample counts: the full run's make the ratios stable; the quick run's only exercise the code."""

    latency_rounds: int = 3000
    warmup: int = 300
    stream_rounds: int = 300
    throughput_requests: int = 1000
    throughput_repeats: int = 10
    failover_rounds: int = 1000
    sync_rounds: int = 3000
    probe_samples: int = 9
    long_rounds: int = 30
    memory_small: int = 2000
    memory_large: int = 20000
    clients: int = 1000


QUICK = Sizes(
    latency_rounds=150,
    warmup=20,
    stream_rounds=10,
    throughput_requests=256,
    throughput_repeats=1,
    failover_rounds=50,
    sync_rounds=150,
    probe_samples=1,
    long_rounds=1,
    memory_small=100,
    memory_large=500,
    clients=60,
)


# -- results -------------------------------------------------------------------


@dataclass
class Row:
    """One figure: the raw SDK's value, turnout's, how they compare, and the target for that comparison."""

    fig: str
    what: str
    unit: str
    raw: Optional[float]
    turnout: Optional[float]
    compare: Optional[float]
    compare_kind: str  # "ratio", "delta" or "value"
    target: str
    met: Optional[bool]
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        fig: str,
        what: str,
        unit: str,
        raw: Optional[float],
        tout: Optional[float],
        *,
        kind: str = "ratio",
        target: str = "",
        ok: Optional[Callable[[float], bool]] = None,
        compare: Optional[float] = None,
        note: str = "",
    ) -> None:
        if compare is None and raw is not None and tout is not None:
            compare = tout / raw if kind == "ratio" else tout - raw
        met = ok(compare) if ok is not None and compare is not None else None
        self.rows.append(Row(fig, what, unit, raw, tout, compare, kind, target, met, note))
        print(
            f"  {fig:<3} {what}: {_fmt(raw)} vs {_fmt(tout)} {unit} -> {_fmt_cmp(compare, kind)} "
            f"{'' if met is None else ('met' if met else 'MISSED')}",
            flush=True,
        )


def _fmt(v: Optional[float]) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"


def _fmt_cmp(v: Optional[float], kind: str) -> str:
    if v is None:
        return "—"
    if kind == "ratio":
        return f"{v:.3f}×"
    if kind == "delta":
        return f"{v:+.3f}" if abs(v) < 10 else f"{v:+.1f}"
    return _fmt(v)


def table(report: Report) -> str:
    lines = [
        "| # | figure | unit | raw SDK | turnout | turnout vs raw | target | met |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in report.rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        what = r.what + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {r.fig} | {what} | {r.unit} | {_fmt(r.raw)} | {_fmt(r.turnout)} | "
            f"{_fmt_cmp(r.compare, r.compare_kind)} | {r.target or '—'} | {met} |"
        )
    return "\n".join(lines)


# -- helpers -------------------------------------------------------------------


def ms(seconds: float) -> float:
    return seconds * 1000.0


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The benchmark server in its own process; it exits when we close its stdin."""

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.server"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        self.ok = f"http://127.0.0.1:{ports['ok']}/v1"
        self.err503 = f"http://127.0.0.1:{ports['err503']}/v1"
        self.refused = f"http://127.0.0.1:{closed_port()}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def raw_async(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=KEY, base_url=url, max_retries=0, timeout=TIMEOUT)


def adapter(name: str, url: str) -> OpenAICompatAdapter:
    return OpenAICompatAdapter(name, base_url=url, api_key=KEY, timeout=TIMEOUT)


def routed(*backends: Backend) -> turnout.AsyncOpenAI:
    return turnout.AsyncOpenAI(router=Router(list(backends)))


def chat_call(client: Any, **extra: Any) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return await client.chat.completions.create(model=MODEL, messages=MESSAGES, **extra)

    return call


async def interleaved(
    variants: dict[str, Callable[[], Awaitable[Any]]],
    rounds: int,
    warmup: int,
    cpu: Optional[dict[str, list[float]]] = None,
) -> dict[str, list[float]]:
    """Per-request seconds for each variant, taking turns request by request, rotating who goes first.

    With ``cpu``, each request's CPU seconds in this process go there too: on a
    loaded machine wall time waits for the CPU, while CPU time is what the
    client itself spent.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            await variants[name]()
    out: dict[str, list[float]] = {n: [] for n in names}
    if cpu is not None:
        cpu.update({n: [] for n in names})
    clock, cpu_clock = time.perf_counter, time.process_time
    for i in range(rounds):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            used = cpu_clock() if cpu is not None else 0.0
            start = clock()
            await variants[name]()
            out[name].append(clock() - start)
            if cpu is not None:
                cpu[name].append(cpu_clock() - used)
    return out


async def hand_failover(primary: openai.AsyncOpenAI, secondary: openai.AsyncOpenAI, **params: Any) -> Any:
    """What a caller writes without turnout: try one client, on a server or connection error the other."""
    try:
        return await primary.chat.completions.create(**params)
    except (openai.APIStatusError, openai.APIConnectionError):
        return await secondary.chat.completions.create(**params)


async def rps(call: Callable[[], Awaitable[Any]], concurrency: int, total: int) -> float:
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)
