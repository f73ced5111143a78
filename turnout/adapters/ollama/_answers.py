"""Ollama's answers in the OpenAI wire format: completions, stream chunks, embeddings, models.

The answers half of :mod:`turnout.adapters.ollama` (``_requests`` converts the requests, ``_adapter``
sends them): here Ollama's native ``/api/chat``, ``/api/embed`` and
``/api/tags`` answers become the openai SDK's types, and a stream becomes the
server-sent events an OpenAI server would send.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterable, Mapping

import httpx2
from openai.types import CreateEmbeddingResponse, Embedding, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk


@dataclass
class ChatCall:
    """One chat request in Ollama's wire shape, plus what the answer's conversion needs to know."""

    model: str
    body: dict[str, Any]
    http: dict[str, Any]
    include_usage: bool = False
    single_tool_call: bool = False


class EventStream(httpx2.AsyncByteStream):
    """Chunks as the OpenAI wire's server-sent events, ``[DONE]`` last; closing it stops the Ollama stream."""

    def __init__(self, chunks: AsyncIterator[ChatCompletionChunk]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield b"data: " + chunk.to_json(indent=None, warnings=False).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]


def completion(raw: Mapping[str, Any], call: ChatCall) -> ChatCompletion:
    message = raw["message"]
    calls = [_openai_call(c) for c in message.get("tool_calls") or []]
    if call.single_tool_call:
        calls = calls[:1]
    content = message.get("content") or ""
    reply: dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
    if calls:
        reply["tool_calls"] = calls
    if message.get("thinking"):
        reply["reasoning_content"] = message["thinking"]
    choice = {
        "index": 0,
        "message": reply,
        "finish_reason": _finish_reason(raw.get("done_reason"), bool(calls)),
        "logprobs": _logprobs(raw.get("logprobs")),
    }
    return ChatCompletion.model_validate(
        {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": _created(raw.get("created_at")),
            "model": raw.get("model") or call.model,
            "choices": [choice],
            "usage": _usage(raw),
        }
    )


def _openai_call(call: Mapping[str, Any], index: int | None = None) -> dict[str, Any]:
    """An Ollama tool call in OpenAI's shape: the server's id kept (else a fresh ``call_…``), arguments as JSON text."""
    function = call["function"]
    arguments = function.get("arguments")
    out = {
        "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {
            "name": function["name"],
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments or {}, ensure_ascii=False),
        },
    }
    return out if index is None else {"index": index, **out}


def _finish_reason(done_reason: Any, tool_calls: bool) -> str:
    """OpenAI knows stop, length, tool_calls: Ollama reports tool calls as ``stop``, and has ``load``/``unload``."""
    if tool_calls:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def _usage(raw: Mapping[str, Any]) -> dict[str, int]:
    prompt = int(raw.get("prompt_eval_count") or 0)
    completion = int(raw.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _logprobs(entries: Any) -> dict[str, Any] | None:
    if not entries:
        return None
    return {"content": [_token_logprob(e) for e in entries], "refusal": None}


def _token_logprob(entry: Mapping[str, Any]) -> dict[str, Any]:
    top = [
        {"token": t["token"], "logprob": t["logprob"], "bytes": t.get("bytes")} for t in entry.get("top_logprobs") or []
    ]
    return {"token": entry["token"], "logprob": entry["logprob"], "bytes": entry.get("bytes"), "top_logprobs": top}


@dataclass
class StreamState:
    """What turns Ollama's NDJSON lines into one OpenAI chunk stream: one id, the role once, ordered tool indexes."""

    call: ChatCall
    id: str = field(default_factory=lambda: _completion_id())
    created: int = field(default_factory=lambda: int(time.time()))
    sent: int = 0
    done: bool = False
    role_sent: bool = False
    tool_calls: int = 0

    def feed(self, part: Mapping[str, Any]) -> list[ChatCompletionChunk]:
        message = part.get("message") or {}
        delta = self._delta(message)
        chunks: list[ChatCompletionChunk] = []
        if delta or not self.role_sent:
            if not self.role_sent:
                delta = {"role": "assistant", "content": delta.pop("content", ""), **delta}
                self.role_sent = True
            chunks.append(self._chunk(part, delta, None, _logprobs(part.get("logprobs"))))
        if part.get("done"):
            self.done = True
            chunks.append(self._chunk(part, {}, _finish_reason(part.get("done_reason"), self.tool_calls > 0)))
            if self.call.include_usage:
                chunks.append(self._usage_chunk(part))
        return chunks

    def _delta(self, message: Mapping[str, Any]) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        if message.get("content"):
            delta["content"] = message["content"]
        if message.get("thinking"):
            delta["reasoning_content"] = message["thinking"]
        calls = []
        for call in message.get("tool_calls") or []:
            if self.call.single_tool_call and self.tool_calls:
                break
            calls.append(
                _openai_call(call, self.tool_calls)
            )  # numbered in arrival order: what OpenAI accumulators need
            self.tool_calls += 1
        if calls:
            delta["tool_calls"] = calls
        return delta

    def _chunk(
        self, part: Mapping[str, Any], delta: dict[str, Any], finish: str | None, logprobs: dict[str, Any] | None = None
    ) -> ChatCompletionChunk:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        return self._build(part, [choice])

    def _usage_chunk(self, part: Mapping[str, Any]) -> ChatCompletionChunk:
        return self._build(part, [], usage=_usage(part))

    def _build(
        self, part: Mapping[str, Any], choices: list[dict[str, Any]], usage: dict[str, int] | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": part.get("model") or self.call.model,
                "choices": choices,
                "usage": usage,
            }
        )


def embedding_response(raw: Mapping[str, Any], model: str, encoding: str) -> CreateEmbeddingResponse:
    vectors = raw["embeddings"]
    tokens = int(raw.get("prompt_eval_count") or 0)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    if encoding == "base64":  # the openai type says list[float]; a caller asking base64 gets what OpenAI sends
        data = [
            Embedding.model_construct(object="embedding", index=i, embedding=_b64_floats(v))
            for i, v in enumerate(vectors)
        ]
        return CreateEmbeddingResponse.model_construct(
            object="list", data=data, model=raw.get("model") or model, usage=usage
        )
    data_raw = [{"object": "embedding", "index": i, "embedding": list(v)} for i, v in enumerate(vectors)]
    return CreateEmbeddingResponse.model_validate(
        {"object": "list", "data": data_raw, "model": raw.get("model") or model, "usage": usage}
    )


def _b64_floats(vector: Iterable[float]) -> str:
    values = list(vector)
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def model_of(entry: Mapping[str, Any], owner: str) -> Model:
    return Model(
        id=entry.get("model") or entry["name"],
        object="model",
        created=_created(entry.get("modified_at")),
        owned_by=owner,
    )


# -- small helpers ------------------------------------------------------------


def _created(stamp: Any) -> int:
    """Unix seconds from Ollama's RFC 3339 time (nanoseconds, ``Z`` or an offset); now when absent."""
    if not isinstance(stamp, str) or not stamp:
        return int(time.time())
    text = re.sub(r"\.(\d+)", lambda m: "." + m.group(1)[:6].ljust(6, "0"), stamp.strip()).replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return int(time.time())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"
