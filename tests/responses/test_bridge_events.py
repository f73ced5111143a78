"""A chat backend's stream as the Responses API's events, read back by the openai SDK's own stream helper.

Each stream is turned into events, the events into server-sent-event bytes,
and those bytes go through the SDK's SSE decoder, its event types and the
accumulator behind ``client.responses.stream()``: what a caller would read.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterable

import pytest
from openai._models import construct_type
from openai._streaming import SSEDecoder
from openai._types import omit
from openai.lib.streaming.responses._responses import AsyncResponseStream
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from turnout.responses.bridge._answer import to_response
from turnout.responses.bridge._events import response_events, sse

RESPONSE_ID = "resp_bridge0123456789"
BODY: dict[str, Any] = {"model": "gpt-test", "input": "hi", "stream": True}
USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 2},
}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> dict[str, Any]:
    """One chat completion chunk as a server sends it."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "llama-3",
        "choices": choices,
        **top,
    }


def call(
    index: int | None, *, id: str | None = None, name: str | None = None, arguments: str | None = None
) -> dict[str, Any]:
    """A chunk carrying one tool call delta; None leaves a field out, as servers do after the first delta."""
    tool: dict[str, Any] = {"function": {}}
    if index is not None:
        tool["index"] = index
    if id is not None:
        tool.update(id=id, type="function")
    if name is not None:
        tool["function"]["name"] = name
    if arguments is not None:
        tool["function"]["arguments"] = arguments
    return chunk({"tool_calls": [tool]})


def text(*parts: str) -> list[dict[str, Any]]:
    return [chunk({"content": part}) for part in parts]


def stop(reason: str = "stop") -> dict[str, Any]:
    return chunk({}, finish=reason)


def usage(counts: dict[str, Any] = USAGE) -> dict[str, Any]:
    return chunk(None, usage=counts)


async def events_of(chunks: Iterable[dict[str, Any]], body: dict[str, Any] = BODY) -> list[dict[str, Any]]:
    async def source() -> AsyncIterator[dict[str, Any]]:
        for each in chunks:
            yield each

    events = [event async for event in response_events(source(), body, response_id=RESPONSE_ID)]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


class _Wire:
    """The raw stream ``responses.stream()`` reads, fed from ``sse()``'s bytes through the SDK's SSE decoder."""

    response = None

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._bytes = [sse(event) for event in events]

    async def __aiter__(self) -> AsyncIterator[Any]:
        for sent in SSEDecoder().iter_bytes(iter(self._bytes)):
            data = sent.json()
            assert sent.event == data["type"]
            yield construct_type(type_=ResponseStreamEvent, value=data)


async def read(events: list[dict[str, Any]], text_format: Any = omit) -> tuple[AsyncResponseStream[Any], list[Any]]:
    """What ``client.responses.stream(...)`` gives the caller: the stream helper, and the events it yields."""
    stream: AsyncResponseStream[Any] = AsyncResponseStream(
        raw_stream=_Wire(events),  # type: ignore[arg-type]
        text_format=text_format,
        input_tools=omit,
        starting_after=None,
    )
    return stream, [event async for event in stream]


TEXT_ITEM = ["response.output_item.added", "response.content_part.added"]
TEXT_DONE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
START = ["response.created", "response.in_progress"]


async def test_a_text_answer_streams_as_one_message_item_and_reads_back_whole() -> None:
    chunks = [chunk({"role": "assistant"}), chunk({"content": ""}), *text("Hel", "lo", " there"), stop(), usage()]
    events = await events_of(chunks)
    assert types(events) == [*START, *TEXT_ITEM, *["response.output_text.delta"] * 3, *TEXT_DONE, "response.completed"]

    stream, seen = await read(events)
    assert [e.snapshot for e in seen if e.type == "response.output_text.delta"] == ["Hel", "Hello", "Hello there"]
    final = await stream.get_final_response()
    assert (final.id, final.model, final.status, final.output_text) == (
        RESPONSE_ID,
        "llama-3",
        "completed",
        "Hello there",
    )
    assert final.output[0].status == "completed"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (12, 5, 17)
    assert final.usage.input_tokens_details.cached_tokens == 4
    assert final.usage.output_tokens_details.reasoning_tokens == 2
    assert seen[0].response.status == "in_progress" and seen[0].response.output == []


