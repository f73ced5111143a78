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

import base64
import json
import os
import re
import time
from contextlib import contextmanager
from typing import Any, AsyncGenerator, AsyncIterator, Iterable, Iterator, Mapping

import httpx
import httpx2
import ollama
import openai
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from .._errors import UNSUPPORTED, BrokenStreamError, ConfigError, describe, malformed_response
from .._redact import redact_url
from ._base import Call, Capabilities, Health, wire_response
from ._ollama_answers import ChatCall, EventStream, StreamState, completion, embedding_response, model_of
from .presets import get_preset

__all__ = ["OllamaAdapter", "DEFAULT_TIMEOUT", "UNSUPPORTED"]

DEFAULT_TIMEOUT = 60.0
"""Seconds per connect/read/write. The ollama SDK's own default is no timeout at all."""

# UNSUPPORTED is the ``code`` of the ``BadRequestError`` for a valid request Ollama cannot
# honour (``n > 1``, a forced tool, ``logit_bias``, audio, image URLs without opt-in,
# unknown parameters): the router fails over on it. Malformed requests carry
# ``code="invalid_request"`` instead, and are raised at once.

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""Largest image fetched from a URL (only with ``fetch_image_urls=True``)."""

_IGNORED = frozenset({
    "metadata", "store", "user", "service_tier", "safety_identifier",
    "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
})
"""OpenAI bookkeeping parameters: they never change the answer, so Ollama may ignore them."""

_OPTIONS_FROM_OPENAI = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")

_OLLAMA_CHAT_FIELDS = frozenset({"keep_alive", "think", "format", "truncate", "shift", "logprobs", "top_logprobs"})
_OLLAMA_EMBED_FIELDS = frozenset({"keep_alive", "truncate", "dimensions"})
_OLLAMA_OPTIONS = frozenset({
    "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p", "tfs_z", "repeat_last_n",
    "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty", "mirostat", "mirostat_tau",
    "mirostat_eta", "penalize_newline", "stop", "numa", "num_ctx", "num_batch", "num_gpu", "main_gpu",
    "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mmap", "use_mlock", "num_thread", "embedding_only",
})
"""Model options Ollama documents; ``extra_body={"num_ctx": 8192}`` lands in ``options``."""

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

_DATA_URI = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.S)


class OllamaAdapter:
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
        preset = get_preset("ollama")
        self.name = name or preset.name
        self.capabilities = capabilities or preset.capabilities
        self.fetch_image_urls = fetch_image_urls
        self.timeout = timeout
        raw_host = host or (preset.url_env and os.environ.get(preset.url_env)) or preset.base_url
        _check_host(self.name, raw_host)
        sent_headers = dict(headers or {})
        if api_key:
            sent_headers["Authorization"] = f"Bearer {api_key}"
        self._client = ollama.AsyncClient(host=raw_host, timeout=timeout, headers=sent_headers,
                                          **({"proxy": proxy} if proxy else {}))
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
        raise self._status_error(404, f"Ollama's native API serves chat completions, embeddings and models, "
                                      f"not {call.options.method.upper()} {call.options.url}", call.options.url)

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
        params, http = _split_params(params)
        extra = params.pop("extra_body", None) or {}
        encoding = params.pop("encoding_format", None) or "float"
        body = {"model": self._required(params, "model"), "input": self._embed_input(params.pop("input", None))}
        if "dimensions" in params:
            body["dimensions"] = params.pop("dimensions")
        params.pop("user", None)
        self._refuse_leftovers(params, "embeddings")
        self._merge_extra(body, {}, extra, _OLLAMA_EMBED_FIELDS)
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
            return await self._client._request(dict, method, path, **kwargs)
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

    def _status_error(self, status: int, message: str, path: str, headers: Mapping[str, str] | None = None) -> openai.APIStatusError:
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

    # -- request conversion -----------------------------------------------
    async def _chat_call(self, params: dict[str, Any], *, stream: bool) -> ChatCall:
        params, http = _split_params(params)
        extra = params.pop("extra_body", None) or {}
        params.pop("stream", None)
        stream_options = params.pop("stream_options", None) or {}
        model = self._required(params, "model")
        messages = params.pop("messages", None)
        if not messages:
            raise self._bad_request("messages must be a non-empty list", code="invalid_request")
        try:
            converted = await self._messages(messages)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise self._bad_request(f"messages are malformed ({type(err).__name__}: {err})", code="invalid_request") from err
        body: dict[str, Any] = {"model": model, "messages": converted, "stream": stream}
        options = self._options(params)
        self._add_format(body, params.pop("response_format", None))
        self._add_tools(body, params.pop("tools", None), params.pop("tool_choice", None))
        single = params.pop("parallel_tool_calls", None) is False
        self._add_sampling_extras(body, params)
        self._refuse_leftovers(params, "chat")
        self._merge_extra(body, options, extra, _OLLAMA_CHAT_FIELDS)
        include_usage = bool(stream_options.get("include_usage"))
        return ChatCall(model, body, http, include_usage=include_usage, single_tool_call=single)

    def _required(self, params: dict[str, Any], key: str) -> Any:
        value = params.pop(key, None)
        if not value:
            raise self._bad_request(f"{key!r} is required", code="invalid_request")
        return value

    def _options(self, params: dict[str, Any]) -> dict[str, Any]:
        """OpenAI sampling parameters as Ollama ``options``; unset ones stay unset (the model's defaults apply)."""
        options = {key: params.pop(key) for key in _OPTIONS_FROM_OPENAI if key in params}
        limit = params.pop("max_completion_tokens", None)
        fallback = params.pop("max_tokens", None)
        if limit is not None or fallback is not None:
            options["num_predict"] = limit if limit is not None else fallback
        stop = params.pop("stop", None)
        if stop is not None:
            options["stop"] = [stop] if isinstance(stop, str) else list(stop)
        n = params.pop("n", None)
        if n not in (None, 1):
            raise self._bad_request(f"n={n} is not supported: Ollama returns one choice per request")
        return options

    def _add_format(self, body: dict[str, Any], response_format: Any) -> None:
        if not response_format:
            return
        kind = response_format.get("type")
        if kind == "json_object":
            body["format"] = "json"
        elif kind == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
            if not isinstance(schema, Mapping):
                raise self._bad_request("response_format json_schema needs a 'schema' object", code="invalid_request")
            body["format"] = dict(schema)
        elif kind != "text":
            raise self._bad_request(f"response_format type {kind!r} is not supported")

    def _add_tools(self, body: dict[str, Any], tools: Any, tool_choice: Any) -> None:
        """Tools go out exactly as given. Ollama has no ``tool_choice``: ``none`` is honoured by not offering tools."""
        if tool_choice not in (None, "auto", "none"):
            raise self._bad_request(
                f"tool_choice={tool_choice!r} is not supported: Ollama cannot force a tool call "
                "(use tool_choice='auto', or response_format json_schema for structured output)")
        if not tools or tool_choice == "none":
            return
        for tool in tools:
            if tool.get("type", "function") != "function":
                raise self._bad_request(f"tools of type {tool.get('type')!r} are not supported (only 'function')")
        body["tools"] = [dict(tool) for tool in tools]

    def _add_sampling_extras(self, body: dict[str, Any], params: dict[str, Any]) -> None:
        if "logprobs" in params:
            body["logprobs"] = bool(params.pop("logprobs"))
        if "top_logprobs" in params:
            body["top_logprobs"] = params.pop("top_logprobs")
        effort = params.pop("reasoning_effort", None)
        if effort is not None:
            body["think"] = False if effort in ("none", "minimal") else effort
        modalities = params.pop("modalities", None)
        if modalities is not None and list(modalities) != ["text"]:
            raise self._bad_request(f"modalities={modalities!r} is not supported: Ollama answers in text only")

    def _refuse_leftovers(self, params: dict[str, Any], what: str) -> None:
        leftovers = sorted(k for k in params if k not in _IGNORED)
        if leftovers:
            raise self._bad_request(f"{what} parameter(s) {', '.join(leftovers)} not supported by Ollama")

    def _merge_extra(self, body: dict[str, Any], options: dict[str, Any], extra: Mapping[str, Any],
                     fields: frozenset[str]) -> None:
        """``extra_body`` as a caller would send it to an OpenAI-compatible server, placed where Ollama reads it."""
        for key, value in extra.items():
            if key in fields:
                body[key] = value
            elif key == "options" and isinstance(value, Mapping):
                options.update(value)
            elif key in _OLLAMA_OPTIONS:
                options[key] = value
            else:
                raise self._bad_request(
                    f"extra_body key {key!r} is neither an Ollama request field nor a model option "
                    "(pass other model options as extra_body={'options': {...}})")
        if options:
            body["options"] = options

    def _embed_input(self, value: Any) -> str | list[str]:
        if isinstance(value, str):
            return value
        if isinstance(value, Iterable):
            items = list(value)
            if all(isinstance(item, str) for item in items):
                return items
        raise self._bad_request("embeddings input must be a string or a list of strings (Ollama takes no token arrays)")

    async def _messages(self, messages: Iterable[Any]) -> list[dict[str, Any]]:
        """OpenAI messages as Ollama messages; a tool result is tied to its call by id and by name."""
        plain = [_as_dict(m) for m in messages]
        names = {call.get("id"): (call.get("function") or {}).get("name")
                 for m in plain for call in (m.get("tool_calls") or [])}
        return [await self._message(m, names) for m in plain]

    async def _message(self, message: dict[str, Any], tool_names: Mapping[Any, Any]) -> dict[str, Any]:
        role = message.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool", "function"):
            raise self._bad_request(f"message role {role!r} is not supported")
        text, images = await self._content(message.get("content"))
        out: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": text}
        if images:
            out["images"] = images
        if role == "assistant":
            self._add_assistant_fields(out, message)
        elif role == "tool":
            out["tool_call_id"] = message.get("tool_call_id")
            out["tool_name"] = message.get("name") or tool_names.get(message.get("tool_call_id"))
        elif role == "function":
            out.update(role="tool", tool_name=message.get("name"))
        return {k: v for k, v in out.items() if v is not None}

    def _add_assistant_fields(self, out: dict[str, Any], message: dict[str, Any]) -> None:
        thinking = message.get("reasoning_content") or message.get("reasoning")
        if thinking:
            out["thinking"] = thinking
        calls = message.get("tool_calls") or []
        if calls:
            out["tool_calls"] = [self._ollama_call(call, i) for i, call in enumerate(calls)]

    def _ollama_call(self, call: Mapping[str, Any], index: int) -> dict[str, Any]:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                raise self._bad_request(f"tool call {call.get('id')!r} has arguments that are not JSON", code="invalid_request") from None
        if not isinstance(arguments, Mapping):
            raise self._bad_request(f"tool call {call.get('id')!r} arguments must be a JSON object", code="invalid_request")
        out = {"function": {"index": index, "name": function.get("name"), "arguments": dict(arguments)}}
        return {"id": call["id"], **out} if call.get("id") else out

    async def _content(self, content: Any) -> tuple[str, list[str]]:
        """Text and base64 images out of a string or a list of content parts."""
        if content is None or isinstance(content, str):
            return content or "", []
        texts: list[str] = []
        images: list[str] = []
        for part in content:
            part = _as_dict(part)
            kind = part.get("type")
            if kind in ("text", "refusal"):
                texts.append(part.get(kind) or "")
            elif kind == "image_url":
                url = part.get("image_url")
                images.append(await self._image(url.get("url") if isinstance(url, Mapping) else url))
            else:
                raise self._bad_request(f"content parts of type {kind!r} are not supported (only text and image_url)")
        return "\n".join(texts), images

    async def _image(self, url: Any) -> str:
        if not isinstance(url, str) or not url:
            raise self._bad_request("image_url needs a url", code="invalid_request")
        if url.startswith("data:"):
            return self._data_uri_image(url)
        if url.startswith(("http://", "https://")):
            if not self.fetch_image_urls:
                raise self._bad_request(
                    "image URLs are not fetched unless OllamaAdapter(fetch_image_urls=True); "
                    "send the image as a data: URI (data:image/png;base64,...)")
            return await self._fetch_image(url)
        raise self._bad_request("image_url must be a data: URI or an http(s) URL", code="invalid_request")

    def _data_uri_image(self, url: str) -> str:
        match = _DATA_URI.match(url)
        if not match:
            raise self._bad_request("image data URIs must be base64 (data:image/png;base64,...)", code="invalid_request")
        data = match.group("data").strip()
        try:
            base64.b64decode(data, validate=True)
        except ValueError:
            raise self._bad_request("image data URI holds invalid base64", code="invalid_request") from None
        return data

    async def _fetch_image(self, url: str) -> str:
        """Download an image for Ollama. A separate client: Ollama's headers and key never go to an image host."""
        shown = url.split("?", 1)[0]
        data = bytearray()
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as client:
                async with client.stream("GET", url) as response:
                    response.raise_for_status()
                    async for piece in response.aiter_bytes():
                        data += piece
                        if len(data) > MAX_IMAGE_BYTES:
                            raise self._bad_request(f"image {shown} is larger than {MAX_IMAGE_BYTES} bytes")
        except httpx.HTTPError as err:
            raise self._bad_request(f"could not fetch image {shown}: {type(err).__name__}", code="invalid_request") from err
        return base64.b64encode(bytes(data)).decode()


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


def _split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Request parameters apart from per-call HTTP options; NOT_GIVEN, omit and None mean "not set"."""
    given = {k: v for k, v in params.items() if not isinstance(v, (openai.NotGiven, openai.Omit))}
    http: dict[str, Any] = {}
    headers = given.pop("extra_headers", None)
    if headers:
        http["headers"] = {k: v for k, v in headers.items() if isinstance(v, str)}
    query = given.pop("extra_query", None)
    if query:
        http["params"] = dict(query)
    if "timeout" in given:
        http["timeout"] = _httpx_timeout(given.pop("timeout"))
    return {k: v for k, v in given.items() if v is not None}, http


def _httpx_timeout(value: Any) -> httpx.Timeout | float | None:
    """A per-call timeout as the ollama SDK's httpx takes it (callers may pass the openai SDK's httpx2 Timeout)."""
    if value is None or isinstance(value, (int, float)):
        return value
    return httpx.Timeout(connect=value.connect, read=value.read, write=value.write, pool=value.pool)


def _as_dict(item: Any) -> dict[str, Any]:
    """A message or part given as the openai SDK's own model (a previous reply appended as is) or as a dict."""
    if hasattr(item, "model_dump"):
        return item.model_dump(exclude_none=True)
    return dict(item)


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
