"""Rate limits: a request's tokens before and after, the limits providers announce, and the 429 we raise.

**Tokens before the call** are estimated from the request's size: every string
in the body (message texts, tool definitions, embedding inputs) counts one
token per 4 characters (OpenAI's rule of thumb for English), a ``data:`` URL
(an inline image or file) counts 1,000, each message 4 more for its framing,
plus the completion the request allows (``max_tokens``,
``max_completion_tokens`` or ``max_output_tokens``, times ``n``; each a
whole number, at most ``MAX_COMPLETION`` and ``MAX_CHOICES``: a negative or
odd value counts 0, so no request can shrink a window). A request counts at
most a whole window (its TPM). One refused with a 4xx before it produced
tokens gives its estimate back. OpenAI
counts a request against its TPM in much the same way, before it runs.
**After the call** the answer's ``usage.total_tokens`` replaces the estimate
in the window (for a stream, from its usage event, when the caller asked for
one with ``stream_options``).

**Providers' headers.** Once a provider says a limit is used up, the backend
is skipped until it resets, in every process that shares the state:

| provider   | remaining                                     | reset                                           |
|------------|-----------------------------------------------|-------------------------------------------------|
| OpenAI     | x-ratelimit-remaining-requests / -tokens      | x-ratelimit-reset-requests / -tokens: ``6m0s``  |
| Groq       | the same names                                | the same form (``2m59.56s``, ``7.66s``)         |
| OpenRouter | x-ratelimit-remaining                         | x-ratelimit-reset: Unix time in milliseconds    |
| Together   | x-ratelimit-remaining, x-tokenlimit-remaining | x-ratelimit-reset: seconds from now             |

A reset that is missing counts as ``Retry-After``, else one second.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Optional

import httpx2
import openai

from .._errors import RATE_LIMITED, status_error

__all__ = [
    "MAX_WAIT",
    "estimate_tokens",
    "tokens_used",
    "count_stream",
    "provider_limit",
    "reset_seconds",
    "rate_limited",
    "retry_refused",
    "limit_text",
]

MAX_WAIT = 60.0
"""Without a deadline, the longest a request waits for room when every candidate is at a rate limit."""

CHARS_PER_TOKEN = 4
DATA_URL_TOKENS = 1000
MESSAGE_TOKENS = 4
MAX_COMPLETION = 1_000_000
"""The most completion tokens one request is counted for: more than any model writes in one answer."""
MAX_CHOICES = 128
"""The most choices (``n``) one request is counted for: OpenAI's own maximum."""
_COMPLETION_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """What a request will count against a TPM window, before it is sent (see the module's docstring)."""
    chars = 0
    extra = 0
    stack: list[Any] = [v for k, v in body.items() if k != "model"]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item.startswith("data:"):
                extra += DATA_URL_TOKENS
            else:
                chars += len(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    messages = body.get("messages") or body.get("input")
    if isinstance(messages, list):
        extra += MESSAGE_TOKENS * len(messages)
    completion = next((_whole(body[k], MAX_COMPLETION) for k in _COMPLETION_KEYS if _whole(body.get(k), 1)), 0)
    completion *= _whole(body.get("n"), MAX_CHOICES) or 1
    return math.ceil(chars / CHARS_PER_TOKEN) + extra + completion


def _whole(value: Any, most: int) -> int:
    """A count the caller sent, as the windows may take it: a whole number from 0 to ``most``; anything
    else (negative, a float, ``True``) is 0, so no value can shrink a window or fill it for ever."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(0, min(value, most))


_TOTAL = re.compile(rb'"total_tokens"\s*:\s*(\d+)')
_PARTS = re.compile(rb'"(?:prompt|input|completion|output)_tokens"\s*:\s*(\d+)')


def tokens_used(body: bytes) -> Optional[int]:
    """``usage.total_tokens`` of an answer (or its input plus output tokens), found without parsing it whole."""
    at = body.rfind(b'"usage"')
    if at < 0:
        return None
    tail = body[at:]
    found = _TOTAL.search(tail)
    if found is not None:
        return int(found.group(1))
    parts = _PARTS.findall(tail)
    return sum(int(p) for p in parts[:2]) if parts else None


class _Counted(httpx2.AsyncByteStream):
    """A stream passed through as it is, reading its usage event on the way (the SDK stops reading at
    ``[DONE]``, so the end of the stream is never a place to wait for)."""

    def __init__(self, source: httpx2.AsyncByteStream, on_usage: Callable[[int], Awaitable[None]]) -> None:
        self._source = source
        self._on_usage: Optional[Callable[[int], Awaitable[None]]] = on_usage

    async def __aiter__(self) -> AsyncIterator[bytes]:
        tail = b""
        async for chunk in self._source:
            if self._on_usage is not None:
                tail = (tail + chunk)[-4096:]
                used = tokens_used(tail) if b'"total_tokens"' in tail else None
                if used is not None:
                    on_usage, self._on_usage = self._on_usage, None
                    await on_usage(used)
            yield chunk

    async def aclose(self) -> None:
        await self._source.aclose()


def count_stream(response: httpx2.Response, on_usage: Callable[[int], Awaitable[None]]) -> httpx2.Response:
    """``response`` whose stream reports the tokens its usage event names, as the event passes."""
    response.stream = _Counted(response.stream, on_usage)  # type: ignore[arg-type]
    return response


# -- what providers say -------------------------------------------------------------------------
_LIMITS: tuple[tuple[str, tuple[str, ...], str], ...] = (  # remaining, resets to read, what it counts
    ("x-ratelimit-remaining-requests", ("x-ratelimit-reset-requests",), "requests"),  # OpenAI, Groq
    ("x-ratelimit-remaining-tokens", ("x-ratelimit-reset-tokens",), "tokens"),  # OpenAI, Groq
    ("x-ratelimit-remaining", ("x-ratelimit-reset",), "requests"),  # OpenRouter, Together
    ("x-tokenlimit-remaining", ("x-tokenlimit-reset", "x-ratelimit-reset"), "tokens"),  # Together
)
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_SCALE = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
DEFAULT_RESET = 1.0


def provider_limit(headers: httpx2.Headers) -> Optional[tuple[str, float]]:
    """The limit a provider says is used up (``"requests"`` or ``"tokens"``) and the seconds until it
    resets; ``None`` while every limit it reports has room (the usual answer: one pass over the headers)."""
    for name, raw in headers.raw:
        if b"remaining" in name.lower() and _used_up(raw):
            break
    else:
        return None
    found: Optional[tuple[str, float]] = None
    for remaining, resets, what in _LIMITS:
        value = headers.get(remaining)
        if value is None or not _used_up(value):
            continue
        seconds = next((s for s in (reset_seconds(headers.get(r)) for r in resets) if s is not None), None)
        if seconds is None:
            seconds = reset_seconds(headers.get("retry-after")) or DEFAULT_RESET
        if found is None or seconds > found[1]:
            found = (what, seconds)
    return found


def _used_up(value: str | bytes) -> bool:
    try:
        return float(value) <= 0
    except ValueError:
        return False


def reset_seconds(value: Optional[str]) -> Optional[float]:
    """Seconds until a reset, from any form providers send: a Go duration (``6m0s``, ``1.5s``, ``20ms``),
    seconds from now (``12``), a Unix time in seconds or milliseconds, or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return _duration(text)
    if number > 1e12:  # Unix milliseconds (OpenRouter)
        return max(0.0, number / 1000 - time.time())
    if number > 1e9:  # Unix seconds
        return max(0.0, number - time.time())
    return max(0.0, number)


def _duration(text: str) -> Optional[float]:
    compact = text.replace(" ", "")
    parts = _DURATION.findall(compact)
    if parts and "".join(n + u for n, u in parts) == compact:
        return sum(float(n) * _SCALE[u] for n, u in parts)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(text).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


# -- when every candidate is full ------------------------------------------------------------------
def rate_limited(held: Iterable[tuple[str, str, float]]) -> openai.RateLimitError:
    """The 429 for a request no candidate had room for: each backend, the limit it hit (``limit_text``)
    and when it frees up."""
    held = list(held)
    parts = [f"{name}: {text} (room in {_seconds_text(wait)})" for name, text, wait in held]
    soonest = min((wait for _, _, wait in held), default=1.0)
    return status_error(
        openai.RateLimitError,
        429,
        "every candidate backend is at a rate limit: " + "; ".join(parts),
        headers={"retry-after": str(max(1, math.ceil(soonest)))},
        code=RATE_LIMITED,
    )


def retry_refused(name: str, text: str, wait: float) -> openai.RateLimitError:
    """A retry the windows have no room for: this backend is given up on, not blamed."""
    return status_error(
        openai.RateLimitError,
        429,
        f"backend {name!r}: no room for a retry: {text} (room in {_seconds_text(wait)})",
        code=RATE_LIMITED,
    )


def limit_text(why: str, rpm: Optional[int], tpm: Optional[int]) -> str:
    """What held a request back, in words: ``RPM 60``, ``TPM 10000``, or the provider's own limit."""
    if why == "rpm":
        return f"RPM {rpm}"
    if why == "tpm":
        return f"TPM {tpm}"
    return f"the provider's {why} limit"


def _seconds_text(seconds: float) -> str:
    if seconds >= 60:
        return f"{int(seconds // 60)}m{seconds % 60:.0f}s"
    return f"{seconds:.1f}s"
