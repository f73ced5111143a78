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
| a content filter refused it (Azure's code "content_filter", ...) | no | only with TURNOUT_FAILOVER_ON_CONTENT_FILTER |
| AWS names throttling (x-amzn-errortype: ThrottlingException, ...), whatever the status | yes | yes |
"""

from __future__ import annotations

import email.utils
import enum
import json
import time

import httpx2
import openai

from .._errors import RATE_LIMITED, UNSUPPORTED, status_error

__all__ = ["Verdict", "classify", "retry_after", "filtered_answer"]


class Verdict(enum.Enum):
    RETRY = "retry"  # retry this backend, then fail over
    FAILOVER = "failover"  # next backend, no retry here
    COOL = "cool"  # next backend, and cool this one down now
    RAISE = "raise"  # the request is bad: no backend will do better
    FILTERED = "filtered"  # a content filter refused it: raised, unless the user opts in to failing over


_RETRY_STATUS = frozenset({408, 409, 429})
_COOL_STATUS = frozenset({401, 402, 403})
_BAD_REQUEST_STATUS = frozenset({400, 422})
_CONTENT_FILTER = frozenset({"content_filter", "content_policy_violation", "responsibleaipolicyviolation"})
_AWS_THROTTLED = frozenset(
    {
        "throttlingexception",
        "toomanyrequestsexception",
        "servicequotaexceededexception",
        "serviceunavailableexception",
        "modelnotreadyexception",
    }
)
_CONTEXT_HINTS = (
    "context length",
    "context_length",
    "maximum context",
    "context window",
    "too many tokens",
    "prompt is too long",
    "reduce the length",
    "exceeds the model's",
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
    if status >= 500 or status in _RETRY_STATUS or _aws_error(err) in _AWS_THROTTLED:
        return Verdict.RETRY
    if _is_content_filter(err):
        return Verdict.FILTERED
    if err.code == UNSUPPORTED or _is_context_length(err):
        return Verdict.FAILOVER
    if status in _BAD_REQUEST_STATUS:
        return Verdict.RAISE
    if status in _COOL_STATUS:
        return Verdict.COOL
    return Verdict.FAILOVER


def _is_content_filter(err: openai.APIStatusError) -> bool:
    """Azure's ``code: content_filter`` (its inner ``ResponsibleAIPolicyViolation``), or the same word as
    another provider's error ``type`` (Anthropic's native error shape puts it there)."""
    body = err.body if isinstance(err.body, dict) else {}
    found = body.get("innererror")
    inner = found if isinstance(found, dict) else {}
    words = (err.code, err.type, inner.get("code"))
    return any(isinstance(w, str) and w.lower() in _CONTENT_FILTER for w in words)


_FILTERED_FINISH = frozenset({"content_filter", "refusal"})


def filtered_answer(backend: str, response: httpx2.Response) -> openai.BadRequestError | None:
    """A whole (not streamed) chat answer whose every choice a content filter stopped: Azure's output
    filter, a model's refusal. As the error it stands for, for the router to fail over on when the user
    opted in; ``None`` for any other answer, read no further than a byte search when it cannot be one."""
    if (
        not response.is_closed
        or b'"finish_reason"' not in response.content
        or not (b"content_filter" in response.content or b"refusal" in response.content)
    ):
        return None
    try:
        choices = json.loads(response.content).get("choices")
    except (ValueError, AttributeError):
        return None
    if not choices or not all(isinstance(c, dict) and c.get("finish_reason") in _FILTERED_FINISH for c in choices):
        return None
    return status_error(
        openai.BadRequestError,
        400,
        f"backend {backend!r}: a content filter stopped the answer",
        url=str(response.request.url),
        code="content_filter",
    )


def _aws_error(err: openai.APIStatusError) -> str:
    """AWS's own error name (``x-amzn-errortype: ThrottlingException:http://...``, or the body's code), lowercased."""
    name = err.response.headers.get("x-amzn-errortype") or (err.code if isinstance(err.code, str) else "")
    return name.split(":", 1)[0].strip().lower()


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
