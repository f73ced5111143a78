"""turnout's clients: the openai SDK's own clients, whose requests a Router serves.

``turnout.AsyncOpenAI`` is an ``openai.AsyncOpenAI`` (and ``turnout.OpenAI``
an ``openai.OpenAI``): the SDK builds every request and parses every answer,
so its whole surface works, helpers and raw responses included. The one
seam is the SDK's ``request()`` method, which every call passes through
(where instrumentation wraps ``request`` on the SDK's classes, the SDK's
own ``request`` runs, for the wrapper to see the user's call once, and
the seam is its send hook): turnout's client hands the request's
options to its Router, which sends
them through the chosen backend's own SDK client and returns that
backend's HTTP response; this client's SDK code parses it. The synchronous
client runs the same async Router on a background loop.

What a library may read off the client is safe to use: ``base_url`` is the
primary backend's address; ``api_key`` is a real key only when the primary
backend is OpenAI itself (at api.openai.com), else a placeholder, so no
library can carry one provider's key to another host.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import urllib.parse
from contextvars import ContextVar
from typing import Any, AsyncIterator, Iterable, Iterator, Mapping, Optional, Type, cast

import httpx2
import openai
from openai import NotGiven

from ._portal import Run, runner
from ._sdk import (
    ASYNC_SDK_REQUEST,
    RAW_RESPONSE_HEADER,
    SYNC_SDK_REQUEST,
    FinalRequestOptions,
    configure_provider,
    is_x509_workload_identity,
    mtls_base_url,
    provider_name,
    resolve_data_residency,
    sdk_copy_arguments,
    share_workload_identity,
)
from .adapters import OpenAICompatAdapter
from .router import Backend, Router
from .telemetry import COST_HEADER

__all__ = ["AsyncOpenAI", "OpenAI", "served_by", "cost_of", "BACKEND_HEADER", "PLACEHOLDER_KEY"]

BACKEND_HEADER = "x-turnout-backend"
"""Set on every answer's HTTP response: the backend that served it."""

PLACEHOLDER_KEY = "turnout-routed"
"""``client.api_key`` where the primary backend is not OpenAI's own host: never a real key."""

_STAND_IN_URL = "http://turnout.invalid/"
_SERVED_BY = "_turnout_backend"
_COST = "_turnout_cost"
_OPENAI_HOST = "api.openai.com"
MAX_RETRIES_NONE = (
    "max_retries cannot be None. If you want to disable retries, pass `0`; if you want unlimited "
    "retries, pass `math.inf` or a very high number; if you want the default behavior, pass "
    "`openai.DEFAULT_MAX_RETRIES`"
)
"""The SDK's own refusal of ``max_retries=None``, word for word."""

_HTTPX_DEFAULT_TIMEOUT = httpx2.Timeout(5.0)
"""httpx's own default: an http_client with any other timeout gives the client its timeout, as in the SDK."""

_BACKEND_ONLY = ("admin_api_key", "workload_identity", "provider", "data_residency")
"""Constructor arguments for the one backend the SDK would talk to, never for the client itself."""
_ALSO_BACKENDS = ("organization", "project")
"""Constructor arguments the client keeps (libraries read them) that its backends need too."""
_NOT_COPIED = (
    "api_key",
    "admin_api_key",
    "workload_identity",
    "provider",
    "organization",
    "project",
    "base_url",
    "websocket_base_url",
    "data_residency",
    "http_client",
)


def served_by(answer: object) -> str | None:
    """The backend that produced ``answer``: a completion, embedding, stream chunk, stream (the
    ``stream()`` helpers' too), raw or HTTP response."""
    return _mark(answer, _SERVED_BY, BACKEND_HEADER)


def cost_of(answer: object) -> float | None:
    """What ``answer`` cost in USD (as :func:`served_by`, any answer or stream); ``None`` where the price
    or the usage is unknown, or a stream's usage has not arrived yet. Needs ``turnout[cost]`` or a set price."""
    value = _mark(answer, _COST, COST_HEADER)
    try:
        return float(value) if value is not None else None
    except ValueError:  # "unknown"
        return None


