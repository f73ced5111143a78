"""``turnout serve`` at the HTTP level, with what an SDK would never send: bad JSON, oversized
bodies, wrong content types, missing and wrong keys, a caller hanging up mid-stream, 200
streams at once; and its life: SIGTERM during a stream, a refused non-loopback address, a
missing extra.

Every refusal is checked for the OpenAI error shape, a 4xx status (never a 500) and the
``x-turnout-backend`` header.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx2
import pytest

from tests.cli.test_cli import backend, backends, clean_env
from tests.serve.test_serve import Served
from tests.support.loopback import Fault, OpenAIServer

pytest.importorskip("uvicorn", reason="turnout serve needs the serve extra: pip install -e '.[serve]'")

KEY = "serve-http-KEY-1234567890"
BACKEND_KEY = "sk-http.backend.secret.778899"  # fake; dots keep secret scanners quiet
LIMIT = 64 * 1024
CHAT = "/v1/chat/completions"


def chat(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "test-model", "messages": [{"role": "user", "content": text}], **extra}


def env_for(good: OpenAIServer, slow: OpenAIServer, **extra: str) -> dict[str, str]:
    return backends(
        ("good", backend("good", good.base_url, provider="openai_compat", api_key=BACKEND_KEY)),
        ("slow", backend("slow", slow.base_url, provider="openai_compat", models="test-model")),
        TURNOUT_MAX_RETRIES="0",
        **extra,
    )


@pytest.fixture(scope="module")
def good() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def slow() -> Iterator[OpenAIServer]:
    """Streams 200 chunks 0.05 s apart (10 s); only requests pinned to it (``slow/test-model``) reach it."""
    with OpenAIServer(stream_chunks=200, stream_delay=0.05) as server:
        yield server


@pytest.fixture(scope="module")
def server(good: OpenAIServer, slow: OpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = Served(
        env_for(good, slow, TURNOUT_SERVE_API_KEYS=KEY, TURNOUT_SERVE_MAX_BODY=str(LIMIT)),
        tmp_path_factory.mktemp("serve-http"),
    )
    yield served
    status = served.stop()
    assert KEY not in served.log and BACKEND_KEY not in served.log
    assert "Traceback" not in served.log
    assert status == 0, served.log


@pytest.fixture
def http(server: Served) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
        yield client


def refused(answer: httpx2.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape, the status, the header; the error object for more checks."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-turnout-backend"] == "-"
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "Traceback" not in error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def raw_exchange(port: int, head: bytes, body: bytes = b"") -> bytes:
    """One request written on a socket by hand (a client that declares one thing and sends another)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


# -- bad input ---------------------------------------------------------------------------

NOT_JSON = "We could not parse the JSON body of your request: it is not valid JSON."


