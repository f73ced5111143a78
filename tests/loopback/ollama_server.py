"""A small server speaking Ollama's native REST API on 127.0.0.1, with faults you switch on.

Built from Ollama's API documentation (docs/api.md, api/types.go): it answers
``POST /api/chat`` (NDJSON stream by default, one JSON object with
``"stream": false``), ``POST /api/embed``, ``GET /api/tags`` and
``GET /api/version``, with errors as ``{"error": "..."}`` and real status
codes. Answers are deterministic: the last user message is echoed, a request
with tools gets a tool call (with a ``call_…`` id and an index, as Ollama
≥ 0.12.10 sends), a tool result is acknowledged by tool name.

    server.fail(Fault(status=503, retry_after="1"), times=2)   # the next two requests
    server.fail(Fault(cut_after=2, error_line="boom"))          # an error line mid-stream

Run it standalone with ``python -m tests.loopback.ollama_server``.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .faults import Fault, FaultQueue, RecordedRequest

__all__ = ["OllamaServer", "Fault"]

HANG_LIMIT = 30.0
"""A hung request is released after this long, or when the server stops."""

MODIFIED_AT = "2024-05-01T10:00:00.123456789-07:00"
"""Go's RFC 3339 with nanoseconds and an offset, as /api/tags sends it (= 1714582800 Unix seconds)."""