async def test_tool_calls_stream_as_function_call_items_after_the_text_closes() -> None:
    chunks = [
        chunk({"role": "assistant", "content": None}),
        *text("Let me check."),
        call(0, id="call_a", name="get_weather", arguments=""),
        call(0, arguments='{"city":'),
        call(0, arguments=' "Paris"}'),
        call(1, id="call_b", name="get_time", arguments="{}"),
        stop("tool_calls"),
        usage(),
    ]
    events = await events_of(chunks)
    fc_delta = "response.function_call_arguments.delta"
    assert types(events) == [
        *START,
        *TEXT_ITEM,
        "response.output_text.delta",
        *TEXT_DONE,
        "response.output_item.added",
        fc_delta,
        fc_delta,
        "response.output_item.added",
        fc_delta,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    first_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert (first_done["name"], first_done["arguments"]) == ("get_weather", '{"city": "Paris"}')

    stream, seen = await read(events)
    assert [e.snapshot for e in seen if e.type == fc_delta] == ['{"city":', '{"city": "Paris"}', "{}"]
    final = await stream.get_final_response()
    assert final.output_text == "Let me check."
    assert [(o.call_id, o.name, o.arguments, o.status) for o in final.output if o.type == "function_call"] == [
        ("call_a", "get_weather", '{"city": "Paris"}', "completed"),
        ("call_b", "get_time", "{}", "completed"),
    ]


async def test_a_call_sent_whole_in_one_chunk_is_one_item_with_one_delta() -> None:
    events = await events_of([call(0, id="call_x", name="lookup", arguments='{"q": "turnout"}'), stop("tool_calls")])
    assert types(events) == [
        *START,
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = await (await read(events))[0].get_final_response()
    assert [(o.call_id, o.name, o.arguments) for o in final.output] == [("call_x", "lookup", '{"q": "turnout"}')]


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param(
            [
                call(0, id="call_1", name="a", arguments='{"n": 1}'),
                call(0, id="call_2", name="b", arguments='{"n": 2}'),
            ],
            id="every-call-numbered-0",
        ),
        pytest.param(
            [
                call(None, id="call_1", name="a", arguments='{"n": '),
                call(None, arguments="1}"),
                call(None, id="call_2", name="b", arguments='{"n": 2}'),
            ],
            id="no-index",
        ),
        pytest.param(
            [
                call(0, id="call_1", name="a"),
                call(1, id="call_2", name="b"),
                call(0, arguments='{"n": 1}'),
                call(1, arguments='{"n": 2}'),
            ],
            id="interleaved",
        ),
    ],
)
async def test_calls_are_told_apart_however_the_server_numbers_them(chunks: list[dict[str, Any]]) -> None:
    final = await (await read(await events_of([*chunks, stop("tool_calls")])))[0].get_final_response()
    assert [(o.call_id, o.name, json.loads(o.arguments)) for o in final.output] == [
        ("call_1", "a", {"n": 1}),
        ("call_2", "b", {"n": 2}),
    ]


async def test_calls_without_ids_get_distinct_call_ids_the_caller_can_answer() -> None:
    events = await events_of([call(0, name="a", arguments="{}"), call(1, name="b", arguments="{}"), stop("tool_calls")])
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    final = await (await read(events))[0].get_final_response()
    call_ids = [o.call_id for o in final.output]
    assert len(set(call_ids)) == 2 and all(c.startswith("call_") for c in call_ids)
    assert call_ids == [item["call_id"] for item in added]


async def test_arguments_sent_before_the_name_are_not_lost() -> None:
    events = await events_of(
        [call(0, id="call_1", arguments='{"a"'), call(0, name="f", arguments=": 1}"), stop("tool_calls")]
    )
    final = await (await read(events))[0].get_final_response()
    assert [(o.call_id, o.name, o.arguments) for o in final.output] == [("call_1", "f", '{"a": 1}')]


async def test_reasoning_deltas_are_dropped() -> None:
    chunks = [
        chunk({"role": "assistant", "reasoning_content": "The user wants"}),
        chunk({"reasoning_content": " weather.", "content": None}),
        call(0, id="call_1", name="get_weather", arguments='{"city": "Oslo"}'),
        stop("tool_calls"),
    ]
    events = await events_of(chunks)
    assert "user wants" not in json.dumps(events) and " weather." not in json.dumps(events)
    final = await (await read(events))[0].get_final_response()
    assert [o.type for o in final.output] == ["function_call"]
    assert final.output_text == ""


