"""``turnout serve`` as callers that are not turnout reach it: a subprocess on a free loopback port,
driven by the plain ``openai`` SDK, sync and async.

One server for the module, configured by environment variables as users
configure it: a dead primary (a closed port), a working ``good`` backend
(with a ``fast`` alias), and ``leaky``, whose server refuses turnout's key
and echoes it back. Every answer is compared with what the plain SDK gets
from the same loopback server directly, and every test can see who served
in ``x-turnout-backend``. Raw-HTTP cases are in test_serve_http.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx2
import openai
import pytest

import turnout
from tests.cli.test_cli import backend, backends, clean_env
from tests.support.loopback import Fault, OpenAIServer

pytest.importorskip("uvicorn", reason="turnout serve needs the serve extra: pip install -e '.[serve]'")

SERVE_KEY = "serve-key-ONE-1234567890"
OTHER_SERVE_KEY = "serve-key-TWO-0987654321"
BACKEND_KEY = "sk-backend-SECRET-112233"
LEAKY_KEY = "sk-leaky-SECRET-445566"
SECRETS = (SERVE_KEY, OTHER_SERVE_KEY, BACKEND_KEY, LEAKY_KEY)
MESSAGES = [{"role": "user", "content": "hello there"}]
READY = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/v1")
START_LIMIT = 30.0


class Served:
    """``python -m turnout serve --port 0 ARGS`` with ``env`` (cleaned of ambient keys), in ``cwd``.

    Waits for its "listening on" line (it logs that once it accepts requests); ``lines`` is its
    log so far. ``stop()`` sends SIGTERM and returns the exit status.
    """

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "turnout", "serve", "--port", "0", *args],
            env=clean_env(**env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: list[str] = []
        self.port = 0
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(START_LIMIT) or not self.port:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"turnout serve did not start:\n{self.log}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            found = READY.search(line)
            if found:
                self.port = int(found.group(1))
                self._ready.set()
        self._ready.set()  # it exited: whoever waits sees no port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, limit: float = 20.0) -> None:
        """Until the log has ``text`` (or the process ended): bounded, it never waits past ``limit``."""
        for _ in range(int(limit / 0.02)):
            if text in self.log or self.proc.poll() is not None:
                break
            time.sleep(0.02)
        assert text in self.log, self.log

    def access_lines(self, path: str) -> list[str]:
        return [line for line in self.lines if f" {path} " in line and "turnout.serve" in line]

    def wait_until(self, check: Callable[[], bool], limit: float = 20.0) -> None:
        """Until ``check()`` holds of the log (an access line is written just after its answer ends); bounded."""
        for _ in range(int(limit / 0.02)):
            if check() or self.proc.poll() is not None:
                break
            time.sleep(0.02)
        assert check(), self.log

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.signal()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"turnout serve did not stop within {timeout}s of SIGTERM:\n{self.log}")


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def good() -> Iterator[OpenAIServer]:
    with OpenAIServer(models=["test-model"]) as server:
        yield server


@pytest.fixture(scope="module")
def leaky() -> Iterator[OpenAIServer]:
    """Refuses every request, repeating the key it was sent, as careless servers do."""
    with OpenAIServer(models=["test-model"]) as server:
        server.fail(
            Fault(
                status=401,
                message=f"Incorrect API key provided: {LEAKY_KEY}",
                error_type="invalid_request_error",
                code="invalid_api_key",
            )
        )
        yield server


@pytest.fixture(scope="module")
def server(good: OpenAIServer, leaky: OpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    env = backends(
        (
            "dead",
            backend("dead", f"http://127.0.0.1:{closed_port()}/v1", provider="openai_compat", models="test-model"),
        ),
        (
            "good",
            backend(
                "good",
                good.base_url,
                provider="openai_compat",
                api_key=BACKEND_KEY,
                models="fast=test-model,test-model",
            ),
        ),
        ("leaky", backend("leaky", leaky.base_url, provider="openai_compat", api_key=LEAKY_KEY, models="test-model")),
        TURNOUT_MAX_RETRIES="0",
        TURNOUT_COOLDOWN="0",  # the dead primary is tried (and failed over) every time
        TURNOUT_SERVE_API_KEYS=f"{SERVE_KEY}, {OTHER_SERVE_KEY}",
    )
    served = Served(env, tmp_path_factory.mktemp("serve"), "-v")  # -v: the router's lines too, all scrubbed
    yield served
    status = served.stop()
    for secret in SECRETS:
        assert secret not in served.log
    assert "Traceback" not in served.log
    assert status == 0, served.log


@pytest.fixture
def sdk(server: Served) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=SERVE_KEY, max_retries=0, timeout=30)
    yield client
    client.close()


@pytest.fixture
async def async_sdk(server: Served) -> Any:
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=OTHER_SERVE_KEY, max_retries=0, timeout=30)
    yield client
    await client.close()


@pytest.fixture
def direct(good: OpenAIServer) -> Iterator[openai.OpenAI]:
    """The plain SDK straight to the working backend: what the server's answers must equal."""
    client = openai.OpenAI(base_url=good.base_url, api_key=BACKEND_KEY, max_retries=0, timeout=30)
    yield client
    client.close()


