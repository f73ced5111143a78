"""What one attempt on one backend runs, and what its refusals mean: shared by every kind of endpoint."""

from __future__ import annotations

import re
from typing import Awaitable, Callable

import httpx2
import openai

from ..adapters import Call
from ._retry import Runner
from ._stream import open_stream

__all__ = ["Op", "sender", "renamed", "refused"]

Op = Callable[[Call], Awaitable[httpx2.Response]]
"""One attempt: the call in, the backend's HTTP answer out (a stream's first event already read)."""


def sender(runner: Runner, stream: bool) -> Op:
    """The backend's ``send``, and for a stream also reading up to its first event."""
    if not stream:
        return runner.adapter.send

    async def open_and_read(call: Call) -> httpx2.Response:
        response = await runner.adapter.send(call)
        return await open_stream(response, runner.name, on_break=runner.broke)

    return open_and_read


def renamed(call: Call, model: str) -> Call:
    """The call with ``model`` as this backend knows it; the body is shared, not copied, when it already is."""
    body = call.body
    if not model or body.get("model") == model:  # "": the request named none; the backend picks its own
        return call
    return Call(call.endpoint, call.options.model_copy(update={"json_data": {**body, "model": model}}), call.stream,
                call.max_retries)


_REFUSAL = re.compile(r"not (be )?supported|unsupported|does not support|not implemented|unknown (url|route|endpoint)"
                      r"|no route|not found|unrecognized request", re.I)


def refused(err: openai.APIError) -> bool:
    """Did a backend say it cannot do this at all (rather than that this request is wrong)?"""
    status = getattr(err, "status_code", None)
    if status in (404, 405, 501):
        return True
    return status in (400, 422) and bool(_REFUSAL.search(getattr(err, "message", "") or ""))
