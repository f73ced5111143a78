"""What a failure means for routing, in one place.

The contract this table keeps (the project's design notes, "Errors the router acts on"): retry what
is transient, fail over what is this backend's problem, raise a bad request at once; when every
candidate fails, the caller gets one exception of the fitting openai class carrying each backend's error.

| what happened                              | retry this backend | then fail over |
| connection refused/reset, timeout          | yes                | yes            |
| 429, 408, 409, 5xx, a malformed answer     | yes                | yes            |
| 401, 402, 403 (this backend is misconfigured) | no              | yes, cool down |
| 404 and other 4xx (this backend can't)     | no                 | yes            |
| context length exceeded                    | no                 | yes            |
| a backend refuses what it cannot do (code "unsupported_by_backend") | no | yes        |
| 400/422: the request itself is bad         | no                 | no: raise      |
| the router's own 429 (code "rate_limited_by_turnout"): no room in a rate window | no | yes |
"""

from __future__ import annotations

import email.utils
import enum
import time

import openai

from .._errors import RATE_LIMITED, UNSUPPORTED

__all__ = ["Verdict", "classify", "retry_after"]


class Verdict(enum.Enum):
    RETRY = "retry"  # retry this backend, then fail over
    FAILOVER = "failover"  # next backend, no retry here
    COOL = "cool"  # next backend, and cool this one down now
    RAISE = "raise"  # the request is bad: no backend will do better


_RETRY_STATUS = frozenset({408, 409, 429})
_COOL_STATUS = frozenset({401, 402, 403})
_BAD_REQUEST_STATUS = frozenset({400, 422})
_CONTEXT_HINTS = (
    "context length", "context_length", "maximum context", "context window", "too many tokens",
    "prompt is too long", "reduce the length", "exceeds the model's",
)


def classify(err: BaseException) -> Verdict:
    """The verdict for one failure; anything that is not an openai error is raised."""
    if isinstance(err, openai.APIConnectionError):  # timeouts and broken streams included
        return Verdict.RETRY
    if isinstance(err, openai.APIStatusError):
        return _classify_status(err)
    if isinstance(err, openai.APIError):  # malformed answers, error events in a stream
        return Verdict.RETRY
    return Verdict.RAISE


def _classify_status(err: openai.APIStatusError) -> Verdict:
    status = err.status_code
    if err.code == RATE_LIMITED:  # raised here, before sending: nothing to retry, nobody to blame
        return Verdict.FAILOVER
    if status >= 500 or status in _RETRY_STATUS:
        return Verdict.RETRY
    if err.code == UNSUPPORTED or _is_context_length(err):
        return Verdict.FAILOVER
    if status in _BAD_REQUEST_STATUS:
        return Verdict.RAISE
    if status in _COOL_STATUS:
        return Verdict.COOL
    return Verdict.FAILOVER


def _is_context_length(err: openai.APIStatusError) -> bool:
    if err.code == "context_length_exceeded" or err.status_code == 413:
        return True
    text = err.message.lower()
    return any(hint in text for hint in _CONTEXT_HINTS)


def retry_after(err: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After``), if any."""
    response = getattr(err, "response", None)
    if response is None or getattr(err, "status_code", None) not in (429, 503):
        return None
    headers = response.headers
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # an HTTP date
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
