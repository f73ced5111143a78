"""A stream is whole only when it says so, and is committed to a backend only at its first real token.

Against loopback servers that end a stream cleanly but early, open it with a role-only chunk and then
say nothing, or finish it without ``[DONE]`` (as TGI did before July 2024), through the real SDK.
"""

from __future__ import annotations

import openai
import pytest

from tests.router.test_router import backend, chat, sleeps  # noqa: F401  (sleeps: a fixture)
from tests.support.loopback import Fault
from turnout import BrokenStreamError, served_by
from turnout.router import usable

LONG = [{"role": "user", "content": "a b c d e f"}]


async def test_a_clean_early_end_after_tokens_is_a_broken_stream(clients, make_openai_server, sleeps) -> None:
    early, spare = make_openai_server(), make_openai_server()
    early.fail(Fault(end_after=3))  # the role chunk and two words, then a clean end of the body
    client = clients(backend(early, "early"), backend(spare, "spare"))
    got = []
    with pytest.raises(BrokenStreamError) as caught:
        async for chunk in await chat(client, stream=True, messages=LONG):
            got.append(chunk.choices[0].delta.content)
    assert got == ["", "echo:", " a"], "what was delivered stays delivered"
    assert caught.value.chunks == 3 and "without saying it was complete" in str(caught.value)
    assert spare.requests == [], "never replayed on another backend"


async def test_a_clean_end_before_any_token_fails_over(clients, make_openai_server, sleeps) -> None:
    early, spare = make_openai_server(), make_openai_server()
    early.fail(Fault(end_after=1))  # only {"role": "assistant", "content": ""}
    client = clients(backend(early, "early", max_retries=0), backend(spare, "spare"))
    stream = await chat(client, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hi" and served_by(stream) == "spare"


async def test_a_role_only_chunk_then_silence_fails_over_within_the_first_token_limit(
    clients, make_openai_server, sleeps
) -> None:
    stalled, spare = make_openai_server(), make_openai_server()
    stalled.fail(Fault(stall_after=1))
    client = clients(backend(stalled, "stalled", max_retries=0, first_token_timeout=0.3), backend(spare, "spare"))
    stream = await chat(client, stream=True)
    chunks = [c async for c in stream]
    assert served_by(stream) == "spare" and chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hi"
    assert len(stalled.requests) == 1


async def test_a_role_only_chunk_then_silence_fails_over_at_the_attempt_timeout(
    clients, make_openai_server, sleeps
) -> None:
    """No first-token limit: the read timeout still fires before the stream was handed over."""
    stalled, spare = make_openai_server(), make_openai_server()
    stalled.fail(Fault(stall_after=1))
    client = clients(backend(stalled, "stalled", max_retries=0, attempt_timeout=0.5), backend(spare, "spare"))
    stream = await chat(client, stream=True)
    assert [c async for c in stream] and served_by(stream) == "spare"


async def test_the_first_token_limit_is_retried_on_the_same_backend_first(clients, make_openai_server, sleeps) -> None:
    slow = make_openai_server()
    slow.fail(Fault(stall_after=1), times=1)
    client = clients(backend(slow, "slow", max_retries=1, first_token_timeout=0.3))
    stream = await chat(client, stream=True)
    assert [c async for c in stream] and len(slow.requests) == 2 and len(sleeps) == 1


async def test_held_back_chunks_reach_the_caller_as_a_direct_stream_gives_them(clients, openai_server) -> None:
    direct = openai.AsyncOpenAI(base_url=openai_server.base_url, api_key="k", max_retries=0)
    try:
        plain = [
            c.model_dump(exclude={"created"})
            async for c in await direct.chat.completions.create(model="test-model", messages=LONG, stream=True)
        ]
    finally:
        await direct.close()
    client = clients(backend(openai_server, "one"))
    routed = [c.model_dump(exclude={"created"}) async for c in await chat(client, stream=True, messages=LONG)]
    assert routed == plain and plain[0]["choices"][0]["delta"]["role"] == "assistant"


async def test_a_finish_reason_without_done_is_a_whole_stream(clients, make_openai_server) -> None:
    tgi = make_openai_server()
    tgi.fail(Fault(no_done=True))
    client = clients(backend(tgi, "tgi"))
    chunks = [c async for c in await chat(client, stream=True, messages=LONG)]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: a b c d e f"


async def test_a_responses_stream_that_ends_early_is_broken(clients, make_openai_server, sleeps) -> None:
    early, spare = make_openai_server(), make_openai_server()
    early.fail(Fault(end_after=4))  # created, in_progress, output_item.added, content_part.added
    client = clients(backend(early, "early"), backend(spare, "spare"))
    kinds = []
    with pytest.raises(BrokenStreamError):
        async for event in await client.responses.create(model="test-model", input="hi", stream=True):
            kinds.append(event.type)
    assert kinds[:2] == ["response.created", "response.in_progress"] and "response.completed" not in kinds
    assert spare.requests == []


async def test_a_responses_stream_that_ends_before_any_output_fails_over(clients, make_openai_server, sleeps) -> None:
    early, spare = make_openai_server(), make_openai_server()
    early.fail(Fault(end_after=2))  # created and in_progress only
    client = clients(backend(early, "early", max_retries=0), backend(spare, "spare"))
    stream = await client.responses.create(model="test-model", input="hi", stream=True)
    kinds = [event.type async for event in stream]
    assert served_by(stream) == "spare" and kinds[-1] == "response.completed"


@pytest.mark.parametrize(
    "data, real",
    [
        (b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}', False),
        (b'{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":null}}]}', False),
        (b'{"choices":[],"usage":{"total_tokens":3}}', False),
        (b'{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}', True),
        (b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c"}]}}]}', True),
        (b'{"choices":[{"index":0,"delta":{"refusal":"no"}}]}', True),
        (b'{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}', True),
        (b'{"choices":[{"index":0,"delta":{"audio":{"data":"AAAA"}}}]}', True),
        (b'{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}', True),
        (b'{"choices":[{"index":0,"text":"Hi","finish_reason":null}]}', True),
        (b'{"type":"response.created","response":{}}', False),
        (b'{"type":"response.in_progress","response":{}}', False),
        (b'{"type":"response.output_item.added","item":{}}', True),
        (b'{"type":"transcript.text.delta","delta":"Hel"}', True),
    ],
)
def test_what_counts_as_a_first_real_token(data: bytes, real: bool) -> None:
    assert usable(data) is real


async def test_a_streamed_transcription_is_whole_at_its_done_event(clients, make_openai_server, sleeps) -> None:
    """OpenAI ends a streamed transcription with ``transcript.text.done`` and no ``[DONE]``."""
    server = make_openai_server()
    client = clients(backend(server, "stt"))
    events = [
        e
        async for e in await client.audio.transcriptions.create(
            model="test-model", file=("a.wav", b"RIFF0000"), stream=True
        )
    ]
    assert events[-1].type == "transcript.text.done" and events[-1].text == "transcribed a.wav (8 bytes)"
    server.fail(Fault(end_after=2), times=1)
    with pytest.raises(BrokenStreamError):
        async for _ in await client.audio.transcriptions.create(
            model="test-model", file=("a.wav", b"RIFF0000"), stream=True
        ):
            pass
