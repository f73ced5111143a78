"""A caller that leaves stops the work done for it, at whatever point it leaves.

While the body arrives, before the answer starts (the router still waiting on
a backend, a stream before its first token), or mid-stream: the handler is
cancelled, and with it the upstream request, whose connection closes at
once. The access line says ``client left`` (status 499 when nothing was
sent), never a 500 with a traceback.
"""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from ._log import NOTE, HttpMiddleware

__all__ = ["ClientLeft"]

_DISCONNECT: Message = {"type": "http.disconnect"}


class ClientLeft(HttpMiddleware):
    """ASGI middleware: watches for the caller's disconnect and cancels the request's handler when it comes.

    Once the body is in (at once, for a request without one), this middleware alone reads ``receive``
    and passes on what a handler may ask for: a request without a body's one message, the disconnect
    (a stream asks, to notice it). The handler runs as a task of its own, cancelled the asyncio way:
    an anyio cancel scope cannot tell its own cancellation from ``asyncio.gather``'s (the aggregated
    model list), and let a CancelledError through as an error."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body_in = asyncio.Event()
        bodiless = not any(name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"])
        if bodiless:
            body_in.set()  # no body to read: the watch starts at once, and passes the empty body on
        relayed: asyncio.Queue[Message] = asyncio.Queue()
        started = cancelled = False
        handler: asyncio.Future[None]

        def left() -> None:
            nonlocal cancelled
            relayed.put_nowait(_DISCONNECT)
            if not started:  # a started stream notices it itself, and says so in its own note
                scope[NOTE] = "client left"
                cancelled = True
                handler.cancel()

        async def receiving() -> Message:
            if body_in.is_set():
                message = await relayed.get()
                if message is _DISCONNECT:
                    relayed.put_nowait(_DISCONNECT)  # and for whoever asks next
                return message
            message = await receive()
            if message["type"] == "http.disconnect":
                left()
                await asyncio.sleep(0)  # cancelled here, before the handler can call it an error
            elif not message.get("more_body", False):
                body_in.set()
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        async def watch() -> None:
            await body_in.wait()
            first = bodiless
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    left()
                    return
                if first:  # a request without a body: its one (empty) message, for a handler that asks
                    relayed.put_nowait(message)
                    first = False

        handler = asyncio.ensure_future(self.app(scope, receiving, sending))
        watcher = asyncio.ensure_future(watch())
        try:
            await handler
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not cancelled or (task is not None and getattr(task, "cancelling", lambda: 0)()):
                raise  # not (only) the caller leaving: a shutdown's grace period ran out
        finally:
            watcher.cancel()
