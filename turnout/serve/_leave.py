"""A caller that leaves stops the work done for it, at whatever point it leaves.

While the body arrives, before the answer starts (the router still waiting on
a backend, a stream before its first token), or mid-stream: the handler is
cancelled, and with it the upstream request, whose connection closes at
once. The access line says ``client left`` (status 499 when nothing was
sent), never a 500 with a traceback.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
from starlette.types import Message, Receive, Scope, Send

from ._log import NOTE, HttpMiddleware

__all__ = ["ClientLeft"]

_DISCONNECT: Message = {"type": "http.disconnect"}


class ClientLeft(HttpMiddleware):
    """ASGI middleware: watches for the caller's disconnect and cancels the request's handler when it comes.

    Once the body is in, this middleware alone reads ``receive`` (a handler asking again, as a stream
    does to notice a disconnect, waits for the one this middleware saw)."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body_in = anyio.Event()
        if not any(name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"]):
            body_in.set()  # no body to read: the watch starts at once
        gone = anyio.Event()
        started = False

        async with anyio.create_task_group() as group:

            def left() -> None:
                gone.set()
                if not started:  # a started stream notices it itself, and says so in its own note
                    scope[NOTE] = "client left"
                    group.cancel_scope.cancel()

            async def receiving() -> Message:
                if body_in.is_set():
                    await gone.wait()
                    return _DISCONNECT
                message = await receive()
                if message["type"] == "http.disconnect":
                    left()
                    await anyio.lowlevel.checkpoint()  # cancelled here, before the handler can call it an error
                elif not message.get("more_body", False):
                    body_in.set()
                return message

            async def sending(message: Message) -> None:
                nonlocal started
                started = True
                await send(message)

            async def watch() -> None:
                await body_in.wait()
                if (await receive())["type"] == "http.disconnect":
                    left()

            group.start_soon(watch)
            await self.app(scope, receiving, sending)
            group.cancel_scope.cancel()
