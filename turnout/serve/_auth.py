"""Who may use the server: ``Authorization: Bearer <key>`` against TURNOUT_SERVE_API_KEYS.

Checked before anything else, so a caller without a key cannot make the
server read a large body or reach a backend. Keys are compared in constant
time, each one, so neither a key's content nor which key matched shows in
the timing. The caller's key is never forwarded: backends get their own.
"""

from __future__ import annotations

import hmac
from typing import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from ._wire import error_response

__all__ = ["BearerAuth", "OPEN_PATHS"]

OPEN_PATHS = frozenset({"/health"})
"""Liveness answers without a key: it says nothing but "up"."""

_CHALLENGE = {"www-authenticate": "Bearer"}


class BearerAuth:
    """ASGI middleware: with keys configured, every path but ``open_paths`` needs one of them."""

    def __init__(self, app: ASGIApp, keys: Sequence[str], open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        token = _bearer(scope["headers"])
        if token is None:
            refusal = error_response(
                401,
                "You didn't provide an API key: send it as an Authorization header, `Authorization: Bearer YOUR_KEY`.",
                headers=_CHALLENGE,
            )
        elif not self._known(token):
            refusal = error_response(401, "Incorrect API key provided.", code="invalid_api_key", headers=_CHALLENGE)
        else:
            await self.app(scope, receive, send)
            return
        await refusal(scope, receive, send)

    def _known(self, token: bytes) -> bool:
        matched = False
        for key in self.keys:  # every key, always: no early exit to time
            matched |= hmac.compare_digest(token, key)
        return matched


def _bearer(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" and token.strip() else None
    return None
