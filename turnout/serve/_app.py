"""The ASGI app: OpenAI's HTTP API under ``/v1``, every request sent through one turnout client.

The server holds one ``turnout.AsyncOpenAI`` (built from the environment at
start-up, closed at shutdown; its backends on the SDK's aiohttp transport). A
JSON request goes to its router with the options the client's ``post`` would
build; uploads and stored responses go through the SDK's raw-request path,
``client.post(path, cast_to=httpx2.Response, ...)``. Either way the router picks
the backend exactly as for library callers (model pinning, aliases,
capabilities, failover), and the serving backend's own HTTP answer comes back,
whose bytes are relayed. Streams are relayed chunk by chunk
as they arrive and closed upstream when the caller hangs up.
"""

from __future__ import annotations

import contextlib
import json
import math
import urllib.parse
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
import httpx2
import openai
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._sdk import RequestOptions, post_options
from ..adapters._http import aiohttp_client
from ..client import AsyncOpenAI, served_by
from ..router import ENDPOINTS as ROUTER_ENDPOINTS
from ..settings import TurnoutSettings, build_router, resolve
from ..telemetry import COST_HEADER, telemetry_of
from . import _log
from ._auth import OPEN_PATHS, BearerAuth
from ._health import LastErrors, report
from ._leave import ClientLeft
from ._limits import BodyLimit
from ._scrub import Scrubber, secrets_of
from ._wire import BACKEND_HEADER, NO_BACKEND, Refusal, answer_for, error_response

__all__ = ["create_app", "app_from_env", "ENDPOINTS"]

ENDPOINTS: tuple[tuple[str, str, bool], ...] = tuple(
    (path, "multipart" if endpoint.upload else "json", endpoint.streams)
    for method, path, endpoint in ROUTER_ENDPOINTS
    if method == "post" and endpoint.mode in ("routed", "responses")
)
"""The routed endpoints the server answers (path under /v1, body ``json`` or ``multipart``, whether
``"stream": true`` streams its answer): the router's endpoint table's, so the two never disagree."""

STORED: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (
        path.replace("{id}", "{ident}"),
        tuple(m.upper() for m, p, e in ROUTER_ENDPOINTS if p == path and e.mode == "held"),
    )
    for path in dict.fromkeys(p for _, p, e in ROUTER_ENDPOINTS if e.mode == "held")
)
"""Stored responses, served where they were made (path under /v1, methods): the router's table's too."""

_RELAYED = ("x-request-id", COST_HEADER)
"""Answer headers passed on from the backend besides the content type (its request id, for its support)."""

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}  # no proxy buffers the events


@dataclass
class _State:
    client: AsyncOpenAI
    errors: LastErrors
    scrub: Scrubber


def app_from_env() -> Starlette:
    """The app configured by the environment and .env alone, logging as ``turnout serve`` does: what
    each ``--workers`` process runs, and ``uvicorn --factory turnout.serve:app_from_env``."""
    app = create_app(TurnoutSettings())
    _log.setup(app.state.scrub)
    return app


