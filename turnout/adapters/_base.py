"""The contract every backend keeps, so the router never asks which kind it holds.

A backend serves a :class:`Call`: one request exactly as the caller's openai
SDK built its options (``json_data`` already in wire form, ``model`` already
renamed to the backend's own name), and answers with an ``httpx2.Response``
in the OpenAI wire format, JSON or SSE. The caller's SDK client parses it, so
every helper of the SDK (``parse``, raw responses, streams) works whatever
served it. Failures are raised as the openai SDK's own exception classes,
whatever protocol the backend speaks.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional, Protocol, runtime_checkable

import httpx2
from openai.types import Model

from .._sdk import FinalRequestOptions

__all__ = [
    "Adapter",
    "Call",
    "Capabilities",
    "Endpoint",
    "Health",
    "Raw",
    "deadline",
    "made_response",
    "remaining",
    "wire_response",
]

deadline: ContextVar[float | None] = ContextVar("turnout_deadline", default=None)
"""The current request's total deadline (``time.monotonic()`` seconds), if it has one: set by the router,
honoured by a backend where the event loop cannot cut an attempt short (a synchronous send)."""


def remaining() -> float | None:
    end = deadline.get()
    return None if end is None else end - time.monotonic()


Flag = Optional[bool]
"""A capability is yes (``True``), no (``False``) or unknown (``None``: tried, after the backends known to have it)."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the router skips backends that lack what a request needs.

    A flag that claims too much turns into a run-time failure on that backend,
    so presets claim only what the provider documents; a generic endpoint says
    ``None`` (unknown) and is tried after the backends known to have it.
    """

    chat: Flag = True
    streaming: Flag = True
    tools: Flag = True
    vision: Flag = False
    embeddings: Flag = False
    json_mode: Flag = True
    json_schema: Flag = False
    audio_transcription: Flag = False
    completions: Flag = False
    moderations: Flag = False
    image_generation: Flag = False
    responses: Flag = False

    def replace(self, **changes: Flag) -> Capabilities:
        """A copy with some flags changed; unknown names raise ``TypeError``."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def unknown(cls) -> Capabilities:
        """A server whose software nobody named: what every OpenAI-compatible server does (chat, streams,
        tools, JSON mode) is yes, the rest unknown."""
        return cls(**{name: None for name in cls.names() if name not in _EVERY_SERVER})


_EVERY_SERVER = frozenset({"chat", "streaming", "tools", "json_mode"})

Mode = Literal["routed", "aggregated", "pinned", "responses", "held", "admin"]


@dataclass(frozen=True)
class Endpoint:
    """One kind of SDK request: how it is routed and the capability flag it needs.

    ``routed``: stateless, tried on every capable backend with failover;
    ``aggregated``: every backend answers and the answers are merged (models);
    ``pinned``: stateful (files, batches, ...), one backend, never failed over;
    ``responses``: routed, natively or through the chat bridge; ``held``: a stored
    response, served by the backend (or the router's state) that made it; ``admin``:
    OpenAI's organization endpoints, pinned to the backend with an admin key.
    ``model_optional``: the SDK lets the caller leave ``model`` out (a moderation, an
    image, a response from a stored prompt): every backend that can serve it is a
    candidate, in priority order, and the backend picks its default model.
    ``streams``: ``"stream": true`` makes its answer server-sent events; ``upload``: its body is a
    multipart form (a file), not JSON.
    """

    name: str
    mode: Mode = "routed"
    need: str | None = None
    model_optional: bool = False
    streams: bool = False
    upload: bool = False


@dataclass(eq=False)
class Raw:
    """A JSON body as the caller sent it (``turnout serve``): ``data``, its bytes; ``body``, what they parse to.

    The bytes go to a backend as they are while ``body`` is still the call's body (no alias renamed its
    model, no bridge rewrote it) and nobody changed it in place (``changed``, set by
    :meth:`~turnout.router.RequestInfo.change`): a body that needs no change is neither decoded again
    nor encoded."""

    data: bytes
    body: dict[str, Any]
    changed: bool = False


