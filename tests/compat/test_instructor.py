"""instructor, as its README uses it: ``instructor.from_openai(client)`` and ``response_model=``.

instructor 1.17 pins ``jiter<0.15``, which openai >= 3.3.1 cannot use; it is installed
with ``--no-deps`` (requirements/compat-no-deps.txt), and the partial-streaming tests
are the proof that it works with the newer jiter.

The loopback server answers a tool call with arguments that fit the tool's schema,
every string being the prompt and every number 0; JSON modes get a fixed ``reply``.
"""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from tests.compat import need

instructor = need("instructor")

pytestmark = pytest.mark.compat

MODEL = "test-model"
PROMPT = "John Doe is 30 years old."
ASK = [{"role": "user", "content": PROMPT}]


class UserInfo(BaseModel):
    name: str
    age: int


JOHN = {"name": "John Doe", "age": 30}
FITTED = {"name": PROMPT, "age": 0}
"""What the loopback server's tool call carries for UserInfo."""


def test_response_model_sync(via) -> None:
    client = instructor.from_openai(via.client())
    user, completion = client.chat.completions.create_with_completion(
        model=MODEL, response_model=UserInfo, messages=ASK
    )
    assert isinstance(user, UserInfo) and user.model_dump() == FITTED
    assert via.server.chat_requests()[-1].json["tool_choice"]["function"]["name"] == "UserInfo"
    via.assert_served(completion)


async def test_response_model_async(via) -> None:
    client = instructor.from_openai(via.async_client())
    user = await client.chat.completions.create(model=MODEL, response_model=UserInfo, messages=ASK)
    assert isinstance(user, UserInfo) and user.model_dump() == FITTED
    via.assert_served()


@pytest.mark.parametrize("mode", ["JSON", "JSON_SCHEMA", "MD_JSON"])
async def test_json_modes(connect, make_openai_server, mode) -> None:
    via = connect(make_openai_server(reply=json.dumps(JOHN)))
    client = instructor.from_openai(via.async_client(), mode=instructor.Mode[mode])
    user, completion = await client.chat.completions.create_with_completion(
        model=MODEL, response_model=UserInfo, messages=ASK
    )
    assert isinstance(user, UserInfo) and user.model_dump() == JOHN
    via.assert_served(completion)


def test_partial_streaming_sync(via) -> None:
    client = instructor.from_openai(via.client())
    partials = list(client.chat.completions.create_partial(model=MODEL, response_model=UserInfo, messages=ASK))
    assert len(partials) > 1, "the object grows as the tool arguments arrive"
    assert partials[-1].model_dump() == FITTED
    via.assert_served()


async def test_partial_streaming_async(via) -> None:
    client = instructor.from_openai(via.async_client())
    stream = client.chat.completions.create_partial(model=MODEL, response_model=UserInfo, messages=ASK)
    partials = [p async for p in stream]
    assert len(partials) > 1, "the object grows as the tool arguments arrive"
    assert partials[-1].model_dump() == FITTED
    via.assert_served()


async def test_partial_streaming_json_mode(connect, make_openai_server) -> None:
    via = connect(make_openai_server(reply=json.dumps(JOHN), stream_chunks=4))
    client = instructor.from_openai(via.async_client(), mode=instructor.Mode.JSON)
    stream = client.chat.completions.create_partial(model=MODEL, response_model=UserInfo, messages=ASK)
    partials = [p async for p in stream]
    assert len(partials) > 1, "the object grows as the JSON arrives"
    assert partials[-1].model_dump() == JOHN
    via.assert_served()


async def test_iterable(connect, make_openai_server) -> None:
    people = [JOHN, {"name": "Jane Roe", "age": 28}]
    via = connect(make_openai_server(reply=json.dumps({"tasks": people}), stream_chunks=6))
    client = instructor.from_openai(via.async_client(), mode=instructor.Mode.JSON)
    found = [
        u
        async for u in client.chat.completions.create_iterable(
            model=MODEL, response_model=UserInfo, messages=[{"role": "user", "content": "John Doe is 30, Jane Roe 28."}]
        )
    ]
    assert [u.model_dump() for u in found] == people
    via.assert_served()