@dataclass
class OllamaServer:
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

    def __post_init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults = FaultQueue()
        self.open_connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self, port: int = 0) -> OllamaServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name=f"ollama-server-{self.port}", daemon=True)
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

    def __enter__(self) -> OllamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        """What ``OLLAMA_HOST`` or ``OllamaAdapter(host=...)`` takes."""
        return f"http://127.0.0.1:{self.port}"

    # -- faults and records -----------------------------------------------
    def fail(self, fault: Fault, times: int | None = None) -> None:
        """Apply ``fault`` to the next ``times`` requests (every request when ``None``)."""
        self.faults.add(fault, times)

    def heal(self) -> None:
        self.faults.clear()

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
            call: dict[str, Any] = {"function": {"index": i, "name": fn["name"], "arguments": {"text": str(last.get("content") or "")}}}
            if self.send_tool_call_ids:
                call = {"id": f"call_srv{i}", **call}
            calls.append(call)
        return calls


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: OllamaServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.server_state._lock:
            self.server_state.open_connections += 1

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

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
        if fault is not None and self._apply_fault(fault, body):
            return
        if self.command == "GET" and path == "/api/tags":
            self._json(200, {"models": [_tag(m) for m in state.models]})
        elif self.command == "GET" and path == "/api/version":
            self._json(200, {"version": state.version})
        elif self.command == "GET" and path.startswith("/files/") and path[7:] in state.files:
            self._raw(200, state.files[path[7:]], "image/png")
        elif path == "/api/chat" and body is not None:
            self._chat(body, fault)
        elif path == "/api/embed" and body is not None:
            self._embed(body)
        else:
            self._error(404, "404 page not found")

    def _apply_fault(self, fault: Fault, body: dict[str, Any] | None) -> bool:
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
            self._error(fault.status, fault.message or f"injected {fault.status}", fault.retry_after, fault.retry_after_ms)
            return True
        if fault.malformed:
            streaming = body is not None and body.get("stream", True)
            ctype = "application/x-ndjson" if streaming else "application/json"
            self._raw(200, b'{"model": "test-model", "message": {"role": "assist', ctype)
            return True
        return False

    # -- /api/chat ---------------------------------------------------------
    def _chat(self, body: dict[str, Any], fault: Fault | None) -> None:
        state = self.server_state
        model = body.get("model")
        if model not in state.models:
            self._error(404, f'model "{model}" not found, try pulling it first')
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

    def _final(self, body: dict[str, Any], calls: list[dict[str, Any]], text: str, done_reason: str,
               eval_count: int, thinking: str = "") -> None:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if calls:
            message["tool_calls"] = calls
        final = {**_line(body, message, done=True), **_metrics(body, eval_count), "done_reason": done_reason}
        self._json(200, {**final, **_logprobs(body, _pieces(text, None))})

    def _stream_chat(self, body: dict[str, Any], text: str, thinking: str, calls: list[dict[str, Any]],
                     done_reason: str, fault: Fault | None) -> None:
        state = self.server_state
        lines = [{"role": "assistant", "content": "", "thinking": piece} for piece in _pieces(thinking, None) if thinking]
        lines += [{"role": "assistant", "content": "", "tool_calls": [call]} for call in calls]
        lines += [{"role": "assistant", "content": piece} for piece in (_pieces(text, state.stream_chunks) if text else [])]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i, message in enumerate(lines):
                if self._fault_now(fault, i):
                    return
                line = {**_line(body, message, done=False), **_logprobs(body, [message.get("content") or ""])}
                self._chunk(json.dumps(line).encode() + b"\n")
                if state.stream_delay:
                    state._stopping.wait(state.stream_delay)
            if self._fault_now(fault, len(lines)):
                return
            if not state.end_without_done:
                final = {**_line(body, {"role": "assistant", "content": ""}, done=True),
                         **_metrics(body, _words(text) or len(calls)), "done_reason": done_reason}
                self._chunk(json.dumps(final).encode() + b"\n")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _fault_now(self, fault: Fault | None, sent: int) -> bool:
        """Mid-stream faults: an ``{"error": ...}`` line (then a clean end), or a dropped connection."""
        if fault is None:
            return False
        if fault.error_line is not None and sent >= (fault.cut_after or 0):
            self._chunk(json.dumps({"error": fault.error_line}).encode() + b"\n")
            self._chunk(b"")
            return True
        if fault.cut_after is not None and sent >= fault.cut_after:
            self._drop()
            return True
        return False

    # -- /api/embed --------------------------------------------------------
    def _embed(self, body: dict[str, Any]) -> None:
        state = self.server_state
        model = body.get("model")
        if model not in state.models:
            self._error(404, f'model "{model}" not found, try pulling it first')
            return
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dim = body.get("dimensions") or state.embedding_dim
        self._json(200, {"model": model, "embeddings": [_vector(str(x), dim) for x in items],
                         "total_duration": 1000, "load_duration": 10, "prompt_eval_count": sum(_words(str(x)) for x in items)})

    # -- wire helpers ------------------------------------------------------
    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)

    def _raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, retry_after: str | None = None, retry_after_ms: str | None = None) -> None:
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if retry_after_ms is not None:
            headers["retry-after-ms"] = retry_after_ms
        self._json(status, {"error": message}, headers)

    def _drop(self) -> None:
        """Close the socket at once, with a reset so the client sees no clean end."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


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
    return {"logprobs": [{"token": w, "logprob": -0.5, "bytes": list(w.encode()),
                          "top_logprobs": [{"token": w, "logprob": -0.5, "bytes": list(w.encode())}][:top]}
                         for w in tokens]}


def _metrics(body: dict[str, Any], eval_count: int) -> dict[str, int]:
    prompt = sum(_words(_text(m)) for m in body.get("messages") or [])
    return {"total_duration": 5_000_000, "load_duration": 1_000_000, "prompt_eval_count": prompt,
            "prompt_eval_duration": 1_000_000, "eval_count": eval_count, "eval_duration": 2_000_000}


def _text(message: dict[str, Any]) -> str:
    return str(message.get("content") or "")


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str, count: int | None) -> list[str]:
    if count is None:
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]
    size = max(1, -(-len(text) // count)) if text else 1
    return [text[i * size:(i + 1) * size] or "." for i in range(count)]


def _vector(text: str, dim: int) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (i + 1)) % 97) / 97.0 for i in range(dim)]


def _tag(name: str) -> dict[str, Any]:
    return {"name": name, "model": name, "modified_at": MODIFIED_AT, "size": 1234, "digest": "0" * 64,
            "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                        "parameter_size": "1B", "quantization_level": "Q4_0"}}


def image_bytes() -> bytes:
    """A tiny valid PNG (1x1), for image tests."""
    return base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--reply", default=None)
    args = parser.parse_args()
    server = OllamaServer(models=args.model or ["test-model"], reply=args.reply)
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
