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
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .faults import Fault, FaultQueue, RecordedRequest

__all__ = ["OpenAIServer", "Fault"]

HANG_LIMIT = 30.0
"""A hung request is released after this long, or when the server stops."""


@dataclass
class OpenAIServer:
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

    def __post_init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults = FaultQueue()
        self.open_connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self, port: int = 0) -> OpenAIServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = _Server(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name=f"openai-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- faults and records -----------------------------------------------
    def fail(self, fault: Fault, times: int | None = None) -> None:
        """Apply ``fault`` to the next ``times`` requests (every request when ``None``)."""
        self.faults.add(fault, times)

    def heal(self) -> None:
        self.faults.clear()

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


class _Server(ThreadingHTTPServer):
    request_queue_size = 2048  # load tests open many connections at once
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: OpenAIServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls
        with self.server_state._lock:
            self.server_state.open_connections += 1

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away: that is its right

    def finish(self) -> None:
        try:
            super().finish()
        except ConnectionError:
            pass
        finally:
            with self.server_state._lock:
                self.server_state.open_connections -= 1

    # -- routing -----------------------------------------------------------
    def do_GET(self) -> None:
        self._serve(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        self._serve(body)

    def _serve(self, body: dict[str, Any] | None) -> None:
        state = self.server_state
        path = self.path.split("?", 1)[0]
        state.requests.append(RecordedRequest(self.command, path, dict(self.headers.items()), body))
        fault = state.faults.take()
        if fault is not None and self._apply_fault(fault):
            return
        if self.command == "GET" and path.endswith("/models"):
            self._json(200, {"object": "list", "data": [_model(m) for m in state.models]})
        elif path.endswith("/chat/completions") and body is not None:
            self._chat(body, fault)
        elif path.endswith("/embeddings") and body is not None:
            self._embeddings(body)
        else:
            self._error(404, f"no route for {self.command} {path}", "invalid_request_error")

    def _apply_fault(self, fault: Fault) -> bool:
        """Carry out the fault's before-answer part; True when nothing more is to be sent."""
        if fault.delay:
            self.server_state._stopping.wait(fault.delay)
        if fault.hang:
            self.server_state._stopping.wait(HANG_LIMIT)
            self.close_connection = True
            return True
        if fault.close:
            self._drop()
            return True
        if fault.status is not None:
            self._error(fault.status, fault.message or f"injected {fault.status}", fault.error_type, fault.retry_after, fault.retry_after_ms, fault.code)
            return True
        if fault.malformed:
            self._raw(200, b'{"id": "chatcmpl-broken", "choices": [', "application/json")
            return True
        return False

    def _chat(self, body: dict[str, Any], fault: Fault | None) -> None:
        state = self.server_state
        model = body.get("model")
        if model not in state.models:
            self._error(404, f"The model `{model}` does not exist", "invalid_request_error", code="model_not_found")
            return
        if not body.get("messages"):
            self._error(400, "'messages' is a required property", "invalid_request_error", code="invalid_request")
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
        self._json(200, {
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
            deltas.extend({"content": piece} for piece in _pieces(text or "", state.stream_chunks))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if fault is not None and fault.empty:
            deltas = []
        try:
            for i, delta in enumerate(deltas):
                if fault is not None and fault.cut_after is not None and i >= fault.cut_after:
                    self._drop()
                    return
                self._event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                if state.stream_delay:
                    state._stopping.wait(state.stream_delay)
            if deltas:
                self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if tool else "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                self._event({**base, "choices": [], "usage": usage})
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _embeddings(self, body: dict[str, Any]) -> None:
        state = self.server_state
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dim = body.get("dimensions") or state.embedding_dim
        data = [{"object": "embedding", "index": i, "embedding": _vector(str(x), dim)} for i, x in enumerate(items)]
        tokens = sum(len(str(x).split()) for x in items)
        self._json(200, {"object": "list", "data": data, "model": body.get("model"),
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # -- wire helpers ------------------------------------------------------
    def _event(self, payload: dict[str, Any]) -> None:
        self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "server_error", retry_after: str | None = None,
               retry_after_ms: str | None = None, code: str | None = None) -> None:
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if retry_after_ms is not None:
            headers["retry-after-ms"] = retry_after_ms
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        self._json(status, body, headers)

    def _drop(self) -> None:
        """Close the socket at once, with a reset so the client sees no clean end."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _last_message(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return messages[-1] if messages else {}


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content or "")


def _pieces(text: str, count: int | None) -> list[str]:
    if count is None:
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]
    size = max(1, -(-len(text) // count)) if text else 1
    parts = [text[i * size:(i + 1) * size] for i in range(count)]
    return [p or "." for p in parts]


def _usage(body: dict[str, Any], answer: str) -> dict[str, int]:
    prompt = sum(len(_text_of(m.get("content")).split()) for m in body.get("messages") or [])
    completion = len(answer.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _vector(text: str, dim: int) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (i + 1)) % 97) / 97.0 for i in range(dim)]


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "loopback"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--reply", default=None)
    parser.add_argument("--stream-chunks", type=int, default=None)
    args = parser.parse_args()
    server = OpenAIServer(models=args.model or ["test-model"], reply=args.reply, stream_chunks=args.stream_chunks)
    server.start(args.port)
    print(server.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
