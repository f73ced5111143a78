"""Request bodies are bounded (TURNOUT_SERVE_MAX_BODY): a declared length over the limit is refused
before a byte is read, and a body without one (chunked) is counted as it arrives."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._wire import Refusal

__all__ = ["BodyLimit", "too_large"]


def too_large(limit: int) -> Refusal:
    """413; the connection closes after it, since the rest of the body is never read."""
    return Refusal(
        413,
        f"The request body is larger than this server accepts ({limit} bytes; TURNOUT_SERVE_MAX_BODY sets the limit).",
        code="request_too_large",
        headers={"connection": "close"},
    )


class BodyLimit:
    """ASGI middleware: refuses a ``Content-Length`` over ``limit`` at once; a handler reading more
    than ``limit`` bytes gets :func:`too_large` raised from ``receive`` (it answers 413)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None:
            if not declared.strip().isdigit():
                await Refusal(400, "Content-Length is not a number.").response()(scope, receive, send)
                return
            if int(declared) > self.limit:
                await too_large(self.limit).response()(scope, receive, send)
                return
        limit = self.limit
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, counted, send)