def without_ids(answer: Any) -> dict[str, Any]:
    dumped = answer.model_dump()
    for key in ("id", "created"):
        dumped.pop(key, None)
    return dumped


def backend_health(server: Served) -> dict[str, dict[str, Any]]:
    answer = httpx2.get(f"{server.url}/health/backends", headers={"Authorization": f"Bearer {SERVE_KEY}"})
    assert answer.status_code == 200
    return {entry["name"]: entry for entry in answer.json()["data"]}


# -- chat, JSON and streamed, sync and async --------------------------------------------


def test_a_chat_completion_fails_over_from_the_dead_primary_and_names_who_served(
    sdk: openai.OpenAI, direct: openai.OpenAI, good: OpenAIServer
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="test-model", messages=MESSAGES)
    completion = raw.parse()
    assert raw.headers["x-turnout-backend"] == "good"
    assert raw.headers["x-request-id"] == good.requests[-1].request_id  # the backend's own, for its support
    assert completion.choices[0].message.content == "echo: hello there"
    assert without_ids(completion) == without_ids(direct.chat.completions.create(model="test-model", messages=MESSAGES))


def test_the_callers_key_never_reaches_a_backend(sdk: openai.OpenAI, good: OpenAIServer) -> None:
    sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    sent = good.chat_requests()[-1]
    assert sent.header("Authorization") == f"Bearer {BACKEND_KEY}"
    assert not any(SERVE_KEY in value for value in sent.headers.values())


def test_a_stream_arrives_chunk_by_chunk_from_the_backend_that_served(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="test-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["x-turnout-backend"] == "good"
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_a_stream_through_the_proxy_is_the_same_events_as_through_the_async_client(
    async_sdk: openai.AsyncOpenAI, good: OpenAIServer
) -> None:
    """Relayed on the server's aiohttp transport, chunked as it reads: the caller's SDK sees the same events."""

    async def events(client: openai.AsyncOpenAI) -> list[dict[str, object]]:
        stream = await client.chat.completions.create(
            model="test-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        return [chunk.model_dump(exclude={"id", "created"}) async for chunk in stream]

    async with turnout.AsyncOpenAI(api_key=BACKEND_KEY, base_url=good.base_url) as direct:
        expected = await events(direct)
    assert await events(async_sdk) == expected and len(expected) > 3


async def test_the_async_sdk_gets_json_and_streams_concurrently(async_sdk: openai.AsyncOpenAI) -> None:
    async def streamed(text: str) -> str:
        stream = await async_sdk.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": text}], stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def whole(text: str) -> str:
        answer = await async_sdk.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": text}]
        )
        return answer.choices[0].message.content or ""

    texts = [f"question {i}" for i in range(8)]
    got = await asyncio.gather(*(streamed(t) for t in texts), *(whole(t) for t in texts))
    assert got == [f"echo: {t}" for t in texts] * 2


# -- the other routed endpoints -----------------------------------------------------------


def test_embeddings_equal_the_backends_own(sdk: openai.OpenAI, direct: openai.OpenAI) -> None:
    raw = sdk.embeddings.with_raw_response.create(model="test-model", input=["alpha", "beta gamma"])
    assert raw.headers["x-turnout-backend"] == "good"
    mine = raw.parse()
    theirs = direct.embeddings.create(model="test-model", input=["alpha", "beta gamma"])
    assert [d.embedding for d in mine.data] == [d.embedding for d in theirs.data]
    assert mine.usage == theirs.usage


@pytest.mark.parametrize("call", ["completions", "moderations", "images"])
def test_legacy_completions_moderations_and_images_equal_the_backends_own(
    sdk: openai.OpenAI, direct: openai.OpenAI, call: str
) -> None:
    def make(client: openai.OpenAI) -> Any:
        if call == "completions":
            return client.completions.with_raw_response.create(model="test-model", prompt="say this", max_tokens=5)
        if call == "moderations":
            return client.moderations.with_raw_response.create(model="test-model", input="hello")
        return client.images.with_raw_response.generate(model="test-model", prompt="a cat", n=2)

    raw = make(sdk)
    assert raw.headers["x-turnout-backend"] == "good"
    assert without_ids(raw.parse()) == without_ids(make(direct).parse())


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # this SDK marks translations deprecated
def test_audio_uploads_are_transcribed_and_translated_by_the_backend(sdk: openai.OpenAI) -> None:
    audio = b"RIFF" + bytes(range(256)) * 40
    raw = sdk.audio.transcriptions.with_raw_response.create(model="test-model", file=("clip.wav", audio, "audio/wav"))
    assert raw.headers["x-turnout-backend"] == "good"
    assert raw.parse().text == f"transcribed clip.wav ({len(audio)} bytes)"
    text = sdk.audio.transcriptions.create(model="test-model", file=("clip.wav", audio), response_format="text")
    assert text.strip() == f"transcribed clip.wav ({len(audio)} bytes)"
    translated = sdk.audio.translations.create(model="test-model", file=("a.wav", b"1234"))
    assert translated.text == "translated a.wav (4 bytes)"
    verbose = sdk.audio.transcriptions.create(
        model="test-model",
        file=("clip.wav", audio),
        response_format="verbose_json",
        timestamp_granularities=["segment"],
    )
    assert verbose.segments and verbose.segments[0].text == f"transcribed clip.wav ({len(audio)} bytes)"


def test_models_are_every_backends_list_and_one_can_be_retrieved(sdk: openai.OpenAI) -> None:
    listed = sdk.models.list()
    assert {(m.id, m.owned_by) for m in listed.data} == {("test-model", "good")}  # dead and leaky cannot list
    assert sdk.models.retrieve("good/test-model").owned_by == "good"  # "/" in an id: one path segment
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


# -- model names: aliases, pinning, errors ---------------------------------------------------


def test_an_alias_is_renamed_for_its_backend(sdk: openai.OpenAI, good: OpenAIServer) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES)
    assert raw.headers["x-turnout-backend"] == "good"
    assert good.chat_requests()[-1].json["model"]  # type: ignore[index] == "test-model"


