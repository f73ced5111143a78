"""A small server speaking Ollama's native REST API on 127.0.0.1, with faults you switch on.

Built from Ollama's API documentation (docs/api.md, api/types.go): it answers
``POST /api/chat`` (NDJSON stream by default, one JSON object with
``"stream": false``), ``POST /api/embed``, ``GET /api/tags`` and
``GET /api/version``, with errors as ``{"error": "..."}`` and real status
codes. Answers are deterministic: the last user message is echoed, a request
with tools gets a tool call (with a ``call_…`` id and an index, as Ollama
≥ 0.12.10 sends), a tool result is acknowledged by tool name, a ``format``
schema gets JSON that fits it (as Ollama's constrained decoding guarantees).

    server.fail(Fault(status=503, retry_after="1"), times=2)   # the next two requests
    server.fail(Fault(cut_after=2, error_line="boom"))          # an error line mid-stream

Run it standalone with ``python -m tests.support.loopback.ollama_server``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._http import LoopbackHandler, LoopbackServer, image_bytes, pieces, vector
from ._schema import example
from .faults import Fault, RecordedRequest

__all__ = ["Fault", "OllamaServer", "image_bytes"]

MODIFIED_AT = "2024-05-01T10:00:00.123456789-07:00"
"""Go's RFC 3339 with nanoseconds and an offset, as /api/tags sends it (= 1714582800 Unix seconds)."""


