"""Figure 11: ``responses.create`` bridged to a chat-only backend, vs a direct chat completion on the same server.

The raw side is the plain ``openai.AsyncOpenAI`` calling ``chat.completions``
with the messages the bridge sends for ``input="ping"`` (one user message).
The bridged side is ``turnout.AsyncOpenAI(...).responses.create(model,
input="ping")`` over one backend whose capabilities say ``responses=False``,
so it is bridged at once, never asked natively first. Both reach the same
server, which answers the same chat completion (or the same 200-chunk chat
stream) to both; the difference is turnout's router plus the bridge: the
request as a chat body, the answer as a Response (or as the Responses API's
events), and the conversation kept for a follow-up (``store`` defaults to
true, as in the API).

A third column, turnout's own ``chat.completions.create`` on the same
backend, splits the cost into routing (figure 1's) and the bridge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import harness as h
from bench.server import STREAM_CHUNKS
from turnout import Backend, OpenAICompatAdapter
from turnout.adapters import Capabilities

INPUT = "ping"  # the bridge sends it as [{"role": "user", "content": "ping"}], which is run.MESSAGES
STREAM_EVENTS = 206  # created, in_progress, item and part added, 198 deltas, text/part/item done, completed


async def fig_responses(srv: Any, n: Any, rep: Any) -> None:
    """11. Bridged responses.create vs a direct chat completion: p50, p99, CPU per request; a streamed pair."""

    assert [{"role": "user", "content": INPUT}] == h.MESSAGES
    chat_only = Capabilities.unknown().replace(responses=False)
    raw = h.raw_async(srv.ok)
    tout = h.routed(
        Backend(OpenAICompatAdapter("a", base_url=srv.ok, api_key=h.KEY, timeout=h.TIMEOUT, capabilities=chat_only))
    )
    try:
        await _plain(raw, tout, n, rep, h)
        await _streamed(raw, tout, n, rep, h)
    finally:
        await asyncio.gather(raw.close(), tout.close())


async def _plain(raw: Any, tout: Any, n: Any, rep: Any, h: Any) -> None:
    async def bridged() -> Any:
        return await tout.responses.create(model=h.MODEL, input=INPUT)

    answer = await bridged()
    assert answer.output_text == "pong" and answer.status == "completed", answer  # bridged, not refused

    cpu: dict[str, list[float]] = {}
    s = await h.interleaved(
        {"raw": h.chat_call(raw), "chat": h.chat_call(tout), "bridged": bridged}, n.latency_rounds, n.warmup, cpu
    )
    for q, label, target in ((0.5, "p50", "≤ 1.10"), (0.99, "p99", "")):
        rep.add(
            "11",
            f"responses.create bridged to chat vs chat direct, latency {label}",
            "ms",
            h.ms(h.pct(s["raw"], q)),
            h.ms(h.pct(s["bridged"], q)),
            target=target,
            ok=(lambda r: r <= 1.10) if target else None,
        )
    rep.add(
        "11",
        "responses.create bridged vs turnout's own chat.completions, latency p50",
        "ms",
        h.ms(h.pct(s["chat"], 0.5)),
        h.ms(h.pct(s["bridged"], 0.5)),
        note="raw column: turnout chat; the bridge's own share",
    )
    cpu_ms = {k: h.ms(h.pct(v, 0.5)) for k, v in cpu.items()}
    rep.add(
        "11",
        "responses.create bridged vs chat direct, client CPU per request, median",
        "ms",
        cpu_ms["raw"],
        cpu_ms["bridged"],
        note=f"turnout chat: {cpu_ms['chat']:.3f} ms",
    )
    rep.extra["responses_cpu_p50_ms"] = cpu_ms


def _timed_stream(
    start_stream: Callable[[], Awaitable[Any]], expected: int, firsts: list[float]
) -> Callable[[], Awaitable[int]]:
    """A whole stream read to its end; the time to its first chunk or event goes to ``firsts``."""
    clock = time.perf_counter

    async def call() -> int:
        start = clock()
        stream = await start_stream()
        count = 0
        async for _ in stream:
            if not count:
                firsts.append(clock() - start)
            count += 1
        assert count == expected, count
        return count

    return call


async def _streamed(raw: Any, tout: Any, n: Any, rep: Any, h: Any) -> None:
    firsts: dict[str, list[float]] = {"raw": [], "bridged": []}
    calls = {
        "raw": _timed_stream(
            lambda: raw.chat.completions.create(model=h.MODEL, messages=h.MESSAGES, stream=True),
            STREAM_CHUNKS,
            firsts["raw"],
        ),
        "bridged": _timed_stream(
            lambda: tout.responses.create(model=h.MODEL, input=INPUT, stream=True), STREAM_EVENTS, firsts["bridged"]
        ),
    }
    warmup = max(3, n.warmup // 10)
    cpu: dict[str, list[float]] = {}
    totals = await h.interleaved(calls, n.stream_rounds, warmup, cpu)
    first = {k: v[warmup:] for k, v in firsts.items()}  # the warm-up's firsts are not samples
    rep.add(
        "11",
        "stream: time to first chunk (raw) / first event (bridged), p50",
        "ms",
        h.ms(h.pct(first["raw"], 0.5)),
        h.ms(h.pct(first["bridged"], 0.5)),
    )
    rep.add(
        "11",
        f"stream: {STREAM_CHUNKS} chat chunks / {STREAM_EVENTS} Responses events, whole, p50",
        "ms",
        h.ms(h.pct(totals["raw"], 0.5)),
        h.ms(h.pct(totals["bridged"], 0.5)),
    )
    rep.add(
        "11",
        "stream, whole: client CPU per stream, median",
        "ms",
        h.ms(h.pct(cpu["raw"], 0.5)),
        h.ms(h.pct(cpu["bridged"], 0.5)),
    )
