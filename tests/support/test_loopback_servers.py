"""The OpenAI loopback server itself, through the plain openai SDK: every endpoint the routed, aggregated
and pinned tests use answers what the SDK parses into its own types, deterministically."""

from __future__ import annotations

import base64
import enum
import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from typing import Literal

import ollama
import openai
import pytest
from openai.types import (
    Batch,
    Completion,
    CreateEmbeddingResponse,
    FileObject,
    ImagesResponse,
    ModerationCreateResponse,
)
from openai.types.audio import Transcription, TranscriptionVerbose, Translation
from pydantic import AnyUrl, BaseModel, Field

from tests.support.loopback import Fault, OpenAIServer
from tests.support.loopback.faults import FormFile

PNG = b"\x89PNG\r\n\x1a\n"
AUDIO = b"RIFF\x00\x00\x00\x00WAVE" + bytes(range(256)) + b"\r\n--not-a-boundary\r\n"
"""Binary, with CRLFs and dashes inside, so a careless multipart parser would mangle it."""


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(models=["test-model", "whisper-1"]) as running:
        yield running


@pytest.fixture
def client(server: OpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="sk-loopback", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def aclient(server: OpenAIServer):
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-loopback", max_retries=0) as sdk:
        yield sdk


def strictly(answer: BaseModel) -> BaseModel:
    """The SDK builds answers without validating them: validate what came back against its own type."""
    return type(answer).model_validate(answer.to_dict())  # type: ignore[attr-defined]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    zip_code: str = Field(max_length=5)


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=1, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Person(BaseModel):
    """Most of what pydantic puts in a schema: $defs and $ref, enums, literals, constraints, formats, nullables."""

    name: str
    age: int = Field(gt=17)
    height: float = Field(ge=1.5, le=2.5)
    colour: Colour
    home: Address
    previous: Address | None
    tags: list[str] = Field(min_length=2)
    pet: Cat | Dog = Field(discriminator="kind")
    born: date
    seen: datetime
    site: AnyUrl
    ident: uuid.UUID
    scores: dict[str, int]
    pair: tuple[int, str]


class Node(BaseModel):
    label: str
    children: list[Node]


# -- request ids --------------------------------------------------------------
def test_every_answer_carries_its_own_request_id(client: openai.OpenAI, server: OpenAIServer) -> None:
    first = client.chat.completions.with_raw_response.create(model="test-model", messages=user("hi"))
    second = client.models.with_raw_response.list()
    with client.chat.completions.with_streaming_response.create(
        model="test-model", messages=user("hi"), stream=True
    ) as streamed:
        streamed_id = streamed.request_id
        assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices) == "echo: hi"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=user("hi"))
    server.fail(Fault(status=503), times=1)
    with pytest.raises(openai.InternalServerError) as injected:
        client.embeddings.create(model="test-model", input="x")
    ids = [first.request_id, second.request_id, streamed_id, missing.value.request_id, injected.value.request_id]
    assert ids == [r.request_id for r in server.requests]
    assert all(i and i.startswith("req_loopback_") for i in ids) and len(set(ids)) == 5


def test_request_ids_differ_between_servers(client: openai.OpenAI) -> None:
    with OpenAIServer() as other, openai.OpenAI(base_url=other.base_url, api_key="k", max_retries=0) as elsewhere:
        theirs = elsewhere.models.with_raw_response.list().request_id
    assert client.models.with_raw_response.list().request_id != theirs


# -- structured outputs ---------------------------------------------------------
def test_parse_returns_a_model_filled_from_its_schema(client: openai.OpenAI) -> None:
    reply = client.chat.completions.parse(model="test-model", messages=user("Ada Lovelace"), response_format=Person)
    person = reply.choices[0].message.parsed
    assert isinstance(person, Person) and person.name == "Ada Lovelace", "free strings echo the request"
    assert person.age == 18 and person.height == 1.5 and person.colour is Colour.RED
    assert isinstance(person.pet, Cat) and person.pet.lives == 1 and len(person.tags) == 2
    assert len(person.home.zip_code) <= 5 and person.scores == {"text": 0}


