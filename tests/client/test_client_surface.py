"""The SDK's whole routed surface through ``turnout.AsyncOpenAI``, with a dead primary, compared with the plain SDK.

Every backend here comes from the environment alone (``TURNOUT_BACKENDS`` and
its sections), as a user configures turnout: ``dead`` (a closed port) first,
then ``live`` (a loopback OpenAI server). The control is ``openai.AsyncOpenAI``
pointed straight at the same server; answers must be the same, ids and
timestamps aside. The synchronous twin is ``test_client_surface_sync.py``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
from pydantic import BaseModel

import turnout
from tests.router.test_router import Clock, clock  # noqa: F401  (the router's clock, moved by hand)
from tests.settings.test_settings import env, isolated  # noqa: F401  (autouse: no TURNOUT_ from the shell, no .env)
from tests.support.loopback import OpenAIServer

MSG = [{"role": "user", "content": "hi there"}]
AUDIO = b"RIFF\x00\x01fake-wave\xff\x00"
VOLATILE = frozenset({"id", "created", "created_at"})
"""What differs between two answers to the same request: ids and timestamps."""
WHISPER = ("whisper", "whisper-1")
"""The audio model: turnout's alias for it, and the name the server (and the plain SDK) use."""


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city", "days"],
        },
    },
}


# -- configuration, as a user writes it -------------------------------------------


def configure(monkeypatch: pytest.MonkeyPatch, *backends: tuple[str, str, str], **more: str) -> None:
    """``TURNOUT_BACKENDS`` and a section per backend: ``(name, provider, base_url)``; no retries unless ``more`` says."""
    variables = {"TURNOUT_BACKENDS": ",".join(name for name, _, _ in backends), "TURNOUT_MAX_RETRIES": "0"}
    for name, provider, url in backends:
        variables[f"TURNOUT_BACKEND__{name.upper()}__PROVIDER"] = provider
        variables[f"TURNOUT_BACKEND__{name.upper()}__BASE_URL"] = url
    env(monkeypatch, **{**variables, **more})


def dead_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def live(make_openai_server: Callable[..., OpenAIServer]) -> OpenAIServer:
    return make_openai_server(models=["test-model", WHISPER[1]])


@pytest.fixture
def routed_env(monkeypatch: pytest.MonkeyPatch, live: OpenAIServer, free_port: int) -> OpenAIServer:
    """``dead`` then ``live``, both ``localai`` (whose row claims every routed endpoint); ``whisper`` is an alias."""
    configure(
        monkeypatch,
        ("dead", "localai", dead_url(free_port)),
        ("live", "localai", live.base_url),
        TURNOUT_BACKEND__LIVE__MODELS=f"test-model=test-model,{WHISPER[0]}={WHISPER[1]}",
    )
    return live


@pytest.fixture
async def client(routed_env: OpenAIServer) -> Any:
    async with turnout.AsyncOpenAI() as c:
        yield c


@pytest.fixture
async def control(live: OpenAIServer) -> Any:
    async with openai.AsyncOpenAI(api_key="sk-control", base_url=live.base_url, max_retries=0) as c:
        yield c


# -- comparing answers ----------------------------------------------------------------


def plain(answer: Any) -> Any:
    """An answer as data, without what differs between two answers to one request."""
    if isinstance(answer, BaseModel):
        answer = answer.model_dump(mode="json", warnings=False)  # parsed: typed loosely by the SDK
    if isinstance(answer, dict):
        return {k: plain(v) for k, v in answer.items() if k not in VOLATILE}
    if isinstance(answer, list):
        return [plain(v) for v in answer]
    return answer


def sse_data(lines: list[str]) -> list[Any]:
    """The events of an SSE body's lines, as data."""
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    return [d if d == "[DONE]" else plain(json.loads(d)) for d in data]


def failed_over(client: Any) -> None:
    """The answer came from ``live`` after one failed attempt at ``dead``."""
    stats = client.router.stats()
    assert stats["dead"]["attempts"] == stats["dead"]["failures"] >= 1
    assert stats["live"]["successes"] >= 1


def upload() -> tuple[str, io.BytesIO, str]:
    return ("speech.wav", io.BytesIO(AUDIO), "audio/wav")


ROUTED: dict[str, Callable[[Any, str], Any]] = {
    "chat": lambda c, w: c.chat.completions.create(model="test-model", messages=MSG, temperature=0.2),
    "chat tools": lambda c, w: c.chat.completions.create(model="test-model", messages=MSG, tools=[WEATHER]),
    "chat parse": lambda c, w: c.chat.completions.parse(model="test-model", messages=MSG, response_format=Person),
    "completions": lambda c, w: c.completions.create(model="test-model", prompt=["one two", "three"], max_tokens=3),
    "embeddings": lambda c, w: c.embeddings.create(model="test-model", input=["one", "two"], dimensions=4),
    "transcription": lambda c, w: c.audio.transcriptions.create(model=w, file=upload(), response_format="verbose_json"),
    "translation": lambda c, w: c.audio.translations.create(model=w, file=upload()),
    "moderations": lambda c, w: c.moderations.create(model="test-model", input=["hi", "there"]),
    "images": lambda c, w: c.images.generate(model="test-model", prompt="a cat", n=2),
}
"""Every non-streaming routed method: ``(client, audio model) -> answer`` (awaitable for an async client)."""

