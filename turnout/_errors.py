"""turnout's own exceptions.

Backends fail with the openai SDK's own exception classes, whatever protocol
they speak, so existing ``except openai.APIError`` code keeps working. turnout
adds only what the SDK has no word for:

    TurnoutError
    ├── ConfigError (also ValueError)        bad configuration, raised at construction
    ├── BrokenStreamError (also openai.APIConnectionError)
    │                                         a stream ended before it was complete
    └── AllBackendsFailedError               every candidate failed; each instance is
                                              also the openai class of the decisive failure
"""

from __future__ import annotations

import re
from typing import Mapping, TypeVar

import httpx2
import openai

_E = TypeVar("_E", bound=openai.APIStatusError)

UNSUPPORTED = "unsupported_by_backend"
"""The ``code`` of a 400 an adapter raises, before sending, for what its backend cannot do:
another backend may, so the router fails over on it instead of raising."""

RATE_LIMITED = "rate_limited_by_turnout"
"""The ``code`` of the 429 the router raises itself, before sending, when rate limits leave no room:
the backend is not at fault (no breaker counts it), and every other candidate may still be tried."""

__all__ = [
    "TurnoutError",
    "ConfigError",
    "BrokenStreamError",
    "AllBackendsFailedError",
    "status_error",
    "refused",
    "malformed_response",
    "describe",
]


class TurnoutError(Exception):
    """Base of every exception turnout defines."""


class ConfigError(TurnoutError, ValueError):
    """The configuration cannot work: names the variable, the value (masked) and what is accepted."""


class BrokenStreamError(TurnoutError, openai.APIConnectionError):
    """A stream stopped before its end: the connection dropped or the server gave up.

    ``chunks`` counts the chunks delivered before the break; once any were
    delivered the router raises this instead of replaying on another backend.
    """

    def __init__(self, message: str, *, request: httpx2.Request, chunks: int = 0) -> None:
        super().__init__(message=message, request=request)
        self.chunks = chunks


class AllBackendsFailedError(TurnoutError):
    """Every candidate backend failed.

    Each instance is also an instance of the openai class of the decisive (last)
    failure, so ``except openai.RateLimitError`` keeps working; ``errors``
    holds every backend's own error, by backend name.
    """

    errors: dict[str, BaseException]

    @classmethod
    def combine(cls, errors: Mapping[str, BaseException], decisive: BaseException) -> AllBackendsFailedError:
        combined = _combined_class(type(decisive))
        err: AllBackendsFailedError = combined.__new__(combined)  # type: ignore[call-overload]
        err.__dict__.update(decisive.__dict__)
        message = _summary(errors) if errors else str(decisive)
        Exception.__init__(err, message)
        err.message = message  # type: ignore[attr-defined]
        err.errors = dict(errors)
        err.__cause__ = decisive
        return err


_COMBINED: dict[type, type] = {}


def _combined_class(base: type) -> type:
    """``AllBackendsFailedError`` mixed into ``base``, keeping ``base``'s name so logs read as the SDK's."""
    if base not in _COMBINED:
        _COMBINED[base] = type(
            base.__name__, (AllBackendsFailedError, base), {"__module__": "turnout", "__qualname__": base.__qualname__}
        )
    return _COMBINED[base]


def _summary(errors: Mapping[str, BaseException]) -> str:
    parts = [f"{name}: {describe(err)}" for name, err in errors.items()]
    return f"all {len(errors)} backend(s) failed; " + "; ".join(parts)


def describe(err: BaseException) -> str:
    """``ClassName 503: message``: one line naming what failed, for logs and summaries."""
    status = getattr(err, "status_code", None)
    body = getattr(err, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):  # the server's own words, on every SDK version
        message = body["message"]
    else:
        message = getattr(err, "message", None) or str(err)
    if status:
        message = message.removeprefix(f"Error code: {status} - ")
        return f"{type(err).__name__} {status}: {message}"
    return f"{type(err).__name__}: {message}"


def status_error(
    cls: type[_E],
    status: int,
    message: str,
    *,
    url: str = "turnout://router",
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
) -> _E:
    """An openai status error for a failure turnout detects itself, shaped like the SDK's own."""
    request = httpx2.Request("POST", url)
    response = httpx2.Response(status, request=request, headers=dict(headers or {}))
    body = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return cls(message, response=response, body=body)


def malformed_response(backend: str, url: str, err: BaseException) -> openai.APIResponseValidationError:
    """A 200 whose body the SDK could not read: the openai class for it, naming the backend.

    Retried like a server fault: the next answer may well be whole."""
    response = httpx2.Response(200, request=httpx2.Request("POST", url))
    message = f"backend {backend!r} sent a malformed response: {type(err).__name__}: {err}"
    return openai.APIResponseValidationError(response, None, message=message)


def synthetic_request(url: str = "turnout://router") -> httpx2.Request:
    """The request object openai's connection errors require, for failures turnout detects itself."""
    return httpx2.Request("POST", url)


_REFUSAL = re.compile(
    r"not (be )?supported|unsupported|does not support|not implemented|unknown (url|route|endpoint)"
    r"|no route|not found|unrecognized request",
    re.I,
)


def refused(err: openai.APIError) -> bool:
    """Did a backend say it cannot do this at all (rather than that this request is wrong)?"""
    status = getattr(err, "status_code", None)
    if status in (404, 405, 501):
        return True
    return status in (400, 422) and bool(_REFUSAL.search(getattr(err, "message", "") or ""))
