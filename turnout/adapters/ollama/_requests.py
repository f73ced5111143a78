"""OpenAI requests in Ollama's words: chat and embedding bodies for ``/api/chat`` and ``/api/embed``.

The requests half of :mod:`turnout.adapters.ollama` (``_answers`` is the answers half). What Ollama
cannot honour is refused here, before anything is sent, with the adapter's ``BadRequestError``.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Iterable, Mapping

import httpx
import openai

from ..._errors import UNSUPPORTED
from ._answers import ChatCall

__all__ = ["Requests", "MAX_IMAGE_BYTES", "EMBED_FIELDS", "split_params"]

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""Largest image fetched from a URL (only with ``fetch_image_urls=True``)."""

_IGNORED = frozenset(
    {
        "metadata",
        "store",
        "user",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
    }
)
"""OpenAI bookkeeping parameters: they never change the answer, so Ollama may ignore them."""

_OPTIONS_FROM_OPENAI = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")

_OLLAMA_CHAT_FIELDS = frozenset({"keep_alive", "think", "format", "truncate", "shift", "logprobs", "top_logprobs"})

EMBED_FIELDS = frozenset({"keep_alive", "truncate", "dimensions"})

_OLLAMA_OPTIONS = frozenset(
    {
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "tfs_z",
        "repeat_last_n",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "penalize_newline",
        "stop",
        "numa",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mmap",
        "use_mlock",
        "num_thread",
        "embedding_only",
    }
)
"""Model options Ollama documents; ``extra_body={"num_ctx": 8192}`` lands in ``options``."""

_DATA_URI = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)$", re.S)


class Requests:
    """The request conversions of :class:`~turnout.adapters.ollama.OllamaAdapter` (its base class)."""

    name: str
    timeout: float | None
    fetch_image_urls: bool

    def _bad_request(self, message: str, *, code: str = UNSUPPORTED) -> openai.BadRequestError:
        raise NotImplementedError  # the adapter's: it names the backend and the request

    async def _chat_call(self, params: dict[str, Any], *, stream: bool) -> ChatCall:
        params, http = split_params(params)
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
            raise self._bad_request(
                f"messages are malformed ({type(err).__name__}: {err})", code="invalid_request"
            ) from err
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
                "(use tool_choice='auto', or response_format json_schema for structured output)"
            )
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

    def _merge_extra(
        self, body: dict[str, Any], options: dict[str, Any], extra: Mapping[str, Any], fields: frozenset[str]
    ) -> None:
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
                    "(pass other model options as extra_body={'options': {...}})"
                )
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
        names = {
            call.get("id"): (call.get("function") or {}).get("name")
            for m in plain
            for call in (m.get("tool_calls") or [])
        }
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
                raise self._bad_request(
                    f"tool call {call.get('id')!r} has arguments that are not JSON", code="invalid_request"
                ) from None
        if not isinstance(arguments, Mapping):
            raise self._bad_request(
                f"tool call {call.get('id')!r} arguments must be a JSON object", code="invalid_request"
            )
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
                    "send the image as a data: URI (data:image/png;base64,...)"
                )
            return await self._fetch_image(url)
        raise self._bad_request("image_url must be a data: URI or an http(s) URL", code="invalid_request")

    def _data_uri_image(self, url: str) -> str:
        match = _DATA_URI.match(url)
        if not match:
            raise self._bad_request(
                "image data URIs must be base64 (data:image/png;base64,...)", code="invalid_request"
            )
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
            raise self._bad_request(
                f"could not fetch image {shown}: {type(err).__name__}", code="invalid_request"
            ) from err
        return base64.b64encode(bytes(data)).decode()


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
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
        dumped: dict[str, Any] = item.model_dump(exclude_none=True)
        return dumped
    return dict(item)