def test_a_body_needing_no_change_reaches_the_backend_byte_for_byte(server: Served, good: OpenAIServer) -> None:
    """Spacing, key order, escapes and a float's spelling as the caller wrote them: not decoded and encoded again."""
    sent = (
        b'{ "messages" : [ {"content": "h\\u00e9llo", "role":"user"} ],\n  "model":"test-model", "temperature": 0.50 }'
    )
    answer = httpx2.post(
        f"{server.url}/v1/chat/completions",
        content=sent,
        headers={"Authorization": f"Bearer {SERVE_KEY}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-turnout-backend"] == "good"
    received = good.chat_requests()[-1]
    assert received.raw == sent
    assert received.header("content-type") == "application/json"


def test_a_body_that_needs_a_change_reaches_the_backend_changed(server: Served, good: OpenAIServer) -> None:
    """An alias is renamed for its backend: that body is encoded anew, with everything else the caller sent."""
    sent = b'{"model": "fast", "messages": [{"role": "user", "content": "hello there"}], "temperature": 0.5}'
    answer = httpx2.post(
        f"{server.url}/v1/chat/completions",
        content=sent,
        headers={"Authorization": f"Bearer {SERVE_KEY}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    received = good.chat_requests()[-1]
    assert received.raw != sent
    assert received.json == {"model": "test-model", "messages": MESSAGES, "temperature": 0.5}


def test_a_body_in_utf16_reaches_the_backend_as_utf8(server: Served, good: OpenAIServer) -> None:
    body = {"model": "test-model", "messages": [{"role": "user", "content": "h\u00e9llo"}]}
    answer = httpx2.post(
        f"{server.url}/v1/chat/completions",
        content=json.dumps(body).encode("utf-16"),
        headers={"Authorization": f"Bearer {SERVE_KEY}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    received = good.chat_requests()[-1]
    assert received.json == body and received.raw.decode("utf-8")


def test_a_pinned_model_goes_to_its_backend_only(sdk: openai.OpenAI, server: Served) -> None:
    before = backend_health(server)["dead"]["requests"]
    raw = sdk.chat.completions.with_raw_response.create(model="good/test-model", messages=MESSAGES)
    assert raw.headers["x-turnout-backend"] == "good"
    assert backend_health(server)["dead"]["requests"] == before


def test_a_model_no_backend_serves_is_a_404_naming_the_backends(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert caught.value.body["message"].startswith("no backend serves model 'no-such-model'")  # type: ignore[index]
    assert caught.value.response.headers["x-turnout-backend"] == "-"


def test_a_bad_request_is_the_backends_own_400(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="test-model", messages=[])
    assert caught.value.body["message"] == "'messages' is a required property"  # type: ignore[index]


def test_a_dead_backend_alone_is_a_502_saying_why(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="dead/test-model", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.body["message"] == (  # type: ignore[index]
        "all 1 backend(s) failed; dead: APIConnectionError: Connection error."
    )


def test_a_backend_refusing_its_key_is_the_servers_502_and_its_key_is_never_repeated(
    sdk: openai.OpenAI, server: Served
) -> None:
    with pytest.raises(openai.InternalServerError) as caught:  # 502: the caller's key is fine; turnout's is not
        sdk.chat.completions.create(model="leaky/test-model", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.body["message"] == (
        "all 1 backend(s) failed; leaky: "  # type: ignore[index]
        "AuthenticationError 401: Incorrect API key provided: ****"
    )
    assert "Incorrect API key provided: ****" in server.log  # the router's own line (-v), scrubbed too
    assert backend_health(server)["leaky"]["last_error"] == "AuthenticationError 401: Incorrect API key provided: ****"
    for secret in SECRETS:
        assert secret not in server.log


def test_health_reports_each_backends_breaker_and_last_error(sdk: openai.OpenAI, server: Served) -> None:
    sdk.chat.completions.create(model="test-model", messages=MESSAGES)
    health = backend_health(server)
    assert list(health) == ["dead", "good", "leaky"]
    assert health["dead"]["last_error"] == "APIConnectionError: Connection error."
    assert health["dead"]["failures"] >= 1
    assert health["good"]["state"] == "closed" and health["good"]["last_error"] is None
    assert health["good"]["cooldown_remaining"] == 0 and health["good"]["provider_limit"] is None
    assert health["good"]["window"] == {"rpm": None, "rpm_limit": None, "tpm": None, "tpm_limit": None}
    probed = httpx2.get(f"{server.url}/health/backends?probe=1", headers={"Authorization": f"Bearer {SERVE_KEY}"})
    assert {e["name"]: e["probe"]["up"] for e in probed.json()["data"]} == {"dead": False, "good": True, "leaky": False}
    assert httpx2.get(f"{server.url}/health").json() == {"status": "ok"}  # liveness needs no key


def test_every_request_is_one_access_line(sdk: openai.OpenAI, server: Served) -> None:
    sdk.embeddings.create(model="test-model", input="count me")
    line = server.access_lines("/v1/embeddings")[-1]
    assert re.search(r"INFO turnout\.serve: POST /v1/embeddings 200 good \d+\.\dms cost unknown$", line.rstrip()), line


# -- settings ---------------------------------------------------------------------------------


def test_serve_variables_are_known_and_a_misspelt_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from turnout import ConfigError
    from turnout.settings import TurnoutSettings

    settings = TurnoutSettings(
        _env_file=None, serve_api_keys="a-key-of-some-length, another-key-here", serve_max_body="1MiB", serve_port=0
    )
    assert [k.get_secret_value() for k in settings.serve_api_keys or ()] == ["a-key-of-some-length", "another-key-here"]
    assert settings.serve_max_body == 2**20
    assert "a-key-of-some-length" not in repr(settings)
    assert TurnoutSettings(_env_file=None).serve_max_body == 32 * 2**20
    with pytest.raises(ConfigError) as caught:
        TurnoutSettings(_env_file=None, serve_api_keys="good-key-123456789, bad key 123456789")
    assert "a key contains whitespace" in str(caught.value)
    assert "good-key-123456789" not in str(caught.value)
    monkeypatch.setenv("TURNOUT_SERVE_PROT", "9000")
    with pytest.raises(ConfigError) as caught:
        TurnoutSettings(_env_file=None)
    assert str(caught.value) == (
        "TURNOUT_SERVE_PROT (in the environment): is not a turnout variable; did you mean TURNOUT_SERVE_PORT?"
    )


def test_keys_can_come_from_a_file(tmp_path: Path) -> None:
    from turnout.settings import TurnoutSettings

    keys = tmp_path / "keys"
    keys.write_text("# callers\nfirst-key-0123456789\n\nsecond-key-0123456789  # the CI job\n")
    settings = TurnoutSettings(_env_file=None, serve_api_keys=f"@{keys}")
    assert [k.get_secret_value() for k in settings.serve_api_keys or ()] == [
        "first-key-0123456789",
        "second-key-0123456789",
    ]


# -- the Responses API ------------------------------------------------------------------------


def test_responses_are_created_streamed_followed_up_retrieved_and_deleted(sdk: openai.OpenAI) -> None:
    raw = sdk.responses.with_raw_response.create(model="test-model", input="hello there")
    made = raw.parse()
    assert raw.headers["x-turnout-backend"] == "good" and made.output_text == "echo: hello there"
    with sdk.responses.stream(model="test-model", input="streamed") as stream:
        types = [event.type for event in stream]
        streamed = stream.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert streamed.output_text == "echo: streamed"
    follow = sdk.responses.create(model="test-model", input="again", previous_response_id=made.id)
    assert follow.previous_response_id == made.id
    assert sdk.responses.retrieve(made.id).output_text == "echo: hello there"
    assert [item.type for item in sdk.responses.input_items.list(made.id).data] == ["message"]
    sdk.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(made.id)
