"""pydantic-ai, as its docs hand it a client: ``OpenAIChatModel(name, provider=OpenAIProvider(openai_client=...))``.

The loopback server echoes the prompt as text, answers a tool result with ``tool said: <result>``,
and calls tools (pydantic-ai's output tool included) with arguments that fit their schema, every
string being the prompt; ``NativeOutput`` gets a fixed ``reply``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import BaseModel

from tests.compat import need

need("pydantic_ai")

from pydantic_ai import Agent, NativeOutput  # noqa: E402
from pydantic_ai.messages import ToolCallPart, ToolReturnPart  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402

pytestmark = pytest.mark.compat


class CityLocation(BaseModel):
    city: str
    country: str


LONDON = CityLocation(city="London", country="United Kingdom")
OLYMPICS = "Where were the olympics held in 2012?"
FITTED = CityLocation(city=OLYMPICS, country=OLYMPICS)
"""What the loopback server's output-tool call carries."""


def model_for(via) -> OpenAIChatModel:
    return OpenAIChatModel("test-model", provider=OpenAIProvider(openai_client=via.async_client()))


async def test_text(via) -> None:
    result = await Agent(model_for(via), instructions="Be concise.").run("Where does hello world come from?")
    assert result.output == "echo: Where does hello world come from?"
    url = urlsplit(result.response.provider_url or "")
    assert url.scheme in ("http", "https") and url.hostname, f"not a URL: {result.response.provider_url!r}"
    via.assert_served()


def test_run_sync(via) -> None:
    result = Agent(model_for(via)).run_sync("hello")
    assert result.output == "echo: hello"
    via.assert_served()


async def test_output_type(via) -> None:
    result = await Agent(model_for(via), output_type=CityLocation).run(OLYMPICS)
    assert result.output == FITTED
    via.assert_served()


async def test_native_output(connect, make_openai_server) -> None:
    via = connect(make_openai_server(reply=LONDON.model_dump_json()))
    result = await Agent(model_for(via), output_type=NativeOutput(CityLocation)).run(OLYMPICS)
    assert result.output == LONDON
    assert via.server.chat_requests()[-1].json["response_format"]["type"] == "json_schema"
    via.assert_served()


async def test_tool_round_trip(via) -> None:
    agent = Agent(model_for(via))
    calls: list[str] = []

    @agent.tool_plain
    def shout(text: str) -> str:
        """Shout the text back."""
        calls.append(text)
        return text.upper()

    result = await agent.run("remember the milk")
    assert calls == ["remember the milk"]
    assert result.output == "tool said: REMEMBER THE MILK"
    parts = [p for m in result.all_messages() for p in m.parts]
    assert [type(p) for p in parts if isinstance(p, (ToolCallPart, ToolReturnPart))] == [ToolCallPart, ToolReturnPart]
    via.assert_served()


async def test_run_stream_text(via) -> None:
    await run_stream_text(model_for(via), via)


async def run_stream_text(model: Any, via) -> None:
    """The text arrives in pieces that add up to the answer (tests/compat/test_responses_compat.py runs it
    over the Responses API)."""
    async with Agent(model).run_stream("one two three four") as result:
        deltas = [d async for d in result.stream_text(delta=True, debounce_by=None)]
    assert "".join(deltas) == "echo: one two three four"
    assert len(deltas) > 1, "the text arrives in pieces"
    via.assert_served()


async def test_run_stream_output(via) -> None:
    async with Agent(model_for(via), output_type=CityLocation).run_stream(OLYMPICS) as result:
        outputs = [o async for o in result.stream_output(debounce_by=None)]
    assert len(outputs) > 1, "the output grows as the tool arguments arrive"
    assert outputs[-1] == FITTED
    via.assert_served()