def create_app(settings: TurnoutSettings | None = None) -> Starlette:
    """The server as an ASGI app, to mount in your own if you like (its log lines then go where your
    logging sends the ``turnout.serve`` logger). Backends, keys and the body limit come from
    ``settings`` (default: the environment); a bad configuration raises ``ConfigError`` here."""
    settings = settings if settings is not None else TurnoutSettings()
    config = resolve(settings)
    keys = [key.get_secret_value() for key in settings.serve_api_keys or ()]
    scrub = Scrubber(secrets_of(config, settings.serve_api_keys or ()))
    errors = LastErrors()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        http = aiohttp_client()  # relays at C speed: every backend reached over HTTP is given its transport
        client = AsyncOpenAI(router=build_router(config, on_event=errors.record, prometheus=True, http_client=http))
        app.state.turnout = _State(client, errors, scrub)
        try:
            yield
        finally:
            await client.close()
            if http is not None:
                await http.aclose()

    routes = [
        Route(f"/v1{path}", _answering(_multipart if body == "multipart" else _json, path, streams), methods=["POST"])
        for path, body, streams in ENDPOINTS
    ]
    routes += [Route(f"/v1{path}", _answering(_stored), methods=list(methods)) for path, methods in STORED]
    routes += [
        Route("/v1/models", _answering(_models), methods=["GET"]),
        Route("/v1/models/{model:path}", _answering(_model), methods=["GET"]),
        Route("/health", _alive, methods=["GET"]),
        Route("/health/backends", _answering(_backends), methods=["GET"]),
        Route("/metrics", _answering(_metrics), methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
        middleware=[
            Middleware(_log.AccessLog),
            Middleware(ClientLeft),
            Middleware(BearerAuth, keys=keys, open_paths=_open_paths(settings)),
            Middleware(BodyLimit, limit=settings.serve_max_body),
        ],
    )
    app.state.scrub = scrub
    app.state.backends = [b.name for b in config.backends]
    return app


def _open_paths(settings: TurnoutSettings) -> frozenset[str]:
    return OPEN_PATHS | {"/metrics"} if settings.serve_metrics_open else OPEN_PATHS


# -- handlers ------------------------------------------------------------------------

Handler = Callable[..., Awaitable[Response]]


def _answering(handler: Handler, *args: Any) -> Callable[[Request], Awaitable[Response]]:
    """The handler, with every failure answered in the OpenAI error shape (a bug: a 500 that says so)."""

    async def endpoint(request: Request) -> Response:
        state: _State = request.app.state.turnout
        try:
            return await handler(request, state, *args)
        except Exception as err:
            answer = answer_for(err, state.scrub)
            if answer is not None:
                return answer
            if isinstance(err, HTTPException):  # a malformed multipart body, say
                return await _http_error(request, err)
            _log.log.exception("%s %s failed inside turnout serve", request.method, request.url.path)
            return error_response(500, "turnout serve failed on this request (its log says why)")

    return endpoint


async def _json(request: Request, state: _State, path: str, streams: bool) -> Response:
    """Straight to the router, with the options the client's ``post`` would give it: the client's own layer
    would only wrap the SDK's response objects around an answer that is relayed as bytes."""
    body = await _json_body(request)
    stream = streams and body.get("stream") is True
    options = post_options(path, body)
    raw = await request.body()  # read once already: Starlette keeps it
    name, response = await state.client.router.send(options, stream=stream, raw=raw if _utf8(raw) else None)
    response.headers[BACKEND_HEADER] = name or NO_BACKEND
    return _relay(response, stream, request.scope, state.scrub)


async def _multipart(request: Request, state: _State, path: str, streams: bool) -> Response:
    if _media_type(request) != "multipart/form-data":
        raise Refusal(
            415,
            f"{request.url.path} takes multipart/form-data (a file upload), "
            f"not {_media_type(request) or 'a body without Content-Type'}.",
            code="unsupported_media_type",
        )
    form = await request.form()
    try:
        fields: dict[str, Any] = {}
        files: list[tuple[str, tuple[str | None, bytes, str | None]]] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((name, (value.filename, await value.read(), value.content_type)))
            elif name.endswith("[]") or name in fields:  # a list: the SDK writes it back as name[]
                key = name.removesuffix("[]")
                previous = fields.get(key, [])
                fields[key] = [*(previous if isinstance(previous, list) else [previous]), value]
            else:
                fields[name] = value
    finally:
        await form.close()
    _require_model(fields)
    stream = streams and str(fields.get("stream", "")).lower() == "true"
    response = await state.client.post(
        path,
        cast_to=httpx2.Response,
        body=fields,
        files=files,
        stream=stream,
        options={"headers": {"Content-Type": "multipart/form-data"}},
    )
    return _relay(response, stream, request.scope, state.scrub)


async def _stored(request: Request, state: _State) -> Response:
    """Retrieve, delete, list input items or cancel: the router sends it where the response is kept."""
    path = request.url.path.removeprefix("/v1")
    options: RequestOptions = {"params": dict(request.query_params)}
    client = state.client
    if request.method == "DELETE":
        answer = await client.delete(path, cast_to=httpx2.Response, options=options)
    elif request.method == "POST":
        answer = await client.post(path, cast_to=httpx2.Response, options=options)
    else:
        answer = await client.get(path, cast_to=httpx2.Response, options=options)
    return _relay(answer, False, request.scope, state.scrub)


async def _metrics(request: Request, state: _State) -> Response:
    """Prometheus' text format: every worker's counters, and the backends' state (shared, with Redis) now."""
    router = state.client.router
    telemetry = telemetry_of(router)
    if telemetry is None or telemetry.prom is None:
        raise Refusal(404, "no metrics: install turnout[serve] (prometheus-client)", code="not_found")
    stats = await router.shared_stats() if router.state.shared else router.stats()
    return Response(telemetry.prom.scrape(stats), media_type=PROMETHEUS_TYPE, headers={BACKEND_HEADER: NO_BACKEND})


async def _models(request: Request, state: _State) -> Response:
    return _relay(await state.client.get("/models", cast_to=httpx2.Response), False, request.scope, state.scrub)


async def _model(request: Request, state: _State) -> Response:
    model = urllib.parse.quote(request.path_params["model"], safe="")  # ids may hold "/": one path segment
    answer = await state.client.get(f"/models/{model}", cast_to=httpx2.Response)
    return _relay(answer, False, request.scope, state.scrub)


async def _alive(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={BACKEND_HEADER: NO_BACKEND})


async def _backends(request: Request, state: _State) -> Response:
    probe = request.query_params.get("probe", "").lower() in ("1", "true", "yes")
    body = await report(state.client.router, state.errors, state.scrub, probe=probe)
    return JSONResponse(body, headers={BACKEND_HEADER: NO_BACKEND})


async def _http_error(request: Request, err: Exception) -> Response:
    """Starlette's own refusals (no such path, wrong method, a malformed form) in the OpenAI shape."""
    assert isinstance(err, HTTPException)
    if err.status_code == 404:
        message = (
            f"Unknown path {request.method} {request.url.path}: turnout serve answers the OpenAI API under "
            f"/v1 (" + ", ".join(f"POST /v1{p}" for p, _, _ in ENDPOINTS) + ", GET /v1/models, stored "
            "responses at /v1/responses/{id}) and GET /health."
        )
        return error_response(404, message, code="unknown_url")
    if err.status_code == 405:
        return error_response(
            405,
            f"{request.method} is not allowed on {request.url.path}.",
            headers=err.headers,
            code="method_not_allowed",
        )
    return error_response(err.status_code, str(err.detail))


# -- request bodies --------------------------------------------------------------------


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _json_body(request: Request) -> dict[str, Any]:
    media = _media_type(request)
    if media and media != "application/json" and not media.endswith("+json"):
        raise Refusal(
            415,
            f"{request.url.path} takes a JSON body (Content-Type: application/json), not {media}.",
            code="unsupported_media_type",
        )
    raw = await request.body()
    odd: list[bool] = []
    try:
        body = json.loads(raw, parse_constant=lambda name: _constant(odd), parse_float=lambda text: _float(text, odd))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Refusal(
            400, "We could not parse the JSON body of your request: it is not valid JSON.", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise Refusal(400, "The request body must be a JSON object.", code="invalid_json")
    if odd:
        field = _non_finite(body) or "?"
        raise Refusal(
            400,
            f"{field} is not a finite number: JSON has no NaN or Infinity, and this number does not fit in one.",
            param=field,
            code="invalid_value",
        )
    _require_model(body)
    return body


def _utf8(raw: bytes) -> bool:
    """JSON a backend takes as it is: UTF-8 without a byte-order mark (``json.loads`` also reads UTF-16 and -32)."""
    return json.detect_encoding(raw) == "utf-8"


def _constant(odd: list[bool]) -> float:
    """``NaN``, ``Infinity`` or ``-Infinity``: Python's json takes them, JSON and the SDK do not."""
    odd.append(True)
    return math.nan


def _float(text: str, odd: list[bool]) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: valid JSON, but no number the SDK can send on
        odd.append(True)
    return value


def _non_finite(value: Any, path: str = "") -> str | None:
    """Where in the body the first NaN or infinity is (``max_tokens``, ``messages[0].content``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key)
        if found is not None:
            return found
    return None


def _require_model(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise Refusal(400, "You must provide a model parameter.", param="model", code="missing_required_parameter")


# -- answers -----------------------------------------------------------------------------


def _relay(response: httpx2.Response, stream: bool, scope: Scope, scrub: Scrubber) -> Response:
    """The backend's answer to the caller: its status, content type, request id and bytes."""
    headers = {k: response.headers[k] for k in _RELAYED if k in response.headers}
    headers[BACKEND_HEADER] = served_by(response) or NO_BACKEND
    media = response.headers.get("content-type", "application/json")
    if not stream:
        return Response(response.content, status_code=response.status_code, headers=headers, media_type=media)
    return _Stream(response, _chunks(response, scope, scrub), headers={**headers, **_STREAM_HEADERS}, media_type=media)


class _Stream(StreamingResponse):
    """An SSE answer relayed as its chunks arrive. However it ends (done, the caller gone, a shutdown
    past its grace period), the backend's response is closed, so its connection is released.

    It listens for the caller's disconnect itself while sending, whatever ASGI version the server
    declares: Starlette leaves that to the server from ASGI 2.4 on, and some uvicorn versions
    declare 2.4 yet drop a send to a closed connection silently, which would relay the whole
    stream to nobody."""

    def __init__(self, upstream: httpx2.Response, chunks: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(chunks, **kwargs)
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_log.NOTE] = "stream, client left"  # until the last chunk is sent
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._send_all, send, group.cancel_scope)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():  # from outside: a shutdown's grace period ran out
            scope[_log.NOTE] = "stream, cut at shutdown"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self.upstream.aclose()

    async def _send_all(self, send: Send, scope: anyio.CancelScope) -> None:
        try:
            await self.stream_response(send)
        except OSError:  # the caller is gone (ASGI 2.4 servers say so on send)
            pass
        scope.cancel()


async def _chunks(upstream: httpx2.Response, scope: Scope, scrub: Scrubber) -> AsyncIterator[bytes]:
    """The backend's chunks; once its cost is known (from its usage, near the end), an SSE comment saying it."""
    told = False
    try:
        async for chunk in upstream.aiter_bytes():
            if not told and _DONE in chunk:
                chunk, told = _with_cost(chunk, upstream.headers.get(COST_HEADER))
            yield chunk
        if not told and COST_HEADER in upstream.headers:  # a stream without [DONE] (Responses): at its end
            yield cost_comment(upstream.headers[COST_HEADER])
    except openai.APIError as err:  # broke after its first event: say so in the stream, as OpenAI does
        scope[_log.NOTE] = "stream, broken upstream"
        error = {"message": scrub(str(err)), "type": "server_error", "param": None, "code": "stream_broken"}
        yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
        return
    finally:
        scope[_log.COST] = upstream.headers.get(COST_HEADER)
    scope[_log.NOTE] = "stream"


_DONE = b"data: [DONE]"


def cost_comment(cost: str) -> bytes:
    """A stream's cost (USD, or ``unknown``) as an SSE comment line, which every SSE parser skips: its
    headers went out before its usage came in."""
    return f": {COST_HEADER}: {cost}\n\n".encode()


def _with_cost(chunk: bytes, cost: str | None) -> tuple[bytes, bool]:
    """``chunk`` with the cost's comment just before its ``data: [DONE]`` (the last event, which some clients
    stop reading at); whether it was put in."""
    at = chunk.find(_DONE)
    if cost is None or (at > 0 and chunk[at - 1 : at] not in (b"\n", b"\r")):
        return chunk, False
    return chunk[:at] + cost_comment(cost) + chunk[at:], True