@pytest.mark.parametrize(("reason", "why"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
async def test_an_answer_cut_short_ends_in_response_incomplete(reason: str, why: str) -> None:
    events = await events_of([*text("Once upon", " a time"), stop(reason), usage()])
    assert types(events)[-1] == "response.incomplete"

    _, seen = await read(events)
    last = seen[-1]
    assert last.type == "response.incomplete"
    assert (last.response.status, last.response.incomplete_details.reason) == ("incomplete", why)
    assert last.response.output_text == "Once upon a time"
    assert last.response.usage.output_tokens == 5


async def test_a_stream_without_usage_completes_with_usage_none() -> None:
    final = await (await read(await events_of([*text("ok"), stop()])))[0].get_final_response()
    assert (final.output_text, final.usage) == ("ok", None)


async def test_a_stream_without_chunks_still_completes() -> None:
    events = await events_of([])
    assert types(events) == [*START, "response.completed"]
    final = await (await read(events))[0].get_final_response()
    assert (final.model, final.output, final.status) == ("gpt-test", [], "completed")


async def test_a_refusal_streams_as_a_refusal_part() -> None:
    events = await events_of([chunk({"role": "assistant", "refusal": "I can't"}), chunk({"refusal": " help."}), stop()])
    assert types(events) == [
        *START,
        *TEXT_ITEM,
        "response.refusal.delta",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = await (await read(events))[0].get_final_response()
    assert [(p.type, p.refusal) for p in final.output[0].content] == [("refusal", "I can't help.")]


class Weather(BaseModel):
    city: str
    temperature: int


async def test_structured_output_is_parsed_by_responses_stream_text_format() -> None:
    body = {
        **BODY,
        "text": {
            "format": {"type": "json_schema", "name": "Weather", "strict": True, "schema": Weather.model_json_schema()}
        },
    }
    events = await events_of([*text('{"city": "Pa', 'ris", "temp', 'erature": 21}'), stop(), usage()], body)
    stream, seen = await read(events, text_format=Weather)
    done = next(e for e in seen if e.type == "response.output_text.done")
    assert done.parsed == Weather(city="Paris", temperature=21)
    final = await stream.get_final_response()
    assert final.output_parsed == Weather(city="Paris", temperature=21)
    assert final.text.format.type == "json_schema"


def completion(message: dict[str, Any], finish: str, counts: dict[str, Any] | None) -> dict[str, Any]:
    """The non-streamed chat completion carrying the same answer as a stream."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "llama-3",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        **({"usage": counts} if counts else {}),
    }


SAME_ANSWERS = [
    pytest.param([*text("Hel", "lo"), stop(), usage()], completion({"content": "Hello"}, "stop", USAGE), id="text"),
    pytest.param(
        [
            *text("Checking."),
            call(0, id="call_a", name="f", arguments='{"x"'),
            call(0, arguments=": 1}"),
            call(1, id="call_b", name="g", arguments="{}"),
            stop("tool_calls"),
            usage(),
        ],
        completion(
            {
                "content": "Checking.",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
                    {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                ],
            },
            "tool_calls",
            USAGE,
        ),
        id="text-and-calls",
    ),
    pytest.param(
        [*text("Once"), stop("length"), usage()], completion({"content": "Once"}, "length", USAGE), id="length"
    ),
    pytest.param(
        [chunk({"refusal": "No."}), stop()],
        completion({"content": None, "refusal": "No."}, "stop", None),
        id="refusal-no-usage",
    ),
]


@pytest.mark.parametrize(("chunks", "chat"), SAME_ANSWERS)
async def test_the_last_event_carries_what_to_response_makes_for_the_same_answer(
    chunks: list[dict[str, Any]], chat: dict[str, Any]
) -> None:
    body = {**BODY, "instructions": "Be brief.", "max_output_tokens": 64, "metadata": {"k": "v"}}
    streamed = (await events_of(chunks, body))[-1]["response"]
    whole = to_response(chat, body, response_id=RESPONSE_ID)

    def comparable(response: dict[str, Any]) -> dict[str, Any]:
        """Apart from the moment it finished and its items' ids, which are fresh each time."""
        return {
            **{k: v for k, v in response.items() if k != "completed_at"},
            "output": [{k: v for k, v in item.items() if k != "id"} for item in response["output"]],
        }

    assert comparable(streamed) == comparable(whole)
    assert Response.model_validate(streamed).output_text == Response.model_validate(whole).output_text


@pytest.mark.parametrize("chunks", [param.values[0] for param in SAME_ANSWERS])
async def test_every_event_is_valid_as_the_sdk_types_it(chunks: list[dict[str, Any]]) -> None:
    """Strict validation: every field the SDK's event and Response models require is there, with its type."""
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    for event in await events_of(chunks):
        assert adapter.validate_python(event).type == event["type"]


async def test_items_are_announced_and_closed_with_the_same_ids() -> None:
    events = await events_of([*text("a"), call(0, id="call_a", name="f", arguments="{}"), stop("tool_calls")])
    added = {e["output_index"]: e["item"]["id"] for e in events if e["type"] == "response.output_item.added"}
    done = {e["output_index"]: e["item"]["id"] for e in events if e["type"] == "response.output_item.done"}
    assert added == done and len(added) == 2
    deltas = [e for e in events if e["type"].endswith(".delta")]
    assert all(e["item_id"] == added[e["output_index"]] for e in deltas)
    assert [item["id"] for item in events[-1]["response"]["output"]] == [added[0], added[1]]


def test_sse_frames_one_event_that_the_sdk_decoder_reads_back() -> None:
    event = {
        "type": "response.output_text.delta",
        "sequence_number": 3,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "héllo ☃\n\ndata: not an event",
        "logprobs": [],
    }
    framed = sse(event)
    assert framed.startswith(b"event: response.output_text.delta\ndata: {") and framed.endswith(b"}\n\n")
    decoded = list(SSEDecoder().iter_bytes(iter([framed + sse({**event, "sequence_number": 4})])))
    assert [(d.event, d.json()) for d in decoded] == [
        ("response.output_text.delta", event),
        ("response.output_text.delta", {**event, "sequence_number": 4}),
    ]
