"""The bridge on the wire: a Responses call as a chat call, and the chat answer as the Responses answer.

The answer keeps the backend's request id, so a bridged request can still be
traced at the backend; its ``request`` is the chat request actually sent.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import httpx2
import openai

from ..._sdk import SSEDecoder
from ...adapters import Call, Endpoint, made_response
from ._answer import to_response
from ._events import response_events, sse

__all__ = ["chat_call", "answer", "event_stream"]

CHAT = Endpoint("chat")

Keep = Callable[[dict[str, Any]], Awaitable[None]]
"""Called with the finished Response object, before the caller sees it finish (so a follow-up finds it)."""


def chat_call(call: Call, chat_body: dict[str, Any]) -> Call:
    """The chat completion request that serves the Responses ``call``."""
    options = call.options.model_copy(update={"url": "/chat/completions", "json_data": chat_body})
    return Call(CHAT, options, call.stream, call.max_retries)


async def answer(chat: httpx2.Response, call: Call, response_id: str, keep: Keep) -> httpx2.Response:
    """A read chat completion as the Response object."""
    response = to_response(json.loads(chat.content), call.body, response_id=response_id)
    await keep(response)
    return _reply(chat, content=json.dumps(response).encode())


def event_stream(chat: httpx2.Response, call: Call, response_id: str, keep: Keep) -> httpx2.Response:
    """A chat completion stream (its first event already read) as the Responses API's event stream."""
    return _reply(chat, stream=_Events(chat, call.body, response_id, keep))


def _reply(
    chat: httpx2.Response, *, content: bytes | None = None, stream: httpx2.AsyncByteStream | None = None
) -> httpx2.Response:
    headers = {"content-type": "text/event-stream" if stream is not None else "application/json"}
    for name in ("x-request-id", "request-id"):
        if name in chat.headers:
            headers[name] = chat.headers[name]
    return made_response(chat.status_code, headers, chat.request, content=content, stream=stream)


class _Events(httpx2.AsyncByteStream):
    def __init__(self, chat: httpx2.Response, body: Mapping[str, Any], response_id: str, keep: Keep) -> None:
        self._chat = chat
        self._body = body
        self._id = response_id
        self._keep = keep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for event in response_events(_chunks(self._chat), self._body, response_id=self._id):
            if event["type"] in ("response.completed", "response.incomplete"):
                await self._keep(event["response"])
            yield sse(event)

    async def aclose(self) -> None:
        await self._chat.aclose()


async def _chunks(chat: httpx2.Response) -> AsyncIterator[dict[str, Any]]:
    """The chat stream's chunks; an error event in it is raised, as the SDK's own stream does.

    After ``[DONE]`` the body is read to its end, as the SDK does: a body closed unread costs the
    connection, and the next request a new one."""
    done = False
    async for event in SSEDecoder().aiter_bytes(chat.aiter_bytes()):
        if done or not event.data:
            continue
        if event.data.startswith("[DONE]"):
            done = True
            continue
        data = json.loads(event.data)
        if isinstance(data, dict) and data.get("error"):
            error = data["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise openai.APIError(
                f"the chat stream behind a bridged response failed: {message}", chat.request, body=error
            )
        yield data