def test_a_recursive_schema_ends(client: openai.OpenAI) -> None:
    reply = client.chat.completions.parse(model="test-model", messages=user("root"), response_format=Node)
    node, depth = reply.choices[0].message.parsed, 0
    while node.children:
        node, depth = node.children[0], depth + 1
    assert node.label == "root" and 1 < depth < 10


def test_a_raw_json_schema_without_pydantic(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": ["string", "null"], "format": "date-time"},
            "n": {"type": "number", "exclusiveMinimum": 0},
            "mode": {"const": "fast"},
            "items": {"type": "array", "items": {"type": "integer"}, "minItems": 3},
        },
        "required": ["when", "n", "mode", "items"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="test-model",
        messages=user("x"),
        response_format={"type": "json_schema", "json_schema": {"name": "raw", "schema": schema, "strict": True}},
    )
    assert json.loads(reply.choices[0].message.content or "") == {
        "when": "2024-01-01T00:00:00Z",
        "n": 0.5,
        "mode": "fast",
        "items": [0, 0, 0],
    }


def test_json_object_mode_answers_an_echo_object(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="test-model", messages=user("hello there"), response_format={"type": "json_object"}
    )
    assert json.loads(reply.choices[0].message.content or "") == {"echo": "hello there"}


async def test_streamed_structured_output_arrives_in_pieces_and_parses(aclient: openai.AsyncOpenAI) -> None:
    pieces = []
    async with aclient.chat.completions.stream(
        model="test-model", messages=user("Grace Hopper"), response_format=Person
    ) as stream:
        async for event in stream:
            if event.type == "content.delta":
                pieces.append(event.delta)
        final = await stream.get_final_completion()
    assert len(pieces) >= 3, "a partial-JSON parser must see the answer grow"
    assert (
        isinstance(final.choices[0].message.parsed, Person) and final.choices[0].message.parsed.name == "Grace Hopper"
    )


# -- tool calls -------------------------------------------------------------------
def test_a_strict_tool_is_called_with_arguments_that_fit_it(client: openai.OpenAI) -> None:
    reply = client.chat.completions.parse(
        model="test-model", messages=user("Alan Turing"), tools=[openai.pydantic_function_tool(Person)]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "Person" and isinstance(call.function.parsed_arguments, Person)
    assert call.function.parsed_arguments.name == "Alan Turing"


def test_tool_choice_picks_the_tool(client: openai.OpenAI) -> None:
    tools = [openai.pydantic_function_tool(Address), openai.pydantic_function_tool(Cat)]
    first = client.chat.completions.parse(model="test-model", messages=user("x"), tools=tools)
    named = client.chat.completions.parse(
        model="test-model",
        messages=user("x"),
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "Cat"}},
    )
    none = client.chat.completions.create(model="test-model", messages=user("x"), tools=tools, tool_choice="none")
    assert first.choices[0].message.tool_calls[0].function.name == "Address"
    assert named.choices[0].message.tool_calls[0].function.parsed_arguments == Cat(kind="cat", lives=1)
    assert none.choices[0].message.content == "echo: x" and none.choices[0].message.tool_calls is None


def test_a_tool_result_is_answered_in_text_unless_a_call_is_required(client: openai.OpenAI) -> None:
    tools = [openai.pydantic_function_tool(Address), openai.pydantic_function_tool(Cat)]
    first = client.chat.completions.create(model="test-model", messages=user("look"), tools=tools)
    call = first.choices[0].message.tool_calls[0]
    history = [
        *user("look"),
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "found"},
    ]
    text = client.chat.completions.create(model="test-model", messages=history, tools=tools)
    required = client.chat.completions.create(model="test-model", messages=history, tools=tools, tool_choice="required")
    assert text.choices[0].message.content == "tool said: found" and text.choices[0].finish_reason == "stop"
    follow_up = required.choices[0].message.tool_calls[0].function
    assert follow_up.name == "Cat", "the tool not called yet"
    assert json.loads(follow_up.arguments) == {"kind": "cat", "lives": 1}


