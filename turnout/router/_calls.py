"""What one attempt on one backend runs, and what its refusals mean: shared by every kind of endpoint."""

from __future__ import annotations

import asyncio
import re
from typing import Awaitable, Callable

import httpx2
import openai

from .._errors import synthetic_request
from ..adapters import Call
from ._retry import Runner
from ._stream import open_stream

__all__ = ["Op", "sender", "renamed", "refused"]

Op = Callable[[Call], Awaitable[httpx2.Response]]
"""One attempt: the call in, the backend's HTTP answer out (a stream's first event already read)."""


def sender(runner: Runner, stream: bool) -> Op:
    """The backend's ``send``, and for a stream also reading up to its first real token (within the
    backend's ``first_token_timeout``, if it has one: a timeout like any other, retried and failed over)."""
    if not stream:
        return runner.adapter.send

    async def open_and_read(call: Call) -> httpx2.Response:
        response = await runner.adapter.send(call)
        return await open_stream(response, runner.name, on_break=runner.broke)

    limit = runner.backend.first_token_timeout
    if limit is None:
        return open_and_read

    async def within_first_token_limit(call: Call) -> httpx2.Response:
        try:
            return await asyncio.wait_for(open_and_read(call), limit)
        except asyncio.TimeoutError:
            err = openai.APITimeoutError(request=synthetic_request())
            err.message = f"backend {runner.name!r} sent no first token within {limit:g}s (first_token_timeout)"
            err.args = (err.message,)
            raise err from None

    return within_first_token_limit


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
