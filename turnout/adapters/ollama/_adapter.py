"""Ollama natively: the official ``ollama`` SDK's client, answers in the openai SDK's types.

Why native and not Ollama's own ``/v1`` endpoint: that layer ignores
``num_ctx``, ``keep_alive`` and ``max_completion_tokens``, forces
``temperature`` and ``top_p`` to 1.0 when unset, and refuses image URLs. Here
the request goes to ``/api/chat``, ``/api/embed`` and ``/api/tags``, and the
caller still sees nothing but the openai SDK's shapes.

Why raw JSON bodies through the client's ``_request``: ollama-python 0.6.3
builds requests from pydantic models that strip tool-schema keywords beyond
``type``/``items``/``description``/``enum`` (nested ``properties``, ``anyOf``,
``default``, ``format`` vanish) and drop ``tool_call_id``; and it parses
answers into models that drop the tool-call ``id`` and ``index`` the server
sends. So this module writes Ollama's wire JSON itself and hands it to
``AsyncClient._request`` with ``dict`` as the response class. That is the
very path the SDK's public methods take after their pydantic step: the same
httpx session, host parsing, headers, NDJSON streaming and ``ResponseError``
handling, with nothing stripped in either direction. ``_request`` has had
this signature since ollama-python 0.2; if it ever changes, the tests fail
at once rather than silently dropping fields.

What Ollama cannot honour is refused with ``openai.BadRequestError`` before
anything is sent, never silently dropped: ``n > 1``, a forced tool
(``tool_choice="required"`` or a named function), ``logit_bias``, audio,
predicted outputs, web search, legacy ``functions``, unknown parameters.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, AsyncGenerator, AsyncIterator, Iterator, Mapping

import httpx
import httpx2
import ollama
import openai
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from ..._errors import UNSUPPORTED, BrokenStreamError, ConfigError, describe, malformed_response
from ..._redact import redact_url
from .._base import Call, Capabilities, Health, wire_response
from ..presets import get_preset
from ._answers import ChatCall, EventStream, StreamState, completion, embedding_response, model_of
from ._requests import EMBED_FIELDS, Requests, split_params

__all__ = ["OllamaAdapter", "DEFAULT_TIMEOUT", "UNSUPPORTED"]

DEFAULT_TIMEOUT = 60.0
"""Seconds per connect/read/write. The ollama SDK's own default is no timeout at all."""

# UNSUPPORTED is the ``code`` of the ``BadRequestError`` for a valid request Ollama cannot
# honour (``n > 1``, a forced tool, ``logit_bias``, audio, image URLs without opt-in,
# unknown parameters): the router fails over on it. Malformed requests carry
# ``code="invalid_request"`` instead, and are raised at once.


_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}
_KEPT_HEADERS = ("retry-after", "retry-after-ms", "x-request-id")