@pytest.mark.parametrize(
    "body, message",
    [
        (b'{"model": "test-model", "messages": [', NOT_JSON),
        (b"\xff\xfe not text", NOT_JSON),
        (b"[" * 20000 + b"]" * 20000, NOT_JSON),  # deeper than the parser recurses
        (b'["model", "test-model"]', "The request body must be a JSON object."),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(http: httpx2.Client, body: bytes, message: str) -> None:
    error = refused(http.post(CHAT, content=body, headers={"Content-Type": "application/json"}), 400, "invalid_json")
    assert error["message"] == message


@pytest.mark.parametrize("body", [{"messages": []}, {"model": ""}, {"model": 42}])
def test_a_request_without_a_model_is_a_400_naming_the_parameter(http: httpx2.Client, body: dict[str, Any]) -> None:
    error = refused(http.post(CHAT, json=body), 400, "missing_required_parameter")
    assert error["param"] == "model"
    audio = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")})
    assert refused(audio, 400, "missing_required_parameter")["param"] == "model"


def test_the_wrong_content_type_is_a_415(http: httpx2.Client) -> None:
    as_text = http.post(CHAT, content=json.dumps(chat()), headers={"Content-Type": "text/plain"})
    assert "takes a JSON body" in refused(as_text, 415, "unsupported_media_type")["message"]
    as_json = http.post("/v1/audio/transcriptions", json={"model": "test-model"})
    assert "takes multipart/form-data" in refused(as_json, 415, "unsupported_media_type")["message"]


def test_a_malformed_multipart_body_is_a_400(http: httpx2.Client) -> None:
    answer = http.post(
        "/v1/audio/transcriptions", content=b"--x\r\nnot a part", headers={"Content-Type": "multipart/form-data"}
    )  # no boundary
    refused(answer, 400)


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(server: Served) -> None:
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {40 * 2**20}\r\n\r\n"
    ).encode()
    answer = raw_exchange(server.port, head, b'{"model": ')  # the rest of the 40 MiB never comes
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_too_large"


def test_a_chunked_body_is_counted_and_refused_past_the_limit(http: httpx2.Client, good: OpenAIServer) -> None:
    seen = len(good.requests)

    def pieces() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"model": "test-model", "messages": [{"role": "user", "content": "'
        for _ in range(LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}]}'

    refused(http.post(CHAT, content=pieces(), headers={"Content-Type": "application/json"}), 413, "request_too_large")
    just_under = chat("x" * (LIMIT - 200))
    assert http.post(CHAT, json=just_under).status_code == 200
    assert len(good.requests) == seen + 1  # the refused one never reached a backend


def test_unknown_paths_and_methods_are_404_and_405(http: httpx2.Client) -> None:
    error = refused(http.post("/chat/completions", json=chat()), 404, "unknown_url")
    assert "under /v1" in error["message"]
    refused(http.get("/v1/files"), 404, "unknown_url")
    wrong = http.get(CHAT)
    refused(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"


def test_a_backends_rate_limit_keeps_its_status_and_retry_after(http: httpx2.Client, good: OpenAIServer) -> None:
    good.fail(Fault(status=429, retry_after="7", error_type="requests", code="rate_limit_exceeded"), times=1)
    answer = http.post(CHAT, json=chat(model="good/test-model"))
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    assert answer.json()["error"]["code"] == "rate_limit_exceeded"


# -- access ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", f"Basic {KEY}", "Bearer wrong-key-1234567890", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}"],
)
def test_without_the_right_key_every_path_is_a_401(
    server: Served, good: OpenAIServer, authorization: str | None
) -> None:
    seen = len(good.requests)
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (("POST", CHAT), ("GET", "/v1/models"), ("GET", "/health/backends"), ("GET", "/nowhere")):
        answer = httpx2.request(
            method, f"{server.url}{path}", json=chat() if method == "POST" else None, headers=headers
        )
        refused(answer, 401)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert KEY not in answer.text
    assert len(good.requests) == seen
    assert httpx2.get(f"{server.url}/health").status_code == 200  # liveness stays open


def test_the_right_key_is_let_in_whatever_the_schemes_case(server: Served) -> None:
    answer = httpx2.post(f"{server.url}{CHAT}", json=chat(), headers={"Authorization": f"bearer {KEY}"})
    assert answer.status_code == 200
    assert answer.headers["x-turnout-backend"] == "good"


# -- streams -------------------------------------------------------------------------------------


async def test_a_caller_hanging_up_mid_stream_releases_the_backends_connection(
    server: Served, slow: OpenAIServer
) -> None:
    async with httpx2.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        async with client.stream("POST", CHAT, json=chat("x", model="slow/test-model", stream=True)) as answer:
            assert answer.headers["x-turnout-backend"] == "slow"
            async for _ in answer.aiter_raw():
                assert slow.open_connections == 1  # the stream's own connection upstream
                break  # one chunk of 200, then hang up
    assert await slow.released()  # long before the stream's 10 s: the server closed it when the caller left
    assert any(line.rstrip().endswith("stream, client left") for line in server.access_lines(CHAT))


def test_a_stream_breaking_after_its_first_event_ends_with_an_error_event(
    http: httpx2.Client, good: OpenAIServer
) -> None:
    good.fail(Fault(cut_after=3), times=1)
    with http.stream("POST", CHAT, json=chat("one two three four five six", stream=True)) as answer:
        assert answer.status_code == 200
        events = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: ")]
    assert [e["choices"][0]["delta"].get("content") for e in events[:3]] == ["", "echo:", " one"]
    error = events[-1]["error"]
    assert error["code"] == "stream_broken"
    assert re.match(r"stream from backend 'good' broke after \d+ chunk\(s\)", error["message"])  # as read


async def test_200_concurrent_streams_each_arrive_whole(server: Served) -> None:
    limits = httpx2.Limits(max_connections=200, max_keepalive_connections=0)
    async with httpx2.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, limits=limits, timeout=60
    ) as client:

        async def one(i: int) -> str:
            async with client.stream("POST", CHAT, json=chat(f"stream {i}", stream=True)) as answer:
                assert answer.status_code == 200
                events = [line[6:] async for line in answer.aiter_lines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            return "".join(
                json.loads(e)["choices"][0]["delta"].get("content") or ""
                for e in events[:-1]
                if json.loads(e)["choices"]
            )

        texts = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 60)
    assert texts == [f"echo: stream {i}" for i in range(200)]


