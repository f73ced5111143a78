"""The synchronous twin of ``test_client_surface.py``: ``turnout.OpenAI`` with a dead primary against ``openai.OpenAI``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

import turnout
from tests.client.test_client_surface import (  # noqa: F401  (fixtures: live, routed_env)
    MSG,
    ROUTED,
    ROUTED_CASES,
    WHISPER,
    Person,
    check_routed,
    failed_over,
    live,
    plain,
    routed_env,
    sse_data,
)
from tests.settings.test_settings import isolated  # noqa: F401  (autouse: no TURNOUT_ from the shell, no .env)
from tests.support.loopback import OpenAIServer


@pytest.fixture
def server(routed_env: OpenAIServer) -> OpenAIServer:  # noqa: F811
    """The live server; the environment names a dead backend before it."""
    return routed_env


@pytest.fixture
def client(server: OpenAIServer) -> Iterator[turnout.OpenAI]:
    with turnout.OpenAI() as c:
        yield c


@pytest.fixture
def control(server: OpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-control", base_url=server.base_url, max_retries=0) as c:
        yield c


def test_the_sync_client_is_an_openai_client(client: turnout.OpenAI) -> None:
    assert isinstance(client, openai.OpenAI)


@pytest.mark.parametrize("name", ROUTED_CASES)
def test_every_routed_method_answers_as_the_sdk_does(
    client: Any, control: Any, server: OpenAIServer, name: str
) -> None:
    ours = ROUTED[name](client, WHISPER[0])
    theirs = ROUTED[name](control, WHISPER[1])
    check_routed(name, ours, theirs, server)
    failed_over(client)


def test_a_stream_is_the_sdks_with_the_serving_backends_response(
    client: Any, control: Any, server: OpenAIServer
) -> None:
    kwargs: dict[str, Any] = {
        "model": "test-model",
        "messages": MSG,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    stream = client.chat.completions.create(**kwargs)
    served = server.requests[-1]
    ours = [plain(chunk) for chunk in stream]
    theirs = [plain(chunk) for chunk in control.chat.completions.create(**kwargs)]
    assert ours == theirs and ours[-1]["usage"]["completion_tokens"] == 3
    assert stream.response.headers["x-request-id"] == served.request_id is not None
    assert turnout.served_by(stream) == "live"
    failed_over(client)


def test_the_stream_helper_gives_the_sdks_events_and_final_completion(client: Any, control: Any) -> None:
    def run(c: Any) -> tuple[list[str], Any]:
        with c.chat.completions.stream(model="test-model", messages=MSG, response_format=Person) as stream:
            kinds = [event.type for event in stream]
            return kinds, stream.get_final_completion()

    (our_kinds, ours), (their_kinds, theirs) = run(client), run(control)
    assert our_kinds == their_kinds and "content.done" in our_kinds
    assert (
        ours.choices[0].message.parsed
        == theirs.choices[0].message.parsed
        == Person(name="hi there", age=0, tags=["hi there"])
    )
    failed_over(client)


def test_a_raw_response_has_the_servers_headers_and_parses(client: Any, control: Any, server: OpenAIServer) -> None:
    raw = client.chat.completions.with_raw_response.create(model="test-model", messages=MSG)
    theirs = control.chat.completions.with_raw_response.create(model="test-model", messages=MSG)
    assert raw.status_code == theirs.status_code == 200
    assert raw.headers["x-request-id"] == server.requests[0].request_id
    assert turnout.served_by(raw) == "live"
    assert plain(raw.parse()) == plain(theirs.parse())
    failed_over(client)


def test_a_streaming_response_reads_as_the_sdks(client: Any, control: Any, server: OpenAIServer) -> None:
    def lines(c: Any) -> tuple[list[str], Any]:
        with c.chat.completions.with_streaming_response.create(
            model="test-model", messages=MSG, stream=True
        ) as response:
            return list(response.iter_lines()), response

    (ours, response), (theirs, _) = lines(client), lines(control)
    assert sse_data(ours) == sse_data(theirs) and sse_data(ours)[-1] == "[DONE]"
    assert response.headers["x-request-id"] == server.requests[0].request_id
    assert turnout.served_by(response) == "live"

    def parsed(c: Any) -> Any:
        with c.chat.completions.with_streaming_response.create(model="test-model", messages=MSG) as response:
            return response.parse()

    assert plain(parsed(client)) == plain(parsed(control))
    failed_over(client)


def test_a_legacy_completion_stream_is_the_sdks(client: Any, control: Any) -> None:
    kwargs: dict[str, Any] = {"model": "test-model", "prompt": "say something", "stream": True}
    stream = client.completions.create(**kwargs)
    ours = [plain(chunk) for chunk in stream]
    theirs = [plain(chunk) for chunk in control.completions.create(**kwargs)]
    assert ours == theirs and "".join(c["choices"][0]["text"] for c in ours) == "echo: say something"
    assert turnout.served_by(stream) == "live"
    failed_over(client)


def test_models_are_the_live_backends_named_after_it(client: Any, control: Any) -> None:
    ours = client.models.list()
    assert [m.id for m in ours.data] == [m.id for m in control.models.list().data] == ["test-model", WHISPER[1]]
    assert {m.owned_by for m in ours} == {"live"}
    model = client.models.retrieve(WHISPER[1])
    assert (model.id, model.owned_by) == (WHISPER[1], "live")