def test_a_plain_schemaless_tool_gets_the_echo(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    reply = client.chat.completions.create(model="test-model", messages=user("hello there"), tools=tools)
    assert reply.choices[0].message.tool_calls[0].function.arguments == '{"text": "hello there"}'


def test_a_streamed_tool_call_comes_in_pieces_like_openais(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="test-model", messages=user("Ada"), stream=True, tools=[openai.pydantic_function_tool(Person)]
    )
    calls = [c.choices[0].delta.tool_calls[0] for c in stream if c.choices and c.choices[0].delta.tool_calls]
    assert len(calls) >= 3 and {c.index for c in calls} == {0}
    assert calls[0].id and calls[0].function.name == "Person" and all(c.id is None for c in calls[1:])
    assert Person.model_validate_json("".join(c.function.arguments or "" for c in calls)).name == "Ada"


async def test_the_stream_helper_reassembles_a_tool_call(aclient: openai.AsyncOpenAI) -> None:
    async with aclient.chat.completions.stream(
        model="test-model", messages=user("Ada"), tools=[openai.pydantic_function_tool(Person)]
    ) as stream:
        deltas = [e async for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = await stream.get_final_completion()
    assert len(deltas) >= 2
    parsed = final.choices[0].message.tool_calls[0].function.parsed_arguments
    assert isinstance(parsed, Person) and parsed.name == "Ada" and final.choices[0].finish_reason == "tool_calls"


# -- legacy completions -------------------------------------------------------------
def test_legacy_completions_echo_each_prompt(client: openai.OpenAI) -> None:
    one = client.completions.create(model="test-model", prompt="say this")
    many = client.completions.create(model="test-model", prompt=["a", "b c"], echo=True)
    short = client.completions.create(model="test-model", prompt="one two three", max_tokens=2)
    assert isinstance(strictly(one), Completion) and one.choices[0].text == "echo: say this"
    assert [c.text for c in many.choices] == ["aecho: a", "b cecho: b c"]
    assert (short.choices[0].text, short.choices[0].finish_reason) == ("echo: one", "length")


def test_legacy_completions_stream_until_done(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="test-model", prompt="one two three", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


# -- embeddings -------------------------------------------------------------------
def test_embeddings_as_floats_or_base64_agree(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="test-model", input=["a b"], dimensions=4)
    packed = client.embeddings.create(model="test-model", input=["a b"], dimensions=4, encoding_format="base64")
    assert isinstance(strictly(floats), CreateEmbeddingResponse)
    unpacked = memoryview(base64.b64decode(packed.data[0].embedding)).cast("f").tolist()  # type: ignore[arg-type]
    assert unpacked == pytest.approx(floats.data[0].embedding)


def test_a_chunked_request_body_is_read_whole(client: openai.OpenAI, server: OpenAIServer) -> None:
    body = json.dumps({"model": "test-model", "input": ["a", "b"]}).encode()
    reply = client.post(
        "/embeddings",
        cast_to=CreateEmbeddingResponse,
        content=iter([body[:10], body[10:]]),
        options={"headers": {"Content-Type": "application/json"}},
    )
    assert server.requests[-1].header("Transfer-Encoding") == "chunked"
    assert len(reply.data) == 2 and server.requests[-1].json == {"model": "test-model", "input": ["a", "b"]}


# -- audio (multipart) ----------------------------------------------------------------
def test_a_transcription_names_the_upload_and_records_the_form(client: openai.OpenAI, server: OpenAIServer) -> None:
    reply = client.audio.transcriptions.create(file=("talk.wav", AUDIO, "audio/wav"), model="whisper-1", language="en")
    assert isinstance(strictly(reply), Transcription) and reply.text == f"transcribed talk.wav ({len(AUDIO)} bytes)"
    sent = server.requests[-1]
    assert sent.path == "/v1/audio/transcriptions" and sent.json is None
    assert sent.form == {"model": "whisper-1", "language": "en", "file": FormFile("talk.wav", "audio/wav", AUDIO)}


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("text", "transcribed a.mp3 (3 bytes)"),
        ("srt", "1\n00:00:00,000 --> 00:00:01,000\ntranscribed a.mp3 (3 bytes)\n"),
    ],
)
def test_a_transcription_as_text(client: openai.OpenAI, fmt: str, expected: str) -> None:
    assert (
        client.audio.transcriptions.create(file=("a.mp3", b"abc"), model="whisper-1", response_format=fmt) == expected
    )


def test_a_verbose_transcription_with_word_timestamps(client: openai.OpenAI, server: OpenAIServer) -> None:
    reply = client.audio.transcriptions.create(
        file=("a.mp3", b"abc"),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["segment", "word"],
    )
    assert isinstance(reply, TranscriptionVerbose) and isinstance(strictly(reply), TranscriptionVerbose)
    assert reply.segments and reply.segments[0].text == reply.text == "transcribed a.mp3 (3 bytes)"
    assert server.requests[-1].form["timestamp_granularities[]"] == ["segment", "word"]  # type: ignore[index]


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # the SDK marks translations deprecated; servers still serve them
async def test_a_translation(aclient: openai.AsyncOpenAI) -> None:
    reply = await aclient.audio.translations.create(file=("hallo.ogg", b"12345"), model="whisper-1")
    assert isinstance(strictly(reply), Translation) and reply.text == "translated hallo.ogg (5 bytes)"


def test_audio_needs_a_model_this_server_has(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="gpt-4o-transcribe"):
        client.audio.transcriptions.create(file=("a.wav", b"x"), model="gpt-4o-transcribe")


# -- moderations and images ------------------------------------------------------------
def test_moderations_one_result_per_input(client: openai.OpenAI) -> None:
    reply = client.moderations.create(input=["fine", "also fine"])
    assert isinstance(strictly(reply), ModerationCreateResponse) and len(reply.results) == 2
    assert not reply.results[0].flagged and reply.results[0].categories.self_harm_intent is False
    assert reply.results[1].category_scores.violence_graphic < 0.01


def test_images_as_base64_by_default_or_as_urls(client: openai.OpenAI) -> None:
    inline = client.images.generate(prompt="a cat", n=2)
    linked = client.images.generate(prompt="a cat", response_format="url")
    assert isinstance(strictly(inline), ImagesResponse) and len(inline.data or []) == 2
    assert base64.b64decode(inline.data[0].b64_json or "").startswith(PNG)  # type: ignore[index]
    with urllib.request.urlopen(linked.data[0].url) as fetched:  # type: ignore[index,arg-type]
        assert fetched.read().startswith(PNG)


# -- files and batches (pinned endpoints: state lives on one server) ------------------
async def test_files_round_trip_and_stay_on_their_server(aclient: openai.AsyncOpenAI) -> None:
    created = await aclient.files.create(file=("requests.jsonl", b'{"a": 1}\n{"b": 2}\n'), purpose="batch")
    other = await aclient.files.create(file=("notes.txt", b"x"), purpose="user_data")
    assert isinstance(strictly(created), FileObject) and (created.filename, created.bytes) == ("requests.jsonl", 18)
    assert [f.id async for f in aclient.files.list()] == [other.id, created.id]
    assert [f.id async for f in aclient.files.list(purpose="batch")] == [created.id]
    assert (await aclient.files.retrieve(created.id)) == created
    assert (await aclient.files.content(created.id)).content == b'{"a": 1}\n{"b": 2}\n'
    with OpenAIServer() as elsewhere:
        async with openai.AsyncOpenAI(base_url=elsewhere.base_url, api_key="k", max_retries=0) as stranger:
            with pytest.raises(openai.NotFoundError, match=created.id):
                await stranger.files.retrieve(created.id)
    assert (await aclient.files.delete(created.id)).deleted is True
    assert [f.id async for f in aclient.files.list()] == [other.id]


def test_files_list_in_pages(client: openai.OpenAI) -> None:
    ids = [client.files.create(file=(f"{i}.txt", b"x"), purpose="user_data").id for i in range(3)]
    first = client.files.list(limit=2, order="asc")
    assert [f.id for f in first.data] == ids[:2] and first.has_more is True
    assert [f.id for f in client.files.list(limit=2, order="asc")] == ids, "the SDK follows the cursor"


def test_batches_of_an_uploaded_file(client: openai.OpenAI) -> None:
    upload = client.files.create(file=("in.jsonl", b'{"a": 1}\n{"b": 2}\n'), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"job": "nightly"}
    )
    assert isinstance(strictly(batch), Batch) and batch.status == "validating"
    assert batch.request_counts is not None and batch.request_counts.total == 2
    assert client.batches.retrieve(batch.id) == batch and [b.id for b in client.batches.list()] == [batch.id]
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status == "cancelled" and client.batches.retrieve(batch.id).status == "cancelled"
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-elsewhere", endpoint="/v1/chat/completions", completion_window="24h")


