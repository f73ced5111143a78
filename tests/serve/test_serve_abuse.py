"""``turnout serve`` against callers that misbehave, as a subprocess, with raw sockets and httpx: numbers
JSON cannot carry, callers that leave at each point, what uvicorn itself refuses, slow callers, and more
connections than it accepts.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import httpx2
import pytest

from tests.serve.test_serve import Served
from tests.serve.test_serve_http import CHAT, chat, env_for, good, refused, slow  # noqa: F401  (fixtures)
from tests.support.loopback import Fault, OpenAIServer

pytest.importorskip("uvicorn", reason="turnout serve needs the serve extra: pip install -e '.[serve]'")


@pytest.fixture(scope="module")
def server(good: OpenAIServer, slow: OpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = Served(
        env_for(good, slow, TURNOUT_SERVE_HEADER_TIMEOUT="1", TURNOUT_SERVE_BODY_TIMEOUT="1"),
        tmp_path_factory.mktemp("serve-abuse"),
    )
    yield served
    status = served.stop()
    assert "Traceback" not in served.log and " 500 " not in served.log, served.log
    assert status == 0, served.log


def connect(server: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = reset, at once
    return sock


def head(length: int, path: str = CHAT, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def answer_of(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """Everything the server sends until it closes: status, headers, JSON body."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    top, _, body = received.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


def given_up(backend: OpenAIServer, before: int, limit: float = 3.0) -> bool:
    """Whether the backend saw one more request given up by its client within ``limit`` seconds (long before
    the backend's own delay ends: it was closed as soon as the caller left)."""
    for _ in range(int(limit / 0.02)):
        if backend.abandoned > before:
            break
        time.sleep(0.02)
    return backend.abandoned == before + 1


def wait_for_line(server: Served, *parts: str, limit: float = 10.0, path: str = CHAT) -> str:
    for _ in range(int(limit / 0.02)):
        found = [line for line in server.access_lines(path) if all(p in line for p in parts)]
        if found:
            return found[-1]
        time.sleep(0.02)
    raise AssertionError(f"no access line with {parts}:\n{server.log}")


# -- numbers JSON cannot carry -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, field",
    [
        (b'{"model": "test-model", "messages": [], "max_tokens": NaN}', "max_tokens"),
        (b'{"model": "test-model", "messages": [], "temperature": Infinity}', "temperature"),
        (b'{"model": "test-model", "messages": [], "top_p": -Infinity}', "top_p"),
        (b'{"model": "test-model", "messages": [], "max_tokens": 1e999}', "max_tokens"),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"42": NaN}}',
            "logit_bias.42",
        ),
        (b'{"model": "test-model", "messages": [{"role": "user", "content": [1e999]}]}', "messages[0].content[0]"),
    ],
)
def test_a_non_finite_number_is_a_400_naming_its_field(
    server: Served, good: OpenAIServer, raw: bytes, field: str
) -> None:
    seen = len(good.requests)
    answer = httpx2.post(f"{server.url}{CHAT}", content=raw, headers={"Content-Type": "application/json"})
    error = refused(answer, 400, "invalid_value")
    assert error["param"] == field and error["message"].startswith(f"{field} is not a finite number")
    assert len(good.requests) == seen, "never sent on"


# -- a caller that leaves --------------------------------------------------------------------------


def test_a_caller_leaving_before_the_answer_cancels_the_backends_work(server: Served, good: OpenAIServer) -> None:
    good.fail(Fault(delay=8), times=1)
    before = good.abandoned
    body = json.dumps(chat("wait for it")).encode()
    with connect(server) as sock:
        sock.sendall(head(len(body)) + body)
        deadline = time.monotonic() + 5
        while not good.requests or good.requests[-1].json != chat("wait for it"):
            assert time.monotonic() < deadline, "the request never reached the backend"
            time.sleep(0.02)
    assert given_up(good, before), "the backend's request was not closed when the caller left"
    line = wait_for_line(server, " 499 ", "client left")
    assert line.rstrip().endswith("client left")


def test_a_caller_leaving_a_stream_before_its_first_token_cancels_it(server: Served, good: OpenAIServer) -> None:
    good.fail(Fault(stall_after=1), times=1)  # the role chunk, then nothing
    before = good.abandoned
    body = json.dumps(chat("stalled", stream=True)).encode()
    with connect(server) as sock:
        sock.sendall(head(len(body)) + body)
        time.sleep(0.5)
    assert given_up(good, before), "the backend's request was not closed when the caller left"
    wait_for_line(server, " 499 ", "client left")