ROUTED_CASES = [
    pytest.param(name, marks=[pytest.mark.filterwarnings("ignore::DeprecationWarning")] * (name == "translation"))
    for name in ROUTED
]  # the SDK marks translations' overloads deprecated


def check_routed(name: str, ours: Any, theirs: Any, live: OpenAIServer) -> None:
    """turnout's answer is the plain SDK's, served by ``live``, with the audio alias renamed on the wire."""
    assert type(ours) is type(theirs)
    assert plain(ours) == plain(theirs)
    assert turnout.served_by(ours) == "live"
    first = live.requests[0]  # turnout's request came first
    if name in ("transcription", "translation"):
        assert first.form is not None and first.form["model"] == WHISPER[1]
        assert first.form["file"].data == AUDIO and first.form["file"].filename == "speech.wav"
    if name == "chat parse":
        assert isinstance(ours.choices[0].message.parsed, Person)
        assert ours.choices[0].message.parsed == theirs.choices[0].message.parsed
    if name == "chat tools":
        arguments = json.loads(ours.choices[0].message.tool_calls[0].function.arguments)
        assert arguments == {"city": "hi there", "days": 1}


# -- every routed method ------------------------------------------------------------------


@pytest.mark.parametrize("name", ROUTED_CASES)
async def test_every_routed_method_answers_as_the_sdk_does(
    client: Any, control: Any, live: OpenAIServer, name: str
) -> None:
    ours = await ROUTED[name](client, WHISPER[0])
    theirs = await ROUTED[name](control, WHISPER[1])
    check_routed(name, ours, theirs, live)
    failed_over(client)


async def test_a_stream_is_the_sdks_with_the_serving_backends_response(
    client: Any, control: Any, live: OpenAIServer
) -> None:
    kwargs: dict[str, Any] = {
        "model": "test-model",
        "messages": MSG,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    stream = await client.chat.completions.create(**kwargs)
    served = live.requests[-1]
    ours = [plain(chunk) async for chunk in stream]
    theirs = [plain(chunk) async for chunk in await control.chat.completions.create(**kwargs)]
    assert ours == theirs and ours[-1]["usage"]["completion_tokens"] == 3
    assert stream.response.headers["x-request-id"] == served.request_id is not None
    assert turnout.served_by(stream) == stream.response.headers[turnout.client.BACKEND_HEADER] == "live"
    failed_over(client)


async def test_the_stream_helper_gives_the_sdks_events_and_final_completion(client: Any, control: Any) -> None:
    async def run(c: Any) -> tuple[list[str], Any]:
        async with c.chat.completions.stream(model="test-model", messages=MSG, response_format=Person) as stream:
            kinds = [event.type async for event in stream]
            return kinds, await stream.get_final_completion()

    (our_kinds, ours), (their_kinds, theirs) = await run(client), await run(control)
    assert our_kinds == their_kinds and "content.done" in our_kinds
    assert (
        ours.choices[0].message.parsed
        == theirs.choices[0].message.parsed
        == Person(name="hi there", age=0, tags=["hi there"])
    )
    failed_over(client)


async def test_a_raw_response_has_the_servers_headers_and_parses(client: Any, control: Any, live: OpenAIServer) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="test-model", messages=MSG)
    theirs = await control.chat.completions.with_raw_response.create(model="test-model", messages=MSG)
    assert raw.status_code == theirs.status_code == 200
    assert raw.headers["x-request-id"] == live.requests[0].request_id
    assert turnout.served_by(raw) == "live"
    assert plain(raw.parse()) == plain(theirs.parse())
    failed_over(client)


async def test_a_streaming_response_reads_as_the_sdks(client: Any, control: Any, live: OpenAIServer) -> None:
    async def lines(c: Any) -> tuple[list[str], Any]:
        async with c.chat.completions.with_streaming_response.create(
            model="test-model", messages=MSG, stream=True
        ) as response:
            return [line async for line in response.iter_lines()], response

    (ours, response), (theirs, _) = await lines(client), await lines(control)
    assert sse_data(ours) == sse_data(theirs) and sse_data(ours)[-1] == "[DONE]"
    assert response.headers["x-request-id"] == live.requests[0].request_id
    assert turnout.served_by(response) == "live"

    async def parsed(c: Any) -> Any:
        async with c.chat.completions.with_streaming_response.create(model="test-model", messages=MSG) as response:
            return await response.parse()

    assert plain(await parsed(client)) == plain(await parsed(control))
    failed_over(client)


async def test_a_legacy_completion_stream_is_the_sdks(client: Any, control: Any) -> None:
    kwargs: dict[str, Any] = {"model": "test-model", "prompt": "say something", "stream": True}
    stream = await client.completions.create(**kwargs)
    ours = [plain(chunk) async for chunk in stream]
    theirs = [plain(chunk) async for chunk in await control.completions.create(**kwargs)]
    assert ours == theirs and "".join(c["choices"][0]["text"] for c in ours) == "echo: say something"
    assert turnout.served_by(stream) == "live"
    failed_over(client)