@dataclass(eq=False)
class OllamaServer(LoopbackServer):
    """One loopback Ollama. Use as a context manager, or ``start()``/``stop()``."""

    models: list[str] = field(default_factory=lambda: ["test-model"])
    reply: str | None = None
    """Fixed reply text; by default the server echoes the last user message."""
    stream_chunks: int | None = None
    """Split a streamed reply into exactly this many content lines (default: one per word)."""
    stream_delay: float = 0.0
    """Seconds between streamed lines."""
    embedding_dim: int = 8
    tool_calls_per_reply: int = 1
    """How many tool calls a request with tools gets (each on its own line when streamed)."""
    send_tool_call_ids: bool = True
    """Ollama ≥ 0.12.10 sends ``call_…`` ids; older servers send none."""
    done_reason: str | None = None
    """Force the final line's ``done_reason`` (e.g. ``load``/``unload``)."""
    end_without_done: bool = False
    """End streams cleanly but without the final ``done`` line."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Served at ``GET /files/<name>`` (images for the fetch-image-URL tests)."""
    version: str = "0.12.10"
    fit_tool_arguments: bool = False
    """Tool arguments that fit the tool's schema (as for the OpenAI loopback server); by default
    ``{"text": <echo>}`` whatever the schema says, as a model that ignores it would send."""

    @property
    def host(self) -> str:
        """What ``OLLAMA_HOST`` or ``OllamaAdapter(host=...)`` takes."""
        return f"http://127.0.0.1:{self.port}"

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/api/chat"]

    # -- answers -----------------------------------------------------------
    def answer_text(self, body: dict[str, Any]) -> str:
        if self.reply is not None:
            return self.reply
        last = (body.get("messages") or [{}])[-1]
        if last.get("role") == "tool":
            return f"tool {last.get('tool_name')} said: {last.get('content')}"
        text = str(last.get("content") or "")
        if isinstance(body.get("format"), dict):
            return json.dumps(example(body["format"], text))
        if body.get("format"):
            return json.dumps({"echo": text})
        return f"echo: {text}"

    def tool_calls(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        tools = body.get("tools") or []
        last = (body.get("messages") or [{}])[-1]
        if not tools or last.get("role") == "tool":
            return []
        calls = []
        for i in range(self.tool_calls_per_reply):
            fn = tools[i % len(tools)]["function"]
            text = str(last.get("content") or "")
            arguments = (
                example(fn.get("parameters") or {"type": "object"}, text) if self.fit_tool_arguments else {"text": text}
            )
            call: dict[str, Any] = {"function": {"index": i, "name": fn["name"], "arguments": arguments}}
            if self.send_tool_call_ids:
                call = {"id": f"call_srv{i}", **call}
            calls.append(call)
        return calls


class _Handler(LoopbackHandler):
    server_state: OllamaServer

    def route(self, path: str, body: dict[str, Any] | None, fault: Fault | None) -> None:
        state = self.server_state
        if self.command == "GET" and path == "/api/tags":
            self.json(200, {"models": [_tag(m) for m in state.models]})
        elif self.command == "GET" and path == "/api/version":
            self.json(200, {"version": state.version})
        elif self.command == "GET" and path.startswith("/files/") and path[7:] in state.files:
            self.raw(200, state.files[path[7:]], "image/png")
        elif path == "/api/chat" and body is not None:
            self._chat(body, fault)
        elif path == "/api/embed" and body is not None:
            self._embed(body)
        else:
            self.error(404, "404 page not found")

    def error_body(self, status: int, message: str, fault: Fault | None) -> dict[str, Any]:
        return {"error": message}

    def malformed_body(self, body: dict[str, Any] | None) -> tuple[bytes, str]:
        streaming = body is not None and body.get("stream", True)
        return (
            b'{"model": "test-model", "message": {"role": "assist',
            "application/x-ndjson" if streaming else "application/json",
        )

    # -- /api/chat ---------------------------------------------------------
    def _chat(self, body: dict[str, Any], fault: Fault | None) -> None:
        state = self.server_state
        model = body.get("model")
        if model not in state.models:
            self.error(404, f'model "{model}" not found, try pulling it first')
            return
        messages = body.get("messages") or []
        if not messages:  # Ollama loads the model and answers with done_reason "load"
            self._final(body, [], "", "load", 0)
            return
        calls = state.tool_calls(body)
        text = "" if calls else state.answer_text(body)
        done_reason = "stop"
        limit = (body.get("options") or {}).get("num_predict")
        if limit is not None and not calls and limit < len(text.split()):
            text, done_reason = " ".join(text.split()[:limit]), "length"
        thinking = f"thinking about: {_text(messages[-1])}" if body.get("think") else ""
        if body.get("stream", True):
            self._stream_chat(body, text, thinking, calls, state.done_reason or done_reason, fault)
        else:
            self._final(body, calls, text, state.done_reason or done_reason, _words(text) or len(calls), thinking)

    def _final(
        self,
        body: dict[str, Any],
        calls: list[dict[str, Any]],
        text: str,
        done_reason: str,
        eval_count: int,
        thinking: str = "",
    ) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if calls:
            message["tool_calls"] = calls
        final = {**_line(body, message, done=True), **_metrics(body, eval_count), "done_reason": done_reason}
        self.json(200, {**final, **_logprobs(body, pieces(text, None))})

    def _stream_chat(
        self,
        body: dict[str, Any],
        text: str,
        thinking: str,
        calls: list[dict[str, Any]],
        done_reason: str,
        fault: Fault | None,
    ) -> None:
        state = self.server_state
        lines = [
            {"role": "assistant", "content": "", "thinking": piece} for piece in pieces(thinking, None) if thinking
        ]
        lines += [{"role": "assistant", "content": "", "tool_calls": [call]} for call in calls]
        lines += [
            {"role": "assistant", "content": piece} for piece in (pieces(text, state.stream_chunks) if text else [])
        ]
        self.start_chunked("application/x-ndjson")
        try:
            for i, message in enumerate(lines):
                if self._fault_now(fault, i):
                    return
                line = {**_line(body, message, done=False), **_logprobs(body, [message.get("content") or ""])}
                self.chunk(json.dumps(line).encode() + b"\n")
                if state.stream_delay:
                    state.wait(state.stream_delay)
            if self._fault_now(fault, len(lines)):
                return
            if not state.end_without_done:
                final = {
                    **_line(body, {"role": "assistant", "content": ""}, done=True),
                    **_metrics(body, _words(text) or len(calls)),
                    "done_reason": done_reason,
                }
                self.chunk(json.dumps(final).encode() + b"\n")
            self.chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _fault_now(self, fault: Fault | None, sent: int) -> bool:
        """Mid-stream faults: an ``{"error": ...}`` line (then a clean end), or a dropped connection."""
        if fault is None:
            return False
        if fault.error_line is not None and sent >= (fault.cut_after or 0):
            self.chunk(json.dumps({"error": fault.error_line}).encode() + b"\n")
            self.chunk(b"")
            return True
        if fault.cut_after is not None and sent >= fault.cut_after:
            self.drop()
            return True
        return False

    # -- /api/embed --------------------------------------------------------
    def _embed(self, body: dict[str, Any]) -> None:
        state = self.server_state
        model = body.get("model")
        if model not in state.models:
            self.error(404, f'model "{model}" not found, try pulling it first')
            return
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dim = body.get("dimensions") or state.embedding_dim
        self.json(
            200,
            {
                "model": model,
                "embeddings": [vector(str(x), dim) for x in items],
                "total_duration": 1000,
                "load_duration": 10,
                "prompt_eval_count": sum(_words(str(x)) for x in items),
            },
        )


def _now() -> str:
    """Go's RFC 3339 with nanoseconds, as Ollama's ``created_at``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def _line(body: dict[str, Any], message: dict[str, Any], *, done: bool) -> dict[str, Any]:
    return {"model": body.get("model"), "created_at": _now(), "message": message, "done": done}


def _logprobs(body: dict[str, Any], tokens: list[str]) -> dict[str, Any]:
    """Ollama's ``logprobs`` (a token per word here) when the request asked for them."""
    tokens = [t for t in tokens if t]
    if not body.get("logprobs") or not tokens:
        return {}
    top = int(body.get("top_logprobs") or 0)
    return {
        "logprobs": [
            {
                "token": w,
                "logprob": -0.5,
                "bytes": list(w.encode()),
                "top_logprobs": [{"token": w, "logprob": -0.5, "bytes": list(w.encode())}][:top],
            }
            for w in tokens
        ]
    }


def _metrics(body: dict[str, Any], eval_count: int) -> dict[str, int]:
    prompt = sum(_words(_text(m)) for m in body.get("messages") or [])
    return {
        "total_duration": 5_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": prompt,
        "prompt_eval_duration": 1_000_000,
        "eval_count": eval_count,
        "eval_duration": 2_000_000,
    }


def _text(message: dict[str, Any]) -> str:
    return str(message.get("content") or "")


def _words(text: str) -> int:
    return len(text.split())


def _tag(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": MODIFIED_AT,
        "size": 1234,
        "digest": "0" * 64,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "1B",
            "quantization_level": "Q4_0",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--reply", default=None)
    args = parser.parse_args()
    OllamaServer(models=args.model or ["test-model"], reply=args.reply).serve_until_interrupted(args.port)


OllamaServer.handler = _Handler

if __name__ == "__main__":
    main()