def test_a_caller_leaving_a_request_without_a_body_cancels_it_too(server: Served, good: OpenAIServer) -> None:
    good.fail(Fault(delay=8), times=1)  # the model list, slow to come
    before = good.abandoned
    with connect(server) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
    assert given_up(good, before), "the backend's request was not closed when the caller left"
    wait_for_line(server, " 499 ", "client left", path="/v1/models")


def test_callers_leaving_mid_body_are_one_access_line_each(server: Served) -> None:
    before = len(server.access_lines(CHAT))
    for _ in range(5):
        with connect(server) as sock:
            sock.sendall(head(1000) + b'{"model": "test-model", ')
            time.sleep(0.05)
    for _ in range(250):
        if len(server.access_lines(CHAT)) >= before + 5:
            break
        time.sleep(0.02)
    lines = server.access_lines(CHAT)[before:]
    assert len(lines) == 5 and all(" 499 " in line and line.rstrip().endswith("client left") for line in lines)


# -- what uvicorn refuses itself, and slow callers ------------------------------------------------------


@pytest.mark.parametrize(
    "request_head",
    [
        head(2, extra="X-Big: " + "a" * 200_000 + "\r\n"),
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n",
    ],
    ids=["200kB-header", "content-length-not-a-number"],
)
def test_requests_uvicorn_cannot_parse_get_an_openai_error(server: Served, request_head: bytes) -> None:
    with connect(server) as sock:
        try:
            sock.sendall(request_head + b"{}")
        except OSError:  # it may answer and close before the whole header is sent
            pass
        status, headers, body = answer_of(sock)
    assert status == 400 and headers["content-type"] == "application/json"
    assert body["error"]["code"] == "invalid_http_request" and body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "partial, what",
    [
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", "headers"),
        (head(1000) + b'{"model": ', "body"),
    ],
)
def test_a_caller_too_slow_with_its_request_gets_a_408_and_is_closed(server: Served, partial: bytes, what: str) -> None:
    with connect(server) as sock:  # its 10 s socket timeout would fail the read if the server held it open
        sock.sendall(partial)
        status, _, body = answer_of(sock)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert f"request's {what} did not arrive within 1s" in body["error"]["message"]


def test_keep_alive_requests_are_not_cut_by_the_read_timeouts(server: Served) -> None:
    with httpx2.Client(base_url=server.url, timeout=10) as client:
        first = client.post(CHAT, json=chat("one"))
        time.sleep(1.5)  # idle between requests: longer than the header timeout
        second = client.post(CHAT, json=chat("two"))
    assert [first.status_code, second.status_code] == [200, 200]


def test_connections_over_the_cap_get_a_503_in_openai_shape(
    good: OpenAIServer, slow: OpenAIServer, tmp_path: Path
) -> None:
    served = Served(env_for(good, slow, TURNOUT_SERVE_MAX_CONNECTIONS="2"), tmp_path)
    try:
        held = [socket.create_connection(("127.0.0.1", served.port), timeout=10) for _ in range(2)]
        time.sleep(0.2)
        answer = httpx2.post(f"{served.url}{CHAT}", json=chat())
        assert answer.status_code == 503 and answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]["code"] == "server_busy" and answer.headers["retry-after"] == "1"
        held.pop().close()
        time.sleep(0.2)
        assert httpx2.post(f"{served.url}{CHAT}", json=chat()).status_code == 200, "room again once one closed"
        for sock in held:
            sock.close()
    finally:
        assert served.stop() == 0


def test_a_stream_that_ends_early_ends_with_an_error_event_not_quietly(server: Served, good: OpenAIServer) -> None:
    good.fail(Fault(end_after=3), times=1)  # three chunks, then a clean end: no finish reason, no [DONE]
    with httpx2.stream("POST", f"{server.url}{CHAT}", json=chat("one two three four five", stream=True)) as answer:
        events = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: ")]
    assert [e["choices"][0]["delta"].get("content") for e in events[:3]] == ["", "echo:", " one"]
    assert events[-1]["error"]["code"] == "stream_broken"
    assert "without saying it was complete" in events[-1]["error"]["message"]
    wait_for_line(server, "stream, broken upstream")