# -- life: SIGTERM, where it may listen, the extra ----------------------------------------------------


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text(f"# the only caller\n{KEY}\n")
    return path


def test_sigterm_lets_a_stream_finish_then_exits_0(good: OpenAIServer, keyfile: Path, tmp_path: Path) -> None:
    slow = OpenAIServer(stream_chunks=30, stream_delay=0.05).start()
    try:
        served = Served(env_for(good, slow, TURNOUT_SERVE_API_KEYS=f"@{keyfile}"), tmp_path)
        with httpx2.Client(base_url=served.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            with client.stream("POST", CHAT, json=chat("x", model="slow/test-model", stream=True)) as answer:
                events = answer.iter_lines()
                assert next(events).startswith("data: ")
                served.signal()
                served.wait_for("stopping: no new connections; 1 open")
                with pytest.raises(httpx2.ConnectError):  # no new connections while the stream goes on
                    httpx2.get(f"{served.url}/health", timeout=5)
                rest = [line for line in events if line.startswith("data: ")]
        assert rest[-1] == "data: [DONE]"
        assert len(rest) == 30 + 2  # the 29 chunks left, the finish, [DONE]
        assert served.stop() == 0
        assert served.log.index("POST /v1/chat/completions 200 slow") < served.log.index("stopped")
    finally:
        slow.stop()


def test_past_the_grace_period_a_stream_is_cut_and_the_server_still_exits_0(
    good: OpenAIServer, slow: OpenAIServer, tmp_path: Path
) -> None:
    served = Served(env_for(good, slow), tmp_path, "--grace", "0.5")
    with httpx2.Client(base_url=served.url, timeout=30) as client:
        with client.stream("POST", CHAT, json=chat("x", model="slow/test-model", stream=True)) as answer:
            events = answer.iter_lines()
            assert next(events).startswith("data: ")
            assert served.stop() == 0  # long before the stream's 10 s are up
            with pytest.raises(httpx2.RemoteProtocolError):  # cut: the chunked body never ends
                for _ in events:
                    pass
    assert "POST /v1/chat/completions 200 slow" in served.log and "stream, cut at shutdown" in served.log


def test_with_workers_it_serves_and_stops_on_sigterm(good: OpenAIServer, slow: OpenAIServer, tmp_path: Path) -> None:
    served = Served(env_for(good, slow), tmp_path, "--workers", "2")
    with httpx2.Client(base_url=served.url, timeout=30) as client:
        answers = [client.post(CHAT, json=chat(f"worker {i}")) for i in range(4)]
    assert [a.json()["choices"][0]["message"]["content"] for a in answers] == [f"echo: worker {i}" for i in range(4)]
    assert {a.headers["x-turnout-backend"] for a in answers} == {"good"}
    assert served.stop() == 0
    assert len(served.access_lines(CHAT)) == 4  # each worker logs its own requests


def test_without_keys_it_refuses_to_listen_beyond_loopback(
    good: OpenAIServer, slow: OpenAIServer, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "turnout", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=clean_env(**env_for(good, slow)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        "turnout: refusing to listen on 0.0.0.0 without keys: anyone who can reach it could use every backend"
    )
    assert "TURNOUT_SERVE_API_KEYS" in done.stderr and "--insecure" in done.stderr
    assert "listening on" not in done.stderr + done.stdout


def test_without_the_extra_it_says_what_to_install(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['uvicorn'] = None; from turnout.cli import main; sys.exit(main(['serve']))"
    done = subprocess.run(
        [sys.executable, "-c", hide], env=clean_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr == (
        "turnout: `turnout serve` needs the serve extra, which is not installed (no uvicorn): "
        "pip install 'turnout[serve]'\n"
    )
