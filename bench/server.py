"""A fast OpenAI-protocol server for benchmarks: asyncio protocols, answers precomputed in memory.

The test suite's loopback server (threads, ``http.server``, faults) is built
for realism, and at a few hundred requests per second it, not the client,
would be what a throughput benchmark measured. This one parses just enough
HTTP/1.1 (request line, ``Content-Length``, keep-alive) to answer from bytes
built at start-up, so the client side is the bottleneck: what we measure.

It runs in its own process (``python -m bench.server``) so it never shares the
client's event loop or GIL, and it prints one JSON line with its ports:

    {"ok": 41234, "err503": 41235}

``ok`` answers chat (JSON, or a 200-chunk SSE stream when the body asks for
``"stream":true``) and ``/models``; ``err503`` answers every request with 503.
It exits when its standard input closes, so it never outlives the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
from typing import Callable

STREAM_CHUNKS = 200

_BASE = {"id": "chatcmpl-bench", "created": 1700000000, "model": "bench-model"}


def _response(status: str, body: bytes, ctype: str = "application/json", extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
        f"{extra}connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


def _chat() -> bytes:
    body = {
        **_BASE,
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    return _response("200 OK", json.dumps(body).encode())


def _stream() -> bytes:
    """200 chunks (role, content, finish) and ``[DONE]``, chunked-encoded as real servers send them."""
    events = []
    deltas = [{"role": "assistant", "content": ""}] + [{"content": f"t{i} "} for i in range(STREAM_CHUNKS - 2)]
    for delta in deltas:
        events.append(
            {
                **_BASE,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
        )
    events.append(
        {**_BASE, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    )
    out = b""
    for payload in [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]:
        out += f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
    out += b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
    return head + out


def _models() -> bytes:
    body = {
        "object": "list",
        "data": [{"id": "bench-model", "object": "model", "created": 1700000000, "owned_by": "bench"}],
    }
    return _response("200 OK", json.dumps(body).encode())


CHAT, STREAM, MODELS = _chat(), _stream(), _models()
NOT_FOUND = _response("404 Not Found", b'{"error":{"message":"no route","type":"invalid_request_error"}}')
UNAVAILABLE = _response(
    "503 Service Unavailable", b'{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}'
)


def _answer_ok(method: bytes, path: bytes, body: bytes) -> bytes:
    if path.endswith(b"/chat/completions"):
        return STREAM if (b'"stream":true' in body or b'"stream": true' in body) else CHAT
    if path.endswith(b"/models"):
        return MODELS
    return NOT_FOUND


def _answer_503(method: bytes, path: bytes, body: bytes) -> bytes:
    return UNAVAILABLE


class _HTTP(asyncio.Protocol):
    """Keep-alive HTTP/1.1 with ``Content-Length`` bodies; enough for the openai SDK's requests."""

    def __init__(self, answer: Callable[[bytes, bytes, bytes], bytes]) -> None:
        self.answer = answer
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else len(lower)])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = self.buf[end + 4 : total]
            self.buf = self.buf[total:]
            line_end = head.find(b"\r\n")
            method, path, _ = (head[:line_end] if line_end >= 0 else head).split(b" ", 2)
            assert self.transport is not None
            self.transport.write(self.answer(method, path, body))


async def _serve(ready: Callable[[dict[str, int]], None]) -> None:
    loop = asyncio.get_running_loop()
    ok = await loop.create_server(lambda: _HTTP(_answer_ok), "127.0.0.1", 0, backlog=4096)
    err = await loop.create_server(lambda: _HTTP(_answer_503), "127.0.0.1", 0, backlog=4096)
    ready({"ok": ok.sockets[0].getsockname()[1], "err503": err.sockets[0].getsockname()[1]})
    stop = asyncio.Event()
    # Stop when the parent closes our stdin (it exited or is done), so no server is ever left behind.
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True).start()
    await stop.wait()
    ok.close()
    err.close()


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    asyncio.run(_serve(lambda ports: print(json.dumps(ports), flush=True)))
    os._exit(0)


if __name__ == "__main__":
    main()