class OllamaAdapter(Requests):
    """A backend reached through ``ollama.AsyncClient`` on Ollama's native API.

    The host comes from ``host``, else ``OLLAMA_HOST`` (read as the ollama SDK
    reads it), else ``http://localhost:11434``. ``api_key`` is sent as a bearer
    token, for an Ollama behind an authenticating proxy or ollama.com; without
    it the SDK's own ``OLLAMA_API_KEY`` applies. ``fetch_image_urls`` lets
    http(s) ``image_url`` parts be downloaded here, since Ollama takes only
    base64 images.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        host: str | None = None,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        capabilities: Capabilities | None = None,
        fetch_image_urls: bool = False,
        proxy: str | None = None,
    ) -> None:
        """``proxy``: the proxy this backend is reached through (else the environment's, as httpx reads it)."""
        self.preset = preset = get_preset("ollama")
        self.name = name or preset.name
        self.provider = preset.name
        self.inline = False  # the ollama SDK's httpx client has no synchronous twin here
        self.capabilities = capabilities or preset.capabilities
        self.fetch_image_urls = fetch_image_urls
        self.timeout = timeout
        raw_host = host or (preset.url_env and os.environ.get(preset.url_env)) or preset.base_url
        _check_host(self.name, raw_host)
        sent_headers = dict(headers or {})
        if api_key:
            sent_headers["Authorization"] = f"Bearer {api_key}"
        self._client = ollama.AsyncClient(
            host=raw_host, timeout=timeout, headers=sent_headers, **({"proxy": proxy} if proxy else {})
        )
        self.host = str(self._client._client.base_url).rstrip("/")
        self.base_url = self.host + "/v1"  # what a client reports: Ollama's own OpenAI-shaped address

    def __repr__(self) -> str:
        return f"OllamaAdapter(name={self.name!r}, host={redact_url(self.host)!r})"

    # -- the protocol ------------------------------------------------------
    async def send(self, call: Call) -> httpx2.Response:
        """An OpenAI wire request served by Ollama's native API, answered in the OpenAI wire format."""
        params = {**call.body, **_http_options(call)}
        if call.options.extra_json:
            params["extra_body"] = {**(params.get("extra_body") or {}), **call.options.extra_json}
        if call.endpoint.name == "chat" and call.stream:
            return wire_response(call, self.base_url, stream=EventStream(self.stream_chat(**params)))
        if call.endpoint.name == "chat":
            return wire_response(call, self.base_url, content=_wire(await self.chat(**params)))
        if call.endpoint.name == "embeddings":
            return wire_response(call, self.base_url, content=_wire(await self.embeddings(**params)))
        raise self._status_error(
            404,
            f"Ollama's native API serves chat completions, embeddings and models, "
            f"not {call.options.method.upper()} {call.options.url}",
            call.options.url,
        )

    async def chat(self, **params: Any) -> ChatCompletion:
        call = await self._chat_call(params, stream=False)
        raw = await self._send("POST", "/api/chat", call.body, call.http)
        with self._malformed("/api/chat"):
            if raw.get("error"):
                raise self._status_error(500, str(raw["error"]), "/api/chat")
            return completion(raw, call)

    async def stream_chat(self, **params: Any) -> AsyncIterator[ChatCompletionChunk]:
        call = await self._chat_call(params, stream=True)
        state = StreamState(call)
        parts = self._stream_parts(call, state)
        try:
            async for part in parts:
                with self._malformed("/api/chat", state):
                    chunks = state.feed(part)
                for chunk in chunks:
                    state.sent += 1
                    yield chunk
        finally:
            await parts.aclose()
        if not state.done:
            message = f"backend {self.name!r}: the Ollama stream ended without its final (done) line"
            raise BrokenStreamError(message, request=self._request("POST", "/api/chat"), chunks=state.sent)

    async def embeddings(self, **params: Any) -> CreateEmbeddingResponse:
        params, http = split_params(params)
        extra = params.pop("extra_body", None) or {}
        encoding = params.pop("encoding_format", None) or "float"
        body = {"model": self._required(params, "model"), "input": self._embed_input(params.pop("input", None))}
        if "dimensions" in params:
            body["dimensions"] = params.pop("dimensions")
        params.pop("user", None)
        self._refuse_leftovers(params, "embeddings")
        self._merge_extra(body, {}, extra, EMBED_FIELDS)
        if encoding not in ("float", "base64"):
            raise self._bad_request(f"encoding_format {encoding!r} is not supported; use 'float' or 'base64'")
        raw = await self._send("POST", "/api/embed", body, http)
        with self._malformed("/api/embed"):
            return embedding_response(raw, body["model"], encoding)

    async def list_models(self) -> list[Model]:
        raw = await self._send("GET", "/api/tags", None, {})
        with self._malformed("/api/tags"):
            return [model_of(entry, self.name) for entry in raw["models"]]

    async def health(self) -> Health:
        """Up when ``/api/tags`` answers: it proves the server and its model store both work."""
        start = time.perf_counter()
        try:
            models = len(await self.list_models())
        except openai.APIError as err:
            return Health(False, time.perf_counter() - start, error=describe(err))
        return Health(True, time.perf_counter() - start, models=models)

    async def aclose(self) -> None:
        await self._client.close()

    # -- sending -----------------------------------------------------------
    async def _send(self, method: str, path: str, body: dict[str, Any] | None, http: dict[str, Any]) -> dict[str, Any]:
        """One non-streamed call through the SDK's request path; failures become openai exceptions."""
        kwargs = dict(http, json=body) if body is not None else http
        try:
            answer: dict[str, Any] = await self._client._request(dict, method, path, **kwargs)
            return answer
        except Exception as err:
            mapped = self._translate(err, method, path)
            if mapped is err:
                raise
            raise mapped from err

    async def _stream_parts(self, call: ChatCall, state: StreamState) -> AsyncGenerator[dict[str, Any], None]:
        """Ollama's NDJSON lines as dicts; nothing is sent before the first ``__anext__``."""
        lines: AsyncIterator[dict[str, Any]] | None = None
        try:
            lines = await self._client._request(dict, "POST", "/api/chat", json=call.body, stream=True, **call.http)
            async for part in lines:
                yield part
        except Exception as err:
            mapped = self._stream_error(err, state)
            if mapped is err:
                raise
            raise mapped from err
        finally:
            if lines is not None:
                await lines.aclose()  # type: ignore[attr-defined]

    # -- errors ------------------------------------------------------------
    def _request(self, method: str, path: str) -> httpx2.Request:
        return httpx2.Request(method, self.host + path)

    def _translate(self, err: Exception, method: str, path: str) -> Exception:
        """The openai exception for what the ollama SDK or httpx raised; unknown errors pass unchanged."""
        request = self._request(method, path)
        if isinstance(err, ollama.ResponseError):
            return self._status_error(err.status_code, str(err.error), path, _response_headers(err))
        if isinstance(err, httpx.TimeoutException):
            return openai.APITimeoutError(request)
        if isinstance(err, (ConnectionError, httpx.TransportError)):
            detail = type(err).__name__ if isinstance(err, ConnectionError) else f"{type(err).__name__}: {err}"
            message = f"backend {self.name!r}: cannot reach Ollama at {self.host} ({detail})"
            return openai.APIConnectionError(message=message, request=request)
        if isinstance(err, ValueError):
            return self._malformed_error(path, err)
        return err

    def _stream_error(self, err: Exception, state: StreamState) -> Exception:
        """A failure once the stream is open is a broken stream: the router must not replay delivered chunks."""
        if isinstance(err, ollama.ResponseError) and err.status_code == -1:
            message = f"backend {self.name!r}: Ollama stopped the stream with an error: {err.error}"
            return BrokenStreamError(message, request=self._request("POST", "/api/chat"), chunks=state.sent)
        mapped = self._translate(err, "POST", "/api/chat")
        if state.sent and isinstance(mapped, openai.APIError) and not isinstance(mapped, openai.APIStatusError):
            message = f"backend {self.name!r}: the Ollama stream broke after {state.sent} chunks: {mapped.message}"
            return BrokenStreamError(message, request=mapped.request, chunks=state.sent)
        return mapped

    def _status_error(
        self, status: int, message: str, path: str, headers: Mapping[str, str] | None = None
    ) -> openai.APIStatusError:
        body = {"error": message}
        response = httpx2.Response(status, headers=dict(headers or {}), json=body, request=self._request("POST", path))
        cls = _STATUS_ERRORS.get(status) or (openai.InternalServerError if status >= 500 else openai.APIStatusError)
        return cls(f"Error code: {status} - {message}", response=response, body=body)

    def _bad_request(self, message: str, *, code: str = UNSUPPORTED) -> openai.BadRequestError:
        """A request refused before anything is sent: one Ollama cannot honour (``UNSUPPORTED``), or a malformed one."""
        text = f"backend {self.name!r} (Ollama): {message}"
        body = {"message": text, "type": "invalid_request_error", "param": None, "code": code}
        response = httpx2.Response(400, json={"error": body}, request=self._request("POST", "/api/chat"))
        return openai.BadRequestError(text, response=response, body=body)

    def _malformed_error(self, path: str, err: BaseException) -> openai.APIResponseValidationError:
        return malformed_response(self.name, self.host + path, err)

    @contextmanager
    def _malformed(self, path: str, state: StreamState | None = None) -> Iterator[None]:
        """An answer of the wrong shape is ``APIResponseValidationError``; a broken stream once chunks went out."""
        try:
            yield
        except openai.APIError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            mapped: openai.APIError = self._malformed_error(path, err)
            if state is not None and state.sent:
                mapped = BrokenStreamError(mapped.message, request=mapped.request, chunks=state.sent)
            raise mapped from err


# -- response conversion ----------------------------------------------------


def _http_options(call: Call) -> dict[str, Any]:
    """The caller's own headers and query (``extra_headers``, ``default_headers`` of a copy, ``extra_query``),
    less the SDK's bookkeeping headers, which are for the caller's client, not for Ollama."""
    sent = call.options.headers if isinstance(call.options.headers, Mapping) else {}
    headers = {k: v for k, v in sent.items() if isinstance(v, str) and not k.lower().startswith("x-stainless-")}
    options: dict[str, Any] = {"extra_headers": headers} if headers else {}
    if call.options.params:
        options["extra_query"] = call.options.params
    return options


def _wire(answer: ChatCompletion | CreateEmbeddingResponse) -> bytes:
    """The JSON an OpenAI server sends (base64 embeddings are strings there, whatever the type says)."""
    return answer.to_json(indent=None, warnings=False).encode()


def _response_headers(err: ollama.ResponseError) -> dict[str, str]:
    """Retry-After and friends: the SDK raises ``from None`` but keeps the httpx error as ``__context__``."""
    context = err.__context__
    response = getattr(context, "response", None)
    if response is None:
        return {}
    return {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers}


def _check_host(name: str, host: str | None) -> None:
    if host and "://" in host and not host.startswith(("http://", "https://")):
        raise ConfigError(f"backend {name!r}: Ollama host {host!r} must be http(s)://host[:port] or host[:port]")
