"""``turnout chat``: one prompt through turnout's client, exactly as an application's request would go.

The answer goes to stdout and nothing else does, so ``turnout chat ... > file``
keeps only the answer; ``-v`` reports the walk (attempts, retries with their
waits, failovers, who served) on stderr through the Router's ``on_event`` hook.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any, cast

from .. import RouterEvent
from ..client import AsyncOpenAI, served_by
from ..settings import ResolvedBackend, ResolvedConfig, build_router
from .common import UsageError, describe, load, ranked, run, show_log
from .probe import first_listed_model


def main(args: argparse.Namespace) -> int:
    if args.verbose >= 2:
        show_log(verbose=True)  # the Router's own reasons too: a skipped retry, a spent budget, a cooldown
    config = load()  # before reading stdin: a broken setup should not wait for a prompt it cannot send
    prompt = args.prompt if args.prompt is not None else _read_stdin()
    if not prompt.strip():
        raise UsageError("empty prompt: give one as an argument or on stdin")
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": prompt}
    ]
    run(_chat(config, args, messages))
    return 0


async def _chat(config: ResolvedConfig, args: argparse.Namespace, messages: list[dict[str, str]]) -> None:
    say = _Narrator(args.verbose > 0)
    model = args.model or await _default_model(ranked(config), say)
    start = time.perf_counter()
    async with AsyncOpenAI(router=build_router(config, on_event=say.event if say.on else None)) as client:
        if args.stream:
            stream = await client.chat.completions.create(model=model, messages=cast(Any, messages), stream=True)
            async with stream:
                ended_with_newline = True
                async for chunk in stream:
                    text = chunk.choices[0].delta.content if chunk.choices else None
                    if text:
                        sys.stdout.write(text)
                        sys.stdout.flush()
                        ended_with_newline = text.endswith("\n")
            if not ended_with_newline:
                sys.stdout.write("\n")
            backend = served_by(stream)
        else:
            reply = await client.chat.completions.create(model=model, messages=cast(Any, messages))
            text = reply.choices[0].message.content or ""
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            backend = served_by(reply)
    sys.stdout.flush()
    say(f"served by {backend} in {time.perf_counter() - start:.2f}s")


async def _default_model(backends: list[ResolvedBackend], say: _Narrator) -> str:
    """The first alias in the first backend's MODELS; else the first model the best-ranked backend lists."""
    first = backends[0]
    if first.models.value:
        model: str = next(iter(first.models.value))
        say(f"model {model!r} (no --model: the first alias in {first.name}'s MODELS)")
        return model
    model, owner = await first_listed_model(backends)
    say(f"model {model!r} (no --model: the first model {owner} lists)")
    return model


class _Narrator:
    """``-v``: one stderr line per router event, attempts numbered per backend."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.attempts: Counter[str] = Counter()

    def __call__(self, message: str) -> None:
        if self.on:
            sys.stderr.write(f"turnout: {message}\n")
            sys.stderr.flush()

    async def event(self, event: RouterEvent) -> None:
        error = describe(event.error) if event.error is not None else ""
        if event.kind == "attempt":
            self.attempts[event.backend] += 1
            self(f"{event.backend}: attempt {self.attempts[event.backend]}")
        elif event.kind == "retry":
            self(f"{event.backend}: {error}; retrying in {event.wait or 0:.2f}s")
        elif event.kind == "failure":
            self(f"{event.backend}: failed: {error}")
        elif event.kind == "failover":
            self(f"failing over from {event.backend} to {event.to}")
        elif event.kind == "hedge":
            self(f"{event.backend} is slow: hedging on {event.to}")


def _read_stdin() -> str:
    if sys.stdin.isatty():
        sys.stderr.write("turnout: type the prompt, then Ctrl-D\n")
    return sys.stdin.read().rstrip()  # a file's or echo's final newline is not part of the prompt