@dataclass(frozen=True)
class Call:
    """One request for one backend: the SDK's own options, whether the answer is an SSE stream, the
    caller's own ``max_retries`` for it (``None``: each backend's), and the body's own bytes (``raw``)."""

    endpoint: Endpoint
    options: FinalRequestOptions
    stream: bool = False
    max_retries: int | None = None
    raw: Raw | None = None

    def wire_options(self) -> FinalRequestOptions:
        """The options to send: with the caller's own bytes as the body while they still are the body."""
        raw = self.raw
        if raw is None or raw.changed or self.options.json_data is not raw.body:
            return self.options
        return self.options.model_copy(update={"json_data": None, "content": raw.data})

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body (or the multipart fields), as the SDK built it."""
        data = self.options.json_data
        return data if isinstance(data, dict) else {}

    def requested_model(self) -> str:
        """The request's model; "" where the endpoint lets the caller leave it out (every backend is a candidate)."""
        model = self.body.get("model")
        if isinstance(model, str) and model:
            return model
        if self.endpoint.model_optional:
            return ""
        raise TypeError(f"model is required for {self.endpoint.name}: pass model=..., a model a backend serves")

    def renamed(self, model: str) -> Call:
        """This call with ``model`` as a backend knows it; the body is shared, not copied, when it already is."""
        body = self.body
        if not model or body.get("model") == model:  # "": the request named none; the backend picks its own
            return self
        return Call(
            self.endpoint,
            self.options.model_copy(update={"json_data": {**body, "model": model}}),
            self.stream,
            self.max_retries,
        )


def wire_response(
    call: Call, base_url: str, *, content: bytes | None = None, stream: httpx2.AsyncByteStream | None = None
) -> httpx2.Response:
    """An answer made here (not by an OpenAI server) shaped as one would send it, so the caller's
    SDK parses it like any other: a request id, and the request it answers (raw responses read it)."""
    headers = {
        "content-type": "text/event-stream" if stream is not None else "application/json",
        "x-request-id": f"req_{uuid.uuid4().hex}",
    }
    sent = call.options.headers if isinstance(call.options.headers, Mapping) else {}
    request = httpx2.Request(
        call.options.method.upper(),
        base_url.rstrip("/") + call.options.url,
        headers={k: v for k, v in sent.items() if isinstance(v, str)},
    )
    return made_response(200, headers, request, content=content, stream=stream)


def made_response(
    status: int,
    headers: dict[str, str],
    request: httpx2.Request,
    *,
    content: bytes | None = None,
    stream: httpx2.AsyncByteStream | None = None,
) -> httpx2.Response:
    """An HTTP response for a body in hand (already read, as the SDK expects of a non-streamed answer), or for
    a stream. Built without httpx's read of ``content=`` through its decoders: a sixth of the cost."""
    if stream is not None:
        return httpx2.Response(status, headers=headers, stream=stream, request=request)
    body = content or b""
    response = httpx2.Response(
        status, headers={**headers, "content-length": str(len(body))}, stream=httpx2.ByteStream(body), request=request
    )
    response._content = body  # what read() would set
    return response


@dataclass(frozen=True)
class Health:
    """One health probe's result. ``latency`` is in seconds."""

    up: bool
    latency: float
    models: int | None = None
    error: str | None = None


@runtime_checkable
class Adapter(Protocol):
    """One backend. ``name`` is the configured backend name (unique per router);
    ``base_url`` is where its OpenAI-shaped API lives, for a client to report."""

    name: str
    provider: str
    """Which provider it is: its preset's name (``"openai"``, ``"groq"``, ``"ollama"``), so callers ask this
    rather than guess from the class or its attributes."""
    base_url: str
    timeout: float | None
    """Seconds each attempt may take (``None``: no limit)."""
    capabilities: Capabilities
    inline: bool
    """Whether it can send synchronously on the calling thread (``adapters._inline``), for the sync client."""

    async def send(self, call: Call) -> httpx2.Response:
        """The backend's answer in the OpenAI wire format; for ``call.stream`` the body is not read yet.

        Raises the openai SDK's exceptions for failures (statuses, connection errors).
        """
        ...

    async def list_models(self) -> list[Model]:
        """The models this backend serves, with ``owned_by`` set to the backend's name."""
        ...

    async def health(self) -> Health: ...

    async def aclose(self) -> None: ...