async def test_models_are_the_live_backends_named_after_it(client: Any, control: Any) -> None:
    ours = await client.models.list()
    theirs = await control.models.list()
    assert [m.id for m in ours.data] == [m.id for m in theirs.data] == ["test-model", WHISPER[1]]
    assert {m.owned_by for m in ours.data} == {"live"}
    model = await client.models.retrieve(WHISPER[1])
    assert (model.id, model.owned_by) == (WHISPER[1], "live")


# -- capability routing ---------------------------------------------------------------


def paths(server: OpenAIServer, fragment: str) -> list[str]:
    return [r.path for r in server.requests if fragment in r.path]


async def test_audio_goes_only_to_backends_that_transcribe(
    monkeypatch: pytest.MonkeyPatch, make_openai_server: Callable[..., OpenAIServer]
) -> None:
    deaf, ears = make_openai_server(models=["whisper-1"]), make_openai_server(models=["whisper-1"])
    configure(monkeypatch, ("deaf", "llamacpp", deaf.base_url), ("ears", "vllm", ears.base_url))
    async with turnout.AsyncOpenAI() as client:
        for _ in range(3):
            answer = await client.audio.transcriptions.create(model="whisper-1", file=upload())
            assert turnout.served_by(answer) == "ears"
        chat = await client.chat.completions.create(model="whisper-1", messages=MSG)
    assert turnout.served_by(chat) == "deaf", "the priority order still holds for what both can do"
    assert paths(deaf, "/audio") == [] and len(paths(ears, "/audio")) == 3
    assert client.router.stats()["deaf"]["attempts"] == 1


async def test_a_need_no_candidate_has_fails_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch, make_openai_server: Callable[..., OpenAIServer]
) -> None:
    first, second = make_openai_server(models=["whisper-1"]), make_openai_server(models=["whisper-1"])
    configure(monkeypatch, ("first", "llamacpp", first.base_url), ("second", "tgi", second.base_url))
    async with turnout.AsyncOpenAI() as client:
        with pytest.raises(openai.BadRequestError, match="audio_transcription"):
            await client.audio.transcriptions.create(model="whisper-1", file=upload())
        with pytest.raises(openai.BadRequestError, match="image_generation"):
            await client.images.generate(model="whisper-1", prompt="a cat")
    assert first.requests == [] and second.requests == []


async def test_unknown_capabilities_are_tried(
    monkeypatch: pytest.MonkeyPatch, make_openai_server: Callable[..., OpenAIServer]
) -> None:
    first, second = make_openai_server(), make_openai_server()
    configure(monkeypatch, ("first", "openai_compat", first.base_url), ("second", "openai_compat", second.base_url))
    async with turnout.AsyncOpenAI() as client:
        answer = await client.embeddings.create(model="test-model", input="hello")
    assert turnout.served_by(answer) == "first" and len(answer.data[0].embedding) == 8
    assert len(paths(first, "/embeddings")) == 1 and second.requests == []


async def test_known_capable_backends_are_tried_before_unknown_ones(
    monkeypatch: pytest.MonkeyPatch, make_openai_server: Callable[..., OpenAIServer]
) -> None:
    unsure, sure = make_openai_server(), make_openai_server()
    configure(monkeypatch, ("unsure", "openai_compat", unsure.base_url), ("sure", "vllm", sure.base_url))
    async with turnout.AsyncOpenAI() as client:
        answer = await client.embeddings.create(model="test-model", input="hello")
        chat = await client.chat.completions.create(model="test-model", messages=MSG)
    assert turnout.served_by(answer) == "sure" and paths(unsure, "/embeddings") == []
    assert turnout.served_by(chat) == "unsure", "chat is known on both: priority order"


async def test_an_unknown_backend_that_answers_404_is_failed_over_and_remembered(
    monkeypatch: pytest.MonkeyPatch, make_openai_server: Callable[..., OpenAIServer], clock: Clock
) -> None:  # noqa: F811
    lacking, able = make_openai_server(disabled={"embeddings"}), make_openai_server()
    configure(monkeypatch, ("lacking", "openai_compat", lacking.base_url), ("able", "openai_compat", able.base_url))
    async with turnout.AsyncOpenAI() as client:

        async def embed() -> str | None:
            return turnout.served_by(await client.embeddings.create(model="test-model", input="hello"))

        assert await embed() == "able"
        assert len(paths(lacking, "/embeddings")) == 1
        assert await embed() == "able"
        assert len(paths(lacking, "/embeddings")) == 1, "asked again within the learned period"
        chat = await client.chat.completions.create(model="test-model", messages=MSG)
        assert turnout.served_by(chat) == "lacking", "only the missing endpoint was learned"
        clock.advance(601)
        assert await embed() == "able"
        assert len(paths(lacking, "/embeddings")) == 2, "not asked again after the learned period"
    assert len(paths(able, "/embeddings")) == 3
