"""What every loopback server shares: lifecycle on a free 127.0.0.1 port, requests
recorded, faults taken per request, connection counting and the wire helpers
(JSON and multipart/form-data bodies, chunked request bodies, request ids).

A protocol server subclasses :class:`LoopbackServer` (naming its handler) and
:class:`LoopbackHandler` (routing requests and shaping error bodies).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import select
import socket
import threading
import time
from email.parser import BytesHeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, ClassVar
from urllib.parse import parse_qsl

from .faults import Fault, FaultQueue, FormFile, RecordedRequest

HANG_LIMIT = 30.0
"""A hung request is released after this long, or when the server stops."""

_request_numbers = itertools.count(1)
"""Process-wide, so a request id names one request of one server even with several servers running."""


class _Server(ThreadingHTTPServer):
    request_queue_size = 2048  # load tests open many connections at once
    daemon_threads = True


class LoopbackServer:
    """Start on a free port (or use as a context manager), switch faults on, read what was received."""

    handler: ClassVar[type[LoopbackHandler]]

    def __post_init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.faults = FaultQueue()
        self.open_connections = 0
        self.connections_made = 0
        """Every connection ever accepted: a client that reuses its connections makes few."""
        self.latency: float | Callable[[int], float] = 0.0
        """Seconds every request waits before it is answered, or a schedule: request number (from 1) -> seconds."""
        self.answered = 0
        """Requests answered (or failed by a fault) to the end, not abandoned by their client."""
        self.abandoned = 0
        """Requests whose client hung up while this server was still working on them (a delay, a hang, a stall)."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, port: int = 0) -> Any:
        handler = type("Handler", (self.handler,), {"server_state": self})
        self._httpd = _Server(("127.0.0.1", port), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name=f"{type(self).__name__}-{self.port}", daemon=True
        )
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

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    def fail(self, fault: Fault, times: int | None = None) -> None:
        """Apply ``fault`` to the next ``times`` requests (every request when ``None``)."""
        self.faults.add(fault, times)

    def heal(self) -> None:
        self.faults.clear()

    async def released(self, limit: float = 4.0) -> bool:
        """Whether every client connection closes within ``limit`` seconds (the server notices a
        closed socket only at its next read or write, so this polls)."""
        for _ in range(int(limit / 0.02)):
            if self.open_connections == 0:
                return True
            await asyncio.sleep(0.02)
        return self.open_connections == 0

    def wait(self, seconds: float) -> None:
        """Sleep, but wake when the server stops."""
        self._stopping.wait(seconds)

    def latency_of(self, number: int) -> float:
        latency = self.latency
        return latency(number) if callable(latency) else latency

    def serve_until_interrupted(self, port: int) -> None:
        """For ``python -m``: print the port, serve until Ctrl-C."""
        self.start(port)
        print(self.port, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


class LoopbackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: Any
    request_id_prefix: ClassVar[str | None] = None
    """When set, every answer carries ``x-request-id: <prefix><n>`` (n unique in the process)."""
    request_id: str | None = None
    fault: Fault | None = None
    query: dict[str, str]

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls
        with self.server_state._lock:
            self.server_state.open_connections += 1
            self.server_state.connections_made += 1

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

    # -- one request ------------------------------------------------------------
    def handle_one_request(self) -> None:
        self.request_id = None  # a keep-alive connection's next request gets its own
        self.fault = None
        super().handle_one_request()

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        if self.request_id is not None:
            self.send_header("x-request-id", self.request_id)
        for name, value in (self.fault.headers if self.fault is not None else {}).items():
            self.send_header(name, value)

    def do_GET(self) -> None:
        self._receive(None)

    def do_DELETE(self) -> None:
        self._receive(None)

    def do_POST(self) -> None:
        raw = self._read_body()
        ctype = self.headers.get("Content-Type") or ""
        if ctype.lower().startswith("multipart/form-data"):
            form = parse_multipart(raw, ctype)
            self._receive(form, form=form, raw=raw)
            return
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        self._receive(body, raw=raw)

    def _read_body(self) -> bytes:
        """The request body, by ``Content-Length`` or chunked (clients streaming an upload send that)."""
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        parts = []
        while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers, then the blank line
            pass
        return b"".join(parts)

    def _receive(self, body: dict[str, Any] | None, form: dict[str, Any] | None = None, raw: bytes = b"") -> None:
        state = self.server_state
        path, _, query = self.path.partition("?")
        self.query = dict(parse_qsl(query))
        if self.request_id_prefix is not None:
            self.request_id = f"{self.request_id_prefix}{next(_request_numbers)}"
        with state._lock:
            state.requests.append(
                RecordedRequest(
                    self.command,
                    path,
                    dict(self.headers.items()),
                    None if form is not None else body,
                    form,
                    self.query,
                    self.request_id,
                    raw,
                )
            )
            number = len(state.requests)
        if not self.idle(state.latency_of(number)):
            self.close_connection = True
            return
        fault = self.fault = state.faults.take()
        if fault is not None and self._apply_fault(fault, body):
            return
        self.route(path, body, fault)
        with state._lock:
            state.answered += 1

    def route(self, path: str, body: dict[str, Any] | None, fault: Fault | None) -> None:
        """Answer one request: ``body`` is the JSON body, or the multipart fields; ``self.query`` the query."""
        raise NotImplementedError

    def error_body(self, status: int, message: str, fault: Fault | None) -> dict[str, Any]:
        """The protocol's error shape."""
        raise NotImplementedError

    def malformed_body(self, body: dict[str, Any] | None) -> tuple[bytes, str]:
        """A 200 answer that is not valid JSON, with its content type."""
        return b'{"id": "broken", "choices": [', "application/json"

    def _apply_fault(self, fault: Fault, body: dict[str, Any] | None) -> bool:
        """Carry out the fault's before-answer part; True when nothing more is to be sent."""
        if fault.delay and not self.idle(fault.delay):
            self.close_connection = True
            return True
        if fault.hang:
            self.idle(HANG_LIMIT)
            self.close_connection = True
            return True
        if fault.close:
            self.drop()
            return True
        if fault.status is not None:
            self.error(fault.status, fault.message or f"injected {fault.status}", fault)
            return True
        if fault.malformed:
            self.raw(200, *self.malformed_body(body))
            return True
        return False

    def idle(self, seconds: float) -> bool:
        """Wait ``seconds`` as a busy backend would, watching the client: False (and counted in
        ``abandoned``) when it hangs up first, so a test sees at once that its request was given up."""
        state = self.server_state
        end = time.monotonic() + seconds
        while time.monotonic() < end and not state._stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], min(0.02, max(0.0, end - time.monotonic())))
            if readable and self._peer_closed():
                with state._lock:
                    state.abandoned += 1
                return False
        return True

    def _peer_closed(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # -- wire helpers -------------------------------------------------------------
    def start_chunked(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.raw(status, json.dumps(payload).encode(), "application/json", headers)

    def raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, message: str, fault: Fault | None = None) -> None:  # type: ignore[override]
        headers = {}
        if fault is not None and fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        if fault is not None and fault.retry_after_ms is not None:
            headers["retry-after-ms"] = fault.retry_after_ms
        self.json(status, self.error_body(status, message, fault), headers)

    def drop(self) -> None:
        """Close the socket at once, with a reset so the client sees no clean end."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def parse_multipart(raw: bytes, ctype: str) -> dict[str, Any]:
    """multipart/form-data fields: text as ``str``, files as :class:`FormFile` (bytes exact),
    a repeated name or one ending in ``[]`` as a list. Headers are parsed by the stdlib's
    ``email`` (quoting, RFC 2231 filenames); the parts are cut by hand so binary data stays exact."""
    boundary = BytesHeaderParser().parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode()).get_param("boundary")
    fields: dict[str, Any] = {}
    if not isinstance(boundary, str):
        return fields
    for part in (b"\r\n" + raw).split(b"\r\n--" + boundary.encode())[1:]:  # a delimiter owns the CRLF before it
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = headers.get_filename()
        value: Any = (
            FormFile(filename, headers.get_content_type() if "content-type" in headers else None, data)
            if filename is not None
            else data.decode("utf-8", "replace")
        )
        if name in fields or name.endswith("[]"):
            previous = fields.get(name, [])
            fields[name] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            fields[name] = value
    return fields


def pieces(text: str, count: int | None) -> list[str]:
    """A reply split for streaming: one piece per word, or exactly ``count`` pieces."""
    if count is None:
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]
    size = max(1, -(-len(text) // count)) if text else 1
    return [text[i * size : (i + 1) * size] or "." for i in range(count)]


def split_even(text: str, count: int) -> list[str]:
    """``text`` cut into at most ``count`` non-empty pieces that join back to it exactly (JSON, tool arguments)."""
    count = max(1, min(count, len(text)))
    cuts = [len(text) * i // count for i in range(count + 1)]
    return [text[a:b] for a, b in itertools.pairwise(cuts)]


def image_bytes() -> bytes:
    """A tiny valid PNG (1x1), for image tests."""
    return base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
    )


def vector(text: str, dim: int) -> list[float]:
    """A deterministic embedding: the same text always gives the same vector."""
    seed = sum(text.encode()) or 1
    return [((seed * (i + 1)) % 97) / 97.0 for i in range(dim)]
