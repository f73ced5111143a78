"""What every answer of ``turnout serve`` shares: the ``x-turnout-backend`` header and the OpenAI error shape.

Callers are OpenAI clients (the SDKs, curl scripts, Open WebUI), so every
failure, whether the server refuses a request itself or every backend
failed, is answered as OpenAI answers one: a status and
``{"error": {"message", "type", "param", "code"}}``; never a traceback.
"""

from __future__ import annotations

import json
from typing import Callable, Mapping

import openai
from starlette.responses import Response

from .._errors import AllBackendsFailedError
from ..client import BACKEND_HEADER

__all__ = ["BACKEND_HEADER", "NO_BACKEND", "Refusal", "error_response", "answer_for"]

NO_BACKEND = "-"
"""``x-turnout-backend`` of an answer no single backend gave (an error, the aggregated model list)."""

_BACKEND_CREDENTIALS = frozenset({401, 402, 403})
"""A backend refusing turnout's own key or account is the server's problem, not the caller's: answered 502."""

_RELAYED_HEADERS = ("retry-after", "retry-after-ms")


class Refusal(Exception):
    """A request the server refuses itself (bad input, no key): the status and OpenAI error fields to answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return error_response(
            self.status, self.message, kind=self.kind, param=self.param, code=self.code, headers=self.headers
        )


def error_response(
    status: int,
    message: str,
    *,
    kind: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    backend: str = NO_BACKEND,
) -> Response:
    kind = kind or ("server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**(headers or {}), BACKEND_HEADER: backend},
    )


def answer_for(err: Exception, scrub: Callable[[str], str]) -> Response | None:
    """The answer to a failure the server knows (a refusal, an openai error), or ``None`` for a bug."""
    if isinstance(err, Refusal):
        return err.response()
    if isinstance(err, openai.APITimeoutError):  # before APIConnectionError: it is one
        return error_response(504, scrub(_message(err)), code="backend_timeout")
    if isinstance(err, openai.APIConnectionError):
        return error_response(502, scrub(_message(err)), code="backend_unreachable")
    if isinstance(err, openai.APIStatusError):
        body = err.body if isinstance(err.body, dict) else {}
        status = err.status_code
        if status in _BACKEND_CREDENTIALS or status < 400:
            status = 502
        headers = {k: err.response.headers[k] for k in _RELAYED_HEADERS if k in err.response.headers}
        return error_response(
            status,
            scrub(_message(err)),
            kind=_text(body.get("type")),
            param=_text(body.get("param")),
            code=_text(body.get("code")),
            headers=headers,
        )
    if isinstance(err, openai.APIError):  # a malformed answer, an error event opening a stream
        return error_response(502, scrub(_message(err)), code="backend_error")
    return None


def _message(err: openai.APIError) -> str:
    """The backend's own words (its body's ``message``), or turnout's summary naming every backend's failure."""
    body = err.body if isinstance(err.body, dict) else {}
    message = body.get("message")
    if isinstance(err, AllBackendsFailedError) or not isinstance(message, str):
        return str(err)
    return message


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