# -- endpoints a server lacks --------------------------------------------------------------
def test_a_disabled_family_answers_404_like_a_missing_route() -> None:
    with (
        OpenAIServer(disabled={"embeddings", "audio"}) as server,
        openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk,
    ):
        with pytest.raises(openai.NotFoundError, match=r"Invalid URL \(POST /v1/embeddings\): not found") as caught:
            sdk.embeddings.create(model="test-model", input="x")
        with pytest.raises(openai.NotFoundError):
            sdk.audio.transcriptions.create(file=("a.wav", b"x"), model="test-model")
        assert caught.value.request_id == server.requests[0].request_id
        assert (
            sdk.chat.completions.create(model="test-model", messages=user("hi")).choices[0].message.content
            == "echo: hi"
        )
        server.disabled.discard("embeddings")
        assert len(sdk.embeddings.create(model="test-model", input="x").data) == 1


def test_an_unknown_family_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="embedings"):
        OpenAIServer(disabled={"embedings"})


# -- the Ollama server's schema answers (through the ollama SDK: that protocol's own client) ------------
class Trip(BaseModel):
    city: str
    days: int = Field(ge=1)


def test_ollama_answers_json_that_fits_a_format_schema(ollama_server) -> None:
    reply = ollama.Client(host=ollama_server.host).chat(
        model="test-model", messages=user("Paris"), format=Trip.model_json_schema()
    )
    assert Trip.model_validate_json(reply.message.content or "") == Trip(city="Paris", days=1)


@pytest.mark.parametrize(("fit", "expected"), [(False, {"text": "Paris"}), (True, {"city": "Paris", "nights": 0})])
def test_ollama_tool_arguments_fit_the_schema_when_asked(make_ollama_server, fit: bool, expected: dict) -> None:
    server = make_ollama_server(fit_tool_arguments=fit)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "nights": {"type": "integer"}},
        "required": ["city", "nights"],
    }  # flat: the ollama SDK drops bounds and nesting from tool schemas
    tool = {"type": "function", "function": {"name": "plan", "parameters": schema}}
    reply = ollama.Client(host=server.host).chat(model="test-model", messages=user("Paris"), tools=[tool])
    assert [(c.function.name, dict(c.function.arguments)) for c in reply.message.tool_calls or []] == [
        ("plan", expected)
    ]
