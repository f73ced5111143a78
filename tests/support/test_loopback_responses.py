"""The loopback OpenAI server's native Responses API, through the plain openai SDK: what turnout passes through
to a Responses backend must be answered as OpenAI answers it, created, streamed and stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types.responses import Response, ResponseItem
from pydantic import BaseModel, Field, TypeAdapter

from tests.support.loopback import Fault, OpenAIServer

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "strict": True,
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
"""What OpenAI streams for one message answered in three pieces, before the closing event."""


class Trip(BaseModel):
    city: str
    days: int = Field(ge=1)
    sights: list[str]


class Booking(BaseModel):
    hotel: str
    nights: int = Field(ge=2)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(stream_chunks=3) as running:
        yield running


@pytest.fixture
async def client(server: OpenAIServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as sdk:
        yield sdk


def strictly(response: Response) -> Response:
    """The SDK builds answers without validating them: validate what came back against its own type."""
    return Response.model_validate(response.to_dict())


async def ask(client: openai.AsyncOpenAI, **kwargs: Any) -> Response:
    return strictly(await client.responses.create(model="test-model", **kwargs))


# -- create ---------------------------------------------------------------------------
async def test_a_string_input_is_echoed_with_usage(client: openai.AsyncOpenAI) -> None:
    response = await ask(client, input="hello there")
    assert response.output_text == "echo: hello there" and response.status == "completed"
    assert response.id.startswith("resp_") and response.output[0].id.startswith("msg_")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (2, 3, 5)


async def test_instructions_count_as_input_and_are_answered_back(
    client: openai.AsyncOpenAI, server: OpenAIServer
) -> None:
    plain = await ask(client, input="hello there")
    instructed = await ask(client, input="hello there", instructions="Answer in one short line")
    assert instructed.output_text == plain.output_text == "echo: hello there"
    assert instructed.instructions == "Answer in one short line" and plain.instructions is None
    assert instructed.usage and plain.usage and instructed.usage.input_tokens == plain.usage.input_tokens + 5
    assert server.responses_requests()[-1].json["instructions"] == "Answer in one short line"


async def test_a_multi_turn_item_list_answers_the_last_user_message(client: openai.AsyncOpenAI) -> None:
    response = await ask(
        client,
        input=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second question"}]},
        ],
    )
    assert response.output_text == "echo: second question"
    assert response.usage and response.usage.input_tokens == 6


async def test_a_function_tool_is_called_with_arguments_that_fit_it(client: openai.AsyncOpenAI) -> None:
    response = await ask(client, input="Paris", tools=[WEATHER])
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather" and call.status == "completed"
    assert json.loads(call.arguments) == {"city": "Paris"} and call.call_id and call.id
    assert response.output_text == ""


async def test_parse_fills_a_pydantic_tool_and_tool_choice_names_one(client: openai.AsyncOpenAI) -> None:
    tools = [openai.pydantic_function_tool(Trip), openai.pydantic_function_tool(Booking)]
    first = await client.responses.parse(model="test-model", input="Rome", tools=tools)
    named = await client.responses.parse(
        model="test-model", input="Rome", tools=tools, tool_choice={"type": "function", "name": "Booking"}
    )
    none = await ask(client, input="Rome", tools=[WEATHER], tool_choice="none")
    assert first.output[0].type == "function_call" and first.output[0].parsed_arguments == Trip(
        city="Rome", days=1, sights=["Rome"]
    )
    assert named.output[0].type == "function_call" and named.output[0].parsed_arguments == Booking(
        hotel="Rome", nights=2
    )
    assert none.output_text == "echo: Rome"


async def test_a_tool_round_trip_as_items_answers_the_tool_result(client: openai.AsyncOpenAI) -> None:
    called = await ask(client, input="Paris", tools=[WEATHER], store=False)
    call = called.output[0]
    assert call.type == "function_call"
    answer = await ask(
        client,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Paris"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "22 C and sunny"},
        ],
    )
    assert answer.output_text == "tool said: 22 C and sunny" and answer.output[0].type == "message"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(called.id)  # store=False: nothing kept


async def test_parse_with_a_text_format_model(client: openai.AsyncOpenAI, server: OpenAIServer) -> None:
    response = await client.responses.parse(model="test-model", input="Lisbon", text_format=Trip)
    assert response.output_parsed == Trip(city="Lisbon", days=1, sights=["Lisbon"])
    fmt = server.responses_requests()[-1].json["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["name"] == "Trip" and fmt["strict"] is True


async def test_json_object_format_answers_an_echo_object(client: openai.AsyncOpenAI) -> None:
    response = await ask(client, input="hello there", text={"format": {"type": "json_object"}})
    assert json.loads(response.output_text) == {"echo": "hello there"}


async def test_max_output_tokens_cuts_the_answer_and_says_why(client: openai.AsyncOpenAI) -> None:
    response = await ask(client, input="one two three four", max_output_tokens=2)
    assert response.status == "incomplete" and response.incomplete_details
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "echo: one" and response.usage and response.usage.output_tokens == 2


async def test_an_unknown_model_is_refused_like_chat(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        await client.responses.create(model="no-such-model", input="hi")


# -- streaming ----------------------------------------------------------------------------
async def test_a_stream_sends_openais_events_in_order(client: openai.AsyncOpenAI, server: OpenAIServer) -> None:
    async with client.responses.stream(model="test-model", input="stream this answer") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert [e.type for e in events] == [*TEXT_EVENTS, "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: stream this answer"
    assert final.output_text == "echo: stream this answer" and final.status == "completed" and final.usage
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    assert (await client.responses.retrieve(final.id)).output_text == final.output_text


async def test_a_streamed_tool_call_arrives_as_argument_deltas(client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(
        model="test-model", input="Oslo", tools=[openai.pydantic_function_tool(Trip)]
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * 3,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2].item.type == "function_call" and events[2].item.arguments == ""
    call = final.output[0]
    assert call.type == "function_call" and call.parsed_arguments == Trip(city="Oslo", days=1, sights=["Oslo"])


async def test_a_streamed_text_format_parses_at_the_end(client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(model="test-model", input="Kyoto", text_format=Trip) as stream:
        final = await stream.get_final_response()
    assert final.output_parsed == Trip(city="Kyoto", days=1, sights=["Kyoto"])


async def test_a_length_limited_stream_ends_incomplete(client: openai.AsyncOpenAI) -> None:
    stream = await client.responses.create(
        model="test-model", input="one two three four", max_output_tokens=2, stream=True
    )
    events = [event async for event in stream]
    assert events[-1].type == "response.incomplete"
    assert (
        events[-1].response.incomplete_details and events[-1].response.incomplete_details.reason == "max_output_tokens"
    )
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: one"


async def test_a_stream_cut_by_a_fault_never_completes(client: openai.AsyncOpenAI, server: OpenAIServer) -> None:
    server.fail(Fault(cut_after=4), times=1)
    seen: list[str] = []
    with pytest.raises((openai.APIConnectionError, httpx2.RemoteProtocolError)):  # newer SDKs wrap the cut
        async with client.responses.stream(model="test-model", input="cut me off") as stream:
            async for event in stream:
                seen.append(event.type)
    assert seen == TEXT_EVENTS[:4]
    server.fail(Fault(empty=True), times=1)
    async with client.responses.stream(model="test-model", input="nothing") as stream:
        with pytest.raises(RuntimeError, match="response.completed"):
            await stream.get_final_response()


# -- stored responses ------------------------------------------------------------------------
async def test_a_follow_up_continues_the_stored_conversation(client: openai.AsyncOpenAI, server: OpenAIServer) -> None:
    called = await ask(client, input="Paris", tools=[WEATHER])
    call = called.output[0]
    assert call.type == "function_call"
    answer = await ask(
        client,
        previous_response_id=called.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22 C"}],
    )
    assert answer.output_text == "tool said: 22 C" and answer.previous_response_id == called.id
    items = await client.responses.input_items.list(answer.id, order="asc")
    kinds = [(item.type, getattr(item, "role", None)) for item in items.data]
    assert kinds == [("message", "user"), ("function_call", None), ("function_call_output", None)]
    assert items.data[1].id == call.id, "the earlier output, as it was answered"
    for item in items.data:
        TypeAdapter(ResponseItem).validate_python(item.to_dict())


async def test_retrieve_list_and_delete_a_stored_response(client: openai.AsyncOpenAI, server: OpenAIServer) -> None:
    made = await ask(
        client,
        input=[{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
        instructions="ignored by the items",
    )
    assert strictly(await client.responses.retrieve(made.id)).output_text == "echo: two"
    newest = await client.responses.input_items.list(made.id, limit=1)
    assert [i.content[0].text for i in newest.data if i.type == "message"] == ["two"] and newest.has_more
    rest = await newest.get_next_page()
    assert [i.content[0].text for i in rest.data if i.type == "message"] == ["one"]
    deleted = await client.responses.with_raw_response.delete(made.id)
    assert deleted.http_response.json() == {"id": made.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError, match=f"Response with id '{made.id}' not found"):
        await client.responses.retrieve(made.id)
    assert [(r.method, r.path.removeprefix("/v1")) for r in server.responses_requests()][-3:] == [
        ("GET", f"/responses/{made.id}/input_items"),
        ("DELETE", f"/responses/{made.id}"),
        ("GET", f"/responses/{made.id}"),
    ]


async def test_an_unknown_previous_response_is_a_404_naming_the_parameter(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model="test-model", input="hi", previous_response_id="resp_elsewhere")
    assert caught.value.body == {
        "message": "Previous response with id 'resp_elsewhere' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }


async def test_stored_responses_stay_on_their_server(client: openai.AsyncOpenAI) -> None:
    made = await ask(client, input="hi")
    with OpenAIServer() as other:
        async with openai.AsyncOpenAI(base_url=other.base_url, api_key="x", max_retries=0) as elsewhere:
            with pytest.raises(openai.NotFoundError):
                await elsewhere.responses.retrieve(made.id)
            with pytest.raises(openai.NotFoundError):
                await elsewhere.responses.create(model="test-model", input="again", previous_response_id=made.id)
            assert (await elsewhere.responses.create(model="test-model", input="x")).id != made.id


async def test_only_a_background_response_can_be_cancelled(client: openai.AsyncOpenAI) -> None:
    done = await ask(client, input="hi")
    with pytest.raises(openai.BadRequestError, match="synchronous"):
        await client.responses.cancel(done.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.cancel("resp_unknown")
    queued = await ask(client, input="later", background=True)
    assert queued.status == "queued" and queued.output == []
    assert (await client.responses.cancel(queued.id)).status == "cancelled"
    polled = await ask(client, input="poll me", background=True)
    finished = strictly(await client.responses.retrieve(polled.id))
    assert finished.status == "completed" and finished.output_text == "echo: poll me"


# -- a server without the Responses API ----------------------------------------------------------
async def test_a_chat_only_server_answers_404() -> None:
    with OpenAIServer(disabled={"responses"}) as server:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as sdk:
            with pytest.raises(openai.NotFoundError, match=r"Invalid URL \(POST /v1/responses\)"):
                await sdk.responses.create(model="test-model", input="hi")
            with pytest.raises(openai.NotFoundError):
                await sdk.responses.retrieve("resp_anything")
            chat = await sdk.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])
            assert chat.choices[0].message.content == "echo: hi"
        assert [r.method for r in server.responses_requests()] == ["POST", "GET"]
