"""The OpenAI Agents SDK with its default model, ``OpenAIResponsesModel``, handed turnout's client as its
docs show: ``set_default_openai_client(client)`` with a model name, or ``OpenAIResponsesModel(model=...,
openai_client=client)``. Tracing is off, so nothing is sent to openai.com.

Each scenario runs as the plain client, through turnout passed through, and through turnout bridged to
Chat Completions (the ``via`` fixture of tests/compat/test_responses_compat.py). The loopback
server calls the agent's tool with the prompt as its argument, then answers ``tool said: <result>``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai.types.responses import ResponseTextDeltaEvent
from pydantic import BaseModel

from tests.compat import need
from tests.compat.test_responses_compat import ResponsesVia, _via  # noqa: F401 (a fixture)

need("agents")

from agents import (  # noqa: E402
    Agent,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_default_openai_client,
    set_tracing_disabled,
)

pytestmark = pytest.mark.compat

PROMPT = "remember the milk"
ANSWER = "tool said: REMEMBER THE MILK"


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    """Tracing would export every run to openai.com."""
    set_tracing_disabled(True)
    yield
    set_tracing_disabled(False)


@pytest.fixture
def default_client(via: ResponsesVia) -> Iterator[None]:
    """``set_default_openai_client`` for this test only (it is process-wide); not used for tracing."""
    set_default_openai_client(via.async_client(), use_for_tracing=False)
    yield
    set_default_openai_client(None, use_for_tracing=False)  # type: ignore[arg-type]


def shouter(model: str | OpenAIResponsesModel) -> tuple[Agent, list[str]]:
    """An agent with one function tool, and the arguments the tool was called with."""
    calls: list[str] = []

    @function_tool
    def shout(text: str) -> str:
        """Shout the text back."""
        calls.append(text)
        return text.upper()

    return Agent(name="Shouter", instructions="Shout what you are told.", model=model, tools=[shout]), calls


async def test_run_with_default_client(via, default_client) -> None:
    agent, calls = shouter("test-model")
    result = await Runner.run(agent, PROMPT)
    assert calls == [PROMPT]
    assert result.final_output == ANSWER
    assert [item.type for item in result.new_items] == [
        "tool_call_item",
        "tool_call_output_item",
        "message_output_item",
    ]
    assert all(r.response_id for r in result.raw_responses), "answered by the Responses model (chat's have no id)"
    usage = result.context_wrapper.usage
    assert usage.requests == 2 and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    if via.bridged:
        first, second = (r.json["messages"] for r in via.server.chat_requests())
        assert first[0] == {"role": "system", "content": "Shout what you are told."}
        assert [m["role"] for m in second[-2:]] == ["assistant", "tool"]
    via.assert_served()


async def test_run_streamed(via) -> None:
    agent, calls = shouter(OpenAIResponsesModel(model="test-model", openai_client=via.async_client()))
    result = Runner.run_streamed(agent, PROMPT)
    deltas: list[str] = []
    raw: list[str] = []
    items: list[str] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event":
            raw.append(event.data.type)
            if isinstance(event.data, ResponseTextDeltaEvent):
                deltas.append(event.data.delta)
        elif event.type == "run_item_stream_event":
            items.append(event.name)
    assert result.is_complete
    assert calls == [PROMPT]
    assert items == ["tool_called", "tool_output", "message_output_created"]
    assert raw.count("response.created") == raw.count("response.completed") == 2, "two whole model turns"
    assert raw.count("response.function_call_arguments.delta") > 1, "the arguments arrive in pieces"
    assert "".join(deltas) == result.final_output == ANSWER
    assert len(deltas) > 1, "the text arrives in pieces"
    via.assert_served()


class CityLocation(BaseModel):
    city: str
    country: str


async def test_output_type(via) -> None:
    """``text.format`` json_schema (strict): the server writes JSON fitting it, the SDK parses it."""
    model = OpenAIResponsesModel(model="test-model", openai_client=via.async_client())
    ask = "Where were the olympics held in 2012?"
    result = await Runner.run(Agent(name="Geographer", model=model, output_type=CityLocation), ask)
    assert result.final_output == CityLocation(city=ask, country=ask)
    via.assert_served()


async def test_previous_response_id(via) -> None:
    """A run continuing an earlier one by id shows the model the earlier turns: a native backend keeps them
    (turnout sends the id to the backend that made it); a bridged one keeps nothing, so turnout replays them."""
    agent, calls = shouter(OpenAIResponsesModel(model="test-model", openai_client=via.async_client()))
    first = await Runner.run(agent, PROMPT)
    second = await Runner.run(agent, "and the eggs", previous_response_id=first.last_response_id)
    assert calls == [PROMPT, "and the eggs"]
    assert second.final_output == "tool said: AND THE EGGS"
    if via.bridged:
        shown = via.server.chat_requests()[-1].json["messages"]
        assert [m["content"] for m in shown if m["role"] == "user"] == [PROMPT, "and the eggs"]
        assert [m["role"] for m in shown].count("tool") == 2
    else:
        continued = [r.json.get("previous_response_id") for r in via.server.requests if r.path.endswith("/responses")]
        assert continued == [None, None, first.last_response_id, second.raw_responses[0].response_id]
    via.assert_served()
