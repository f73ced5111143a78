"""A small server speaking the OpenAI HTTP protocol on 127.0.0.1, with faults you switch on.

It answers ``/v1/chat/completions`` (JSON and SSE with ``[DONE]`` and a usage
chunk), ``/v1/embeddings`` and ``/v1/models`` deterministically, records
every request it receives, and can misbehave on demand:

    server.fail(Fault(status=503, retry_after="1"), times=2)   # the next two requests
    server.fail(Fault(close=True))                             # every request from now on

Run it standalone (for benchmarks) with ``python -m tests.loopback.openai_server``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ._http import LoopbackHandler, LoopbackServer, pieces, vector
from .faults import Fault, RecordedRequest

__all__ = ["OpenAIServer", "Fault"]


@dataclass(eq=False)
class OpenAIServer(LoopbackServer):
    """One loopback server. Use as a context manager, or ``start()``/``stop()``."""

    models: list[str] = field(default_factory=lambda: ["test-model"])
    reply: str | None = None
    """Fixed reply text; by default the server echoes the last user message."""
    stream_chunks: int | None = None
    """Split a streamed reply into exactly this many content chunks."""
    stream_delay: float = 0.0
    """Seconds between streamed chunks."""
    embedding_dim: int = 8
    name: str = "loopback"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # -- answers -----------------------------------------------------------
    def answer_text(self, body: dict[str, Any]) -> str:
        if self.reply is not None:
            return self.reply
        last = _last_message(body.get("messages") or [])
        if last.get("role") == "tool":
            return f"tool said: {last.get('content')}"
        text = _text_of(last.get("content"))
        fmt = (body.get("response_format") or {}).get("type")
        if fmt in ("json_object", "json_schema"):
            return json.dumps({"echo": text})
        return f"echo: {text}"

    def wants_tool_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        tools = body.get("tools") or []
        last = _last_message(body.get("messages") or [])
        if not tools or body.get("tool_choice") == "none" or last.get("role") == "tool":
            return None
        fn = tools[0]["function"]
        return {"name": fn["name"], "arguments": json.dumps({"text": _text_of(last.get("content"))})}


class _Handler(LoopbackHandler):
    server_state: OpenAIServer

    def route(self, path: str, body: dict[str, Any] | None, fault: Fault | None) -> None:
        if self.command == "GET" and path.endswith("/models"):
            self.json(200, {"object": "list", "data": [_model(m) for m in self.server_state.models]})
        elif path.endswith("/chat/completions") and body is not None:
            self._chat(body, fault)
        elif path.endswith("/embeddings") and body is not None:
            self._embeddings(body)
        else:
            self.error(404, f"no route for {self.command} {path}")

    def error_body(self, status: int, message: str, fault: Fault | None) -> dict[str, Any]:
        kind = fault.error_type if fault is not None else "invalid_request_error"
        code = fault.code if fault is not None else None
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def _chat(self, body: dict[str, Any], fault: Fault | None) -> None:
        state = self.server_state
        model = body.get("model")
        if model not in state.models:
            self.error(404, f"The model `{model}` does not exist", Fault(error_type="invalid_request_error", code="model_not_found"))
            return
        if not body.get("messages"):
            self.error(400, "'messages' is a required property", Fault(error_type="invalid_request_error", code="invalid_request"))
            return
        tool = state.wants_tool_call(body)
        text = None if tool else state.answer_text(body)
        usage = _usage(body, text or json.dumps(tool))
        if body.get("stream"):
            self._stream_chat(body, model, text, tool, usage, fault)
            return
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish = "stop"
        if tool:
            message["tool_calls"] = [{"id": "call_1", "type": "function", "function": tool}]
            finish = "tool_calls"
        elif body.get("max_tokens") is not None and body["max_tokens"] < len(text.split()):  # type: ignore[union-attr]
            message["content"] = " ".join(text.split()[: body["max_tokens"]])  # type: ignore[union-attr]
            finish = "length"
        self.json(200, {
            "id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
        })

    def _stream_chat(self, body: dict[str, Any], model: str, text: str | None, tool: dict[str, Any] | None,
                     usage: dict[str, int], fault: Fault | None) -> None:
        state = self.server_state
        base = {"id": "chatcmpl-loopback", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if tool:
            deltas.append({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": tool}]})
        else:
            deltas.extend({"content": piece} for piece in pieces(text or "", state.stream_chunks))
        self.start_chunked("text/event-stream")
        if fault is not None and fault.empty:
            deltas = []
        try:
            for i, delta in enumerate(deltas):
                if fault is not None and fault.cut_after is not None and i >= fault.cut_after:
                    self.drop()
                    return
                self.event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                if state.stream_delay:
                    state.wait(state.stream_delay)
            if deltas:
                self.event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if tool else "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                self.event({**base, "choices": [], "usage": usage})
            self.chunk(b"data: [DONE]\n\n")
            self.chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def event(self, payload: dict[str, Any]) -> None:
        self.chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _embeddings(self, body: dict[str, Any]) -> None:
        state = self.server_state
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dim = body.get("dimensions") or state.embedding_dim
        data = [{"object": "embedding", "index": i, "embedding": vector(str(x), dim)} for i, x in enumerate(items)]
        tokens = sum(len(str(x).split()) for x in items)
        self.json(200, {"object": "list", "data": data, "model": body.get("model"),
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _last_message(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return messages[-1] if messages else {}


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content or "")


def _usage(body: dict[str, Any], answer: str) -> dict[str, int]:
    prompt = sum(len(_text_of(m.get("content")).split()) for m in body.get("messages") or [])
    completion = len(answer.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "loopback"}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--reply", default=None)
    parser.add_argument("--stream-chunks", type=int, default=None)
    args = parser.parse_args()
    server = OpenAIServer(models=args.model or ["test-model"], reply=args.reply, stream_chunks=args.stream_chunks)
    server.serve_until_interrupted(args.port)


OpenAIServer.handler = _Handler


if __name__ == "__main__":
    main()