def _mark(answer: object, key: str, header: str) -> str | None:
    """What turnout marked on an answer, or on the HTTP response it came from."""
    value = getattr(answer, "__dict__", {}).get(key)
    if isinstance(value, str):
        return value
    for holder in (
        answer,
        getattr(answer, "response", None),
        getattr(answer, "http_response", None),
        getattr(answer, "_response", None),
    ):  # the stream helpers keep the SDK stream's response here
        headers = getattr(holder, "headers", None)
        if isinstance(headers, httpx2.Headers):
            return headers.get(header)
    return None


class _Routed:
    """What both clients share: building the router from the constructor's arguments, ``copy()``, routing."""

    router: Router
    _turnout_retries: int | None
    _turnout_deadline: float | None
    _turnout_headers: dict[str, str]
    _turnout_one: _OneBackend | None
    _custom_query: Mapping[str, object]

    def _sdk_arguments(
        self, sdk: type, handle_type: type, router: Router | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The SDK client's own keyword arguments; the rest build the router (unless ``router=`` is given)."""
        handle = kwargs.get("http_client")
        self._turnout_retries = self._turnout_deadline = None
        self._turnout_headers = {}
        self._turnout_one = None
        if isinstance(handle, (_Handle, _SyncHandle)):  # copy(): share the original's router
            self.router = handle.router
            kwargs.pop("workload_identity", None)  # the one backend's, shown by copy(), never this client's own
            return kwargs
        _refuse_as_the_sdk(kwargs, handle_type.__bases__[0])  # before any backend is built
        names = _sdk_names(sdk)
        given = {k: v for k, v in kwargs.items() if k in names and _given(v) is not None}
        settings = {k: v for k, v in kwargs.items() if k not in names}
        logins = {k: given.pop(k) for k in _BACKEND_ONLY if k in given}
        logins.update({k: given[k] for k in _ALSO_BACKENDS if k in given})
        if handle is not None and "timeout" not in given and handle.timeout != _HTTPX_DEFAULT_TIMEOUT:
            given["timeout"] = handle.timeout  # the SDK's rule: a timeout set on the http_client counts
        one = None
        if router is None and _one_backend(given.get("api_key"), given.get("base_url"), logins):
            one = _OneBackend(
                settings=settings,
                http_client=handle,
                provider=logins.get("provider"),
                key_function=given["api_key"] if callable(given.get("api_key")) else None,
                headers=dict(given.get("default_headers") or {}),
                organization=given.get("organization"),
                project=given.get("project"),
                default_url=not ({"base_url", "data_residency", "provider"} & {*given, *logins})
                and not os.environ.get("OPENAI_BASE_URL"),
            )
        self._turnout_one = one
        base_url = _backend_url(given, logins, kwargs.get("base_url", openai.NOT_GIVEN))
        if router is None:
            router = _router_for_client(
                api_key=given.get("api_key"),
                base_url=base_url,
                timeout=_seconds(given.get("timeout")),
                max_retries=given.get("max_retries"),
                default_headers=given.get("default_headers"),
                http_client=handle,
                sdk=logins,
                **settings,
            )
        elif settings or handle is not None or logins:
            unused = sorted([*settings, *logins, *(["http_client"] if handle is not None else [])])
            raise TypeError(f"settings {unused} have no effect with router=...: set them on its backends")
        self.router = router
        primary = router.primary
        return {
            **given,
            "api_key": _exposed_key(primary),
            "admin_api_key": _exposed_admin_key(primary, logins),
            "base_url": primary.adapter.base_url,
            "timeout": given.get("timeout", getattr(primary.adapter, "timeout", openai.NOT_GIVEN)),
            "max_retries": given.get("max_retries", primary.max_retries),
            "http_client": handle_type(router, handle),
        }

    def copy(
        self,
        *,
        timeout: Any = openai.NOT_GIVEN,
        max_retries: Any = openai.NOT_GIVEN,
        default_headers: Mapping[str, str] | None = None,
        set_default_headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """A client sharing this one's backends (and their breakers), with a total ``timeout`` per call,
        ``max_retries`` for every backend, or more ``default_headers``. Where the constructor made the one
        backend, a copy changing its login, address or ``http_client`` is another client, made as the SDK
        makes its copy; with the environment's backends that is refused."""
        changed = sorted(k for k in kwargs if k in _NOT_COPIED and _given(kwargs[k]) is not None)
        if changed and self._turnout_one is not None:
            return self._another(
                timeout=timeout,
                max_retries=max_retries,
                default_headers=default_headers,
                set_default_headers=set_default_headers,
                **kwargs,
            )
        if changed:
            raise TypeError(
                f"copy() of a turnout client cannot change {', '.join(changed)}: its requests go to "
                f"its configured backends; build another turnout client for other backends"
            )
        new = super().copy(  # type: ignore[misc]
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            set_default_headers=set_default_headers,
            **kwargs,
        )
        new._turnout_retries = max_retries if _given(max_retries) is not None else self._turnout_retries
        new._turnout_deadline = _seconds(timeout) if _given(timeout) is not None else self._turnout_deadline
        new._turnout_headers = (
            dict(set_default_headers)
            if set_default_headers is not None
            else {**self._turnout_headers, **(default_headers or {})}
        )
        new._turnout_one = self._turnout_one
        new._show_the_one_backend()
        return new

    with_options = copy

    def _another(self, **changes: Any) -> Any:
        """A new client for another one backend: the arguments the SDK's own ``copy()`` would pass, from this
        client's one backend (its real login, which this client shows only as a placeholder)."""
        one, me, adapter = self._turnout_one, cast(Any, self), cast(Any, self.router.primary.adapter)
        assert one is not None
        state = dict(
            api_key=getattr(adapter, "api_key", None),
            _api_key_provider=one.key_function,
            admin_api_key=getattr(adapter, "admin_api_key", None),
            workload_identity=getattr(self, "workload_identity", None),
            _provider=one.provider,
            _client=one.http_client,
            base_url=me.base_url,
            _base_url_was_default=one.default_url,
            organization=one.organization,
            project=one.project,
            webhook_secret=me.webhook_secret,
            websocket_base_url=me.websocket_base_url,
            timeout=me.timeout,
            max_retries=me.max_retries,
            _custom_headers={**one.headers, **self._turnout_headers},
            _custom_query=me._custom_query,
        )
        sdk = openai.OpenAI if isinstance(self, openai.OpenAI) else openai.AsyncOpenAI
        arguments = sdk_copy_arguments(sdk, state, changes)
        if _where(arguments) != _where({"base_url": str(me.base_url), "provider": one.provider}):
            if not any(_given(changes.get(k)) is not None for k in _LOGINS):
                raise TypeError(
                    "copy() of a turnout client to another host needs its own api_key (or workload_identity, "
                    "or provider): this client's key is never sent to another host"
                )
            if _given(changes.get("admin_api_key")) is None:
                arguments.pop("admin_api_key", None)  # nor its admin key
        return type(self)(**arguments, **one.settings)

    def _show_the_one_backend(self) -> None:
        """The one backend's workload identity, as the SDK's client shows its own (the token it holds too)."""
        backend_client = getattr(self.router.primary.adapter, "sdk_client", None)
        if self._turnout_one is not None and backend_client is not None:
            share_workload_identity(self, backend_client)

    async def _route(self, options: FinalRequestOptions, stream: bool) -> tuple[str | None, httpx2.Response]:
        if self._turnout_headers:
            sent = options.headers if isinstance(options.headers, Mapping) else {}
            options = options.model_copy(update={"headers": {**self._turnout_headers, **sent}})
        if self._custom_query:  # default_query (the constructor's or a copy's), for whichever backend serves
            params = options.params if isinstance(options.params, Mapping) else {}
            options = options.model_copy(update={"params": {**self._custom_query, **params}})
        deadline = _seconds(options.timeout) if not isinstance(options.timeout, NotGiven) else self._turnout_deadline
        retries = options.max_retries if not isinstance(options.max_retries, NotGiven) else self._turnout_retries
        name, response = await self.router.send(options, stream=stream, timeout=deadline, max_retries=retries)
        if name is not None:
            response.headers[BACKEND_HEADER] = name
            response.extensions[BACKEND_HEADER] = name  # read for each chunk the SDK parses: a dict, not headers
        else:  # made by the router (every backend's models): the request as this client's SDK would have sent it,
            response.request = super()._build_request(options)  # type: ignore[misc]  # the SDK's, not the stand-in
            if not _streamed(options):  # and read whole, as httpx leaves a response it was not asked to stream
                response.is_stream_consumed = response.is_closed = True
        return name, response

    def _build_request(self, options: FinalRequestOptions, *, retries_taken: int = 0) -> httpx2.Request:
        """Within a call, a stand-in: nothing is sent from this client (its options go to a backend's own client,
        which builds the real request), and the SDK's loop reads only its method and raw-stream header. Called
        outside one (code inspecting what the SDK would send), the SDK's own."""
        if _pending.get(None) is None:
            return super()._build_request(options, retries_taken=retries_taken)  # type: ignore[misc, no-any-return]
        sent = options.headers if isinstance(options.headers, Mapping) else {}
        raw = sent.get(RAW_RESPONSE_HEADER)
        return httpx2.Request(
            options.method.upper(), _STAND_IN_URL, headers={RAW_RESPONSE_HEADER: raw} if isinstance(raw, str) else None
        )

    def _process_response_data(self, *, data: object, cast_to: type[Any], response: httpx2.Response) -> Any:
        """Everything the SDK parses (an answer, a raw response's ``parse()``, each stream chunk) is marked
        with the backend whose response it came from."""
        parsed = super()._process_response_data(data=data, cast_to=cast_to, response=response)  # type: ignore[misc]
        marks = response.extensions  # the headers' values, as _route and telemetry set them
        cost = marks.get(COST_HEADER)
        if cost is not None and hasattr(parsed, "__dict__"):  # its cost as known when it was parsed
            parsed.__dict__[_COST] = cost
        return _tagged(parsed, marks.get(BACKEND_HEADER))

    def __repr__(self) -> str:
        return f"turnout.{type(self).__name__}({self.router!r})"


class AsyncOpenAI(_Routed, openai.AsyncOpenAI):
    """An ``openai.AsyncOpenAI`` whose requests are served by the backends the environment configures.

    ``api_key`` (or a key function), ``base_url``, ``workload_identity``, ``provider`` or
    ``data_residency`` make the one backend the SDK would talk to; ``timeout`` and
    ``max_retries`` set every backend's per-attempt timeout and retries;
    ``default_headers`` and ``default_query`` go to every backend; ``http_client`` is
    the one backend's whole, else its transports carry every backend's requests;
    ``router=`` serves with a Router you built. Other keyword arguments are settings fields. Each argument:
    docs/sdk-compatibility.md.
    """

    def __init__(self, *, router: Router | None = None, **kwargs: Any) -> None:
        super().__init__(**self._sdk_arguments(openai.AsyncOpenAI, _Handle, router, kwargs))
        self._show_the_one_backend()

    async def request(
        self,
        cast_to: Type[Any],
        options: FinalRequestOptions,
        *,
        stream: bool = False,
        stream_cls: Optional[type[Any]] = None,
    ) -> Any:
        """Routed at once; where instrumentation wraps ``request`` on ``openai.AsyncOpenAI`` (logfire's
        class-level mode), through the SDK's own ``request`` instead, so the wrapper sees this call once, and
        routed at its send (:meth:`_send_request`)."""
        if openai.AsyncOpenAI.request is ASYNC_SDK_REQUEST:  # nothing wraps it: skip the SDK's retry loop
            cast_to = self._maybe_override_cast_to(cast_to, options)
            name, response = await self._route(options, stream)
            answer = await self._process_response(
                cast_to=cast_to, options=options, response=response, stream=stream, stream_cls=stream_cls
            )
            return _tagged(answer, name)
        token = _pending.set(_Pending(stream))
        try:
            return _tagged(
                await super().request(cast_to, options, stream=stream, stream_cls=stream_cls), _pending.get().served
            )
        finally:
            _pending.reset(token)

    async def _prepare_options(self, options: FinalRequestOptions) -> FinalRequestOptions:
        options = await super()._prepare_options(options)
        _prepared(options)
        return options

    async def _send_request(self, request: httpx2.Request, *, stream: bool, **kwargs: Any) -> httpx2.Response:
        """The seam: the request's options (not the HTTP request the SDK built from them) go to the router. A request
        sent outside a call (code calling ``_send_request`` itself) has no options to route: the SDK's own send
        refuses it (nothing is sent from this client)."""
        pending = _pending.get(None)
        if pending is None:
            return await super()._send_request(request, stream=stream, **kwargs)
        pending.served, response = await self._route(pending.routed(), pending.stream)
        return response


class OpenAI(_Routed, openai.OpenAI):
    """An ``openai.OpenAI`` served like :class:`AsyncOpenAI`, by the same async Router on a background loop."""

    def __init__(self, *, router: Router | None = None, **kwargs: Any) -> None:
        super().__init__(**self._sdk_arguments(openai.OpenAI, _SyncHandle, router, kwargs))
        self._show_the_one_backend()

    def request(
        self,
        cast_to: Type[Any],
        options: FinalRequestOptions,
        *,
        stream: bool = False,
        stream_cls: Optional[type[Any]] = None,
    ) -> Any:
        if openai.OpenAI.request is SYNC_SDK_REQUEST:  # as AsyncOpenAI.request
            cast_to = self._maybe_override_cast_to(cast_to, options)
            run: Run[Any] = runner(self.router)
            name, response = run(self._route(_replayable(options), stream))
            answer = self._process_response(
                cast_to=cast_to,
                options=options,
                response=_synchronous(response, run),
                stream=stream,
                stream_cls=stream_cls,
            )
            return _tagged(answer, name)
        token = _pending.set(_Pending(stream))
        try:
            return _tagged(
                super().request(cast_to, options, stream=stream, stream_cls=stream_cls), _pending.get().served
            )
        finally:
            _pending.reset(token)

    def _prepare_options(self, options: FinalRequestOptions) -> FinalRequestOptions:
        options = super()._prepare_options(options)
        _prepared(options)
        return options

    def _send_request(self, request: httpx2.Request, *, stream: bool, **kwargs: Any) -> httpx2.Response:
        pending = _pending.get(None)
        if pending is None:  # as AsyncOpenAI._send_request
            return super()._send_request(request, stream=stream, **kwargs)
        run: Run[Any] = runner(self.router)
        pending.served, response = run(self._route(_replayable(pending.routed()), pending.stream))
        return _synchronous(response, run)


def _synchronous(response: httpx2.Response, run: Run[Any]) -> httpx2.Response:
    """The router's answer, its body readable from synchronous code (read on the loop that opened it)."""
    body = cast(httpx2.AsyncByteStream, response.stream)  # the router's loop reads it: async
    response.stream = _SyncRelay(body, run) if not response.is_closed else httpx2.ByteStream(response.content)
    return response


class _Pending:
    """One call between the SDK's ``request`` and its send: whether it streams (SSE), its options, who served it."""

    __slots__ = ("stream", "options", "served")

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.options: FinalRequestOptions | None = None
        self.served: str | None = None

    def routed(self) -> FinalRequestOptions:
        if self.options is None:
            raise RuntimeError("turnout: the SDK sent a request without preparing its options")
        return self.options


_pending: ContextVar[_Pending] = ContextVar("turnout_pending")


def _prepared(options: FinalRequestOptions) -> None:
    """Keep a call's prepared options for its send; outside a call (code calling ``_prepare_options`` itself)
    there is nothing to keep them for."""
    pending = _pending.get(None)
    if pending is not None:
        pending.options = options


# -- the SDK's http_client slot: carries the router through the SDK's copy() ----------


class _Refuse(httpx2.AsyncBaseTransport, httpx2.BaseTransport):
    """Nothing is sent from the outer client itself: every request goes through ``request()``."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        raise NotImplementedError(
            f"turnout routes requests made through the SDK's request methods; "
            f"{request.method} {request.url} bypassed them (websocket and realtime APIs "
            f"are not routed: use the openai SDK directly for them)"
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return self.handle_request(request)


class _Handle(httpx2.AsyncClient):
    """The SDK's ``close()`` closes its http client: for turnout's clients, that closes the backends, and
    the caller's ``http_client`` (as the SDK closes it) whose transports they share."""

    def __init__(self, router: Router, caller: httpx2.AsyncClient | None = None) -> None:
        super().__init__(transport=_Refuse(), trust_env=False)
        self.router = router
        self.caller = caller

    async def aclose(self) -> None:
        await self.router.aclose()
        if self.caller is not None:
            await self.caller.aclose()
        await super().aclose()


class _SyncHandle(httpx2.Client):
    def __init__(self, router: Router, caller: httpx2.Client | None = None) -> None:
        super().__init__(transport=_Refuse(), trust_env=False)
        self.router = router
        self.caller = caller

    def close(self) -> None:
        run: Run[None] = runner(self.router)
        run(self.router.aclose())
        if self.caller is not None:
            self.caller.close()
        super().close()


class _SyncRelay(httpx2.SyncByteStream):
    """An async response body read from synchronous code, one chunk at a time on the router's loop."""

    def __init__(self, source: httpx2.AsyncByteStream, run: Run[Any]) -> None:
        self._source = source
        self._chunks: AsyncIterator[bytes] = source.__aiter__()
        self._run = run

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                yield self._run(_next(self._chunks))
            except StopAsyncIteration:
                return

    def close(self) -> None:
        self._run(self._source.aclose())


async def _next(chunks: AsyncIterator[bytes]) -> bytes:
    return await chunks.__anext__()


# -- small helpers ---------------------------------------------------------------


def _refuse_as_the_sdk(kwargs: Mapping[str, Any], client_kind: type) -> None:
    """The SDK's own refusals of arguments turnout reads before the SDK's constructor sees them."""
    if "max_retries" in kwargs and kwargs["max_retries"] is None:
        raise TypeError(MAX_RETRIES_NONE)
    handle = kwargs.get("http_client")
    if handle is not None and not isinstance(handle, client_kind):
        raise TypeError(
            f"Invalid `http_client` argument; Expected an instance of `httpx2.{client_kind.__name__}` "
            f"(turnout's backends speak httpx2; an httpx client cannot carry their requests) "
            f"but got {type(handle)}"
        )
    if (
        "workload_identity" in kwargs
        and _given(kwargs.get("api_key")) not in (None, WORKLOAD_IDENTITY_KEY)  # the SDK's own stand-in is no key
        and _given(kwargs["workload_identity"]) is not None
    ):
        raise openai.OpenAIError("The `api_key` and `workload_identity` arguments are mutually exclusive")


def _replayable(options: FinalRequestOptions) -> FinalRequestOptions:
    """A synchronous iterator body, read here: the backends run on the router's loop, and a retry or a
    failover sends the body again."""
    content = options.content
    if content is None or isinstance(content, (bytes, bytearray, str)) or not isinstance(content, Iterable):
        return options
    return options.model_copy(update={"content": b"".join(content)})


def _streamed(options: FinalRequestOptions) -> bool:
    """Did the caller ask for the body unread (``with_streaming_response``)?"""
    headers = options.headers if isinstance(options.headers, Mapping) else {}
    return headers.get(RAW_RESPONSE_HEADER) == "stream"


def _tagged(answer: Any, name: str | None) -> Any:
    """Mark who served an answer, beside its fields (``model_dump()`` never sees it)."""
    if name is not None and hasattr(answer, "__dict__"):
        answer.__dict__[_SERVED_BY] = name
    return answer


def _exposed_key(primary: Backend) -> str:
    """A real key only where any library may send it: OpenAI's own, when OpenAI's own host is primary."""
    adapter = _openai_itself(primary)
    return (adapter.api_key or PLACEHOLDER_KEY) if adapter is not None else PLACEHOLDER_KEY


def _exposed_admin_key(primary: Backend, logins: Mapping[str, Any]) -> str | None:
    """``client.admin_api_key``, by the same rule as ``client.api_key``; ``None`` where none was given."""
    adapter = _openai_itself(primary)
    if adapter is not None:
        return getattr(adapter, "admin_api_key", None)
    return PLACEHOLDER_KEY if logins.get("admin_api_key") else None


def _openai_itself(primary: Backend) -> OpenAICompatAdapter | None:
    """The primary backend's adapter when it is OpenAI's own, on OpenAI's own host; else ``None``."""
    adapter = primary.adapter
    if (
        isinstance(adapter, OpenAICompatAdapter)
        and adapter.provider == "openai"
        and urllib.parse.urlsplit(adapter.base_url).hostname == _OPENAI_HOST
    ):
        return adapter
    return None


def _backend_url(given: dict[str, Any], logins: dict[str, Any], base_url: Any) -> str | None:
    """The address of the one backend the SDK would talk to: ``base_url``, a ``data_residency`` region's,
    or a ``provider``'s (its SDK provider keeps the login); the SDK's own rules on combining them apply."""
    region = logins.pop("data_residency", None)
    if region is not None:  # a keyword of newer SDKs only (after 3.0.0)
        return _text(
            resolve_data_residency(
                region, base_url, provider=logins.get("provider"), websocket_base_url=given.get("websocket_base_url")
            )
        )
    provider = logins.get("provider")
    if provider is not None:
        clash = [k for k in ("api_key", "admin_api_key", "workload_identity", "base_url") if k in given or k in logins]
        if clash:  # the SDK's own refusal, word for word
            named = ", ".join(f"`{k}`" for k in clash)
            raise openai.OpenAIError(
                f"`provider` cannot be combined with top-level {named}. Move provider "
                f"authentication and routing options into `{provider_name(provider)}(...)`."
            )
        return _text(configure_provider(provider).base_url)
    if (
        "base_url" not in given
        and not os.environ.get("OPENAI_BASE_URL")
        and is_x509_workload_identity(logins.get("workload_identity"))
    ):
        return mtls_base_url()  # the SDK's own default for an X.509 identity: OpenAI's mTLS address
    return _text(given.get("base_url"))


def _router_for_client(
    *,
    api_key: Any = None,
    base_url: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    default_headers: Mapping[str, str] | None = None,
    http_client: Any = None,
    sdk: Mapping[str, Any] | None = None,
    **settings: Any,
) -> Router:
    """The openai SDK's constructor arguments, in settings terms (see ``turnout.AsyncOpenAI``).

    ``api_key`` (text or a function), ``base_url``, or the login options in ``sdk``
    (``workload_identity``, ``provider``: given to that backend's SDK client as they are)
    make exactly the one backend the SDK would talk to (OpenAI's address when no
    ``base_url``); ``timeout`` and ``max_retries`` set every backend's;
    ``default_headers`` go to every backend; ``http_client`` is the connection
    layer of every OpenAI-compatible backend. ``sdk``'s ``admin_api_key``,
    ``organization`` and ``project`` go to that one backend, else to every backend
    whose provider is ``openai``.
    """
    from .settings import TurnoutSettings, build_router, resolve  # only when no router= was given

    overrides = dict(settings)
    if timeout is not None:
        overrides["timeout"] = timeout
    if max_retries is not None:
        overrides["max_retries"] = max_retries
    sdk = {k: v for k, v in (sdk or {}).items() if v is not None}
    if _one_backend(api_key, base_url, sdk):
        name, provider = (
            ("openai", "openai") if base_url is None or _openai_host(base_url) else ("default", "openai_compat")
        )
        if "provider" in sdk:  # another cloud: its SDK provider brings the address and the login
            name, provider = "default", "openai_compat"
        elif "workload_identity" in sdk:  # the SDK's own stand-in for the key a workload identity fetches
            api_key = WORKLOAD_IDENTITY_KEY
        section = {"provider": provider, "base_url": base_url, "api_key": api_key}
        overrides["backends"] = [name]
        overrides["backend"] = {name: {k: v for k, v in section.items() if v is not None}}
        if http_client is not None:  # the caller's own, whole, to the one host it chose, as the SDK would use it
            sdk["http_client"] = http_client
        return build_router(TurnoutSettings(**overrides), default_headers, sdk={name: sdk}, aggregate_models=False)
    config = resolve(TurnoutSettings(**overrides))
    account = {b.name: sdk for b in config.backends if b.preset is not None and b.preset.name == "openai"}
    return build_router(config, default_headers, http_client=http_client, sdk=account)


_OPENAI_ACCOUNT = frozenset({"admin_api_key", "organization", "project"})
"""OpenAI account settings: without a backend built from the constructor, for OpenAI's backends only."""


def _one_backend(api_key: Any, base_url: Any, logins: Mapping[str, Any]) -> bool:
    """Do the constructor's arguments make the one backend the SDK would talk to (``TURNOUT_BACKENDS`` ignored)?"""
    return (
        api_key is not None
        or base_url is not None
        or bool({k for k, v in logins.items() if v is not None} - _OPENAI_ACCOUNT)
    )


_LOGINS = ("api_key", "workload_identity", "provider")
"""What logs a client in: a copy to another host needs one of its own."""


def _where(arguments: Mapping[str, Any]) -> object:
    """Where a client's arguments send its key, as far as keys go: OpenAI's hosts (its regional and mTLS addresses,
    the default, all one), a provider's own, or another ``base_url``'s host and port."""
    if arguments.get("provider") is not None:
        return arguments["provider"]
    url = arguments.get("base_url")
    if arguments.get("data_residency") is not None or not url or _openai_host(str(url)):
        return _OPENAI_HOST
    parts = urllib.parse.urlsplit(str(url))
    return parts.hostname, parts.port


@dataclasses.dataclass(frozen=True, repr=False)
class _OneBackend:
    """A client whose one backend its constructor made: what ``copy()`` needs to make another, as the SDK would."""

    settings: Mapping[str, Any]
    http_client: Any
    provider: Any
    key_function: Any
    default_url: bool
    headers: Mapping[str, str]
    organization: str | None
    project: str | None
    """What the caller gave, not what the SDK read from ``OPENAI_*`` (never sent to another provider's host)."""


WORKLOAD_IDENTITY_KEY = "workload-identity-auth"
"""What the SDK takes as ``api_key`` beside ``workload_identity`` (it then fetches the real token)."""


def _openai_host(base_url: str) -> bool:
    """OpenAI's own address (a data residency region's too): its backend is the ``openai`` provider."""
    host = urllib.parse.urlsplit(base_url).hostname or ""
    return host == _OPENAI_HOST or host.endswith("." + _OPENAI_HOST)


_SDK_NAMES: dict[type, frozenset[str]] = {}


def _sdk_names(sdk: type) -> frozenset[str]:
    """The SDK constructor's own keyword arguments, read off this installed version."""
    names = _SDK_NAMES.get(sdk)
    if names is None:
        names = _SDK_NAMES[sdk] = frozenset(inspect.signature(sdk).parameters)
    return names


def _seconds(timeout: Any) -> float | None:
    """The SDK takes seconds or an ``httpx.Timeout``; a turnout deadline is the longest of its parts."""
    timeout = _given(timeout)
    if timeout is None or isinstance(timeout, (int, float)):
        return timeout
    parts = [getattr(timeout, k, None) for k in ("connect", "read", "write", "pool")]
    return max((p for p in parts if p is not None), default=None)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _given(value: Any) -> Any:
    """``None`` for the SDK's "not given" sentinels, so they mean what they mean to the SDK."""
    return None if isinstance(value, (openai.NotGiven, openai.Omit)) else value
