"""A worker process for tests/state/test_many_processes.py: its own router, clients and Redis connections.

Started with multiprocessing's ``spawn``, it builds a turnout client over the
loopback servers the test runs, with its state in the test's Redis, then
does what the test asks through a queue and answers through another:

    ("chat", {kwargs})               one request (kwargs: of the create call, optional)
                                                       -> ("chat", served_by or "error: ...")
    ("hold", model, n)               n requests started and left running -> ("hold",)
    ("burst", start_at, seconds, n)  n requests at a time from ``start_at`` (time.time()) for ``seconds``
                                                       -> ("burst", {backend: count, "errors": [...]})
    ("loop",)                        one request after another until ``stop`` is set
                                                       -> ("loop", {backend: count, "errors": [...]})
    ("quit",)

Every warning turnout logs is sent as ``("log", message)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

MSG = [{"role": "user", "content": "hi"}]


class _Forward(logging.Handler):
    def __init__(self, replies: Queue) -> None:
        super().__init__(logging.WARNING)
        self.replies = replies

    def emit(self, record: logging.LogRecord) -> None:
        self.replies.put(("log", record.getMessage()))


def main(spec: dict[str, Any], commands: Queue, replies: Queue, stop: Event) -> None:
    logging.getLogger("turnout").addHandler(_Forward(replies))
    asyncio.run(_main(spec, commands, replies, stop))


async def _main(spec: dict[str, Any], commands: Queue, replies: Queue, stop: Event) -> None:
    import turnout
    from turnout.adapters import OpenAICompatAdapter
    from turnout.router import Backend, Router
    from turnout.state import RedisState

    backends = [
        Backend(OpenAICompatAdapter(name, preset="vllm", base_url=url, timeout=10), **knobs)
        for name, url, knobs in spec["backends"]
    ]
    client = turnout.AsyncOpenAI(
        router=Router(
            backends, state=RedisState(spec["redis"], prefix=spec["prefix"], timeout=2), **spec.get("router", {})
        )
    )
    holding: list[asyncio.Future[None]] = []

    async def one(counts: Counter[str], errors: list[str], **kwargs: Any) -> None:
        try:
            reply = await client.chat.completions.create(**{"model": "test-model", "messages": MSG, **kwargs})
        except Exception as err:  # noqa: BLE001 -- reported to the test, which asserts there are none
            errors.append(f"{type(err).__name__}: {err}")
        else:
            counts[turnout.served_by(reply) or "?"] += 1

    replies.put(("ready",))
    while True:
        command = await asyncio.to_thread(commands.get)
        counts: Counter[str] = Counter()
        errors: list[str] = []
        if command[0] == "chat":
            await one(counts, errors, **(command[1] if len(command) > 1 else {}))
            replies.put(("chat", errors[0] if errors else next(iter(counts))))
        elif command[0] == "hold":
            holding.extend(asyncio.ensure_future(one(Counter(), [], model=command[1])) for _ in range(command[2]))
            replies.put(("hold",))
        elif command[0] == "burst":
            _, start_at, seconds, at_once = command
            await asyncio.sleep(max(0.0, start_at - time.time()))
            end = time.monotonic() + seconds

            async def sender() -> None:  # run to its end within this iteration: the loop's names hold still
                while time.monotonic() < end:  # noqa: B023
                    await one(counts, errors)  # noqa: B023

            await asyncio.gather(*(sender() for _ in range(at_once)))
            replies.put(("burst", {**counts, "errors": errors}))
        elif command[0] == "loop":
            while not stop.is_set():
                await one(counts, errors)
                await asyncio.sleep(0.002)
            replies.put(("loop", {**counts, "errors": errors}))
        else:
            break
    await client.close()
