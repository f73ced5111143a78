"""langchain-openai's ``ChatOpenAI`` handed prebuilt clients.

A user who brings their own clients sets all four fields: ``root_client`` and
``root_async_client``, plus ``client`` / ``async_client`` as their ``chat.completions``.
With only the root ones set, ChatOpenAI builds its own clients and drops the user's
(langchain-ai/langchain#38116).

The loopback server echoes the prompt as text, answers a tool result with ``tool said: <result>``,
and calls tools with arguments that fit their schema, every string being the prompt; JSON
answers (json_mode, json_schema) get a fixed ``reply``.
"""

from __future__ import annotations

import functools
import operator

import pytest
from pydantic import BaseModel, Field

from tests.compat import need

need("langchain_openai")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

pytestmark = pytest.mark.compat


class Joke(BaseModel):
    """Joke to tell user."""

    setup: str = Field(description="The setup of the joke")
    punchline: str = Field(description="The punchline to the joke")


CATS = Joke(setup="Why was the cat sitting on the computer?", punchline="To keep an eye on the mouse!")
ASK = "Tell me a joke about cats"


@tool
def shout(text: str) -> str:
    """Shout the text back."""
    return text.upper()


def chat_for(via) -> ChatOpenAI:
    root, root_async = via.client(), via.async_client()
    return ChatOpenAI(
        model="test-model",
        root_client=root,
        root_async_client=root_async,
        client=root.chat.completions,
        async_client=root_async.chat.completions,
    )


def test_invoke(via) -> None:
    answer = chat_for(via).invoke("Translate 'I love programming' to French.")
    assert isinstance(answer, AIMessage)
    assert answer.content == "echo: Translate 'I love programming' to French."
    assert answer.response_metadata["finish_reason"] == "stop"
    via.assert_served()


async def test_ainvoke(via) -> None:
    answer = await chat_for(via).ainvoke([("system", "Be brief."), ("human", "hello there")])
    assert answer.content == "echo: hello there"
    assert answer.usage_metadata and answer.usage_metadata["output_tokens"] == 3
    via.assert_served()


def test_stream(via) -> None:
    chunks = list(chat_for(via).stream("one two three"))
    assert "".join(c.content for c in chunks) == "echo: one two three"
    assert sum(1 for c in chunks if c.content) > 1, "the text arrives in pieces"
    via.assert_served()


async def test_astream(via) -> None:
    chunks = [c async for c in chat_for(via).astream("one two three")]
    assert "".join(c.content for c in chunks) == "echo: one two three"
    via.assert_served()


def test_bind_tools_round_trip(via) -> None:
    bind_tools_round_trip(chat_for(via), via)


def bind_tools_round_trip(chat: ChatOpenAI, via) -> None:
    """The tool is called with the prompt, its result sent back, and the answer acknowledges it
    (tests/compat/test_responses_compat.py runs it over the Responses API)."""
    llm = chat.bind_tools([shout])
    messages: list = [HumanMessage("remember the milk")]
    asked = llm.invoke(messages)
    assert [(c["name"], c["args"]) for c in asked.tool_calls] == [("shout", {"text": "remember the milk"})]
    messages += [asked, *(ToolMessage(shout.invoke(c["args"]), tool_call_id=c["id"]) for c in asked.tool_calls)]
    assert llm.invoke(messages).text == "tool said: REMEMBER THE MILK"
    via.assert_served()


def test_bind_tools_stream(via) -> None:
    chunks = list(chat_for(via).bind_tools([shout]).stream("remember the milk"))
    merged = functools.reduce(operator.add, chunks)
    assert sum(1 for c in chunks if c.tool_call_chunks) > 1, "the arguments arrive in pieces"
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [("shout", {"text": "remember the milk"})]
    via.assert_served()


EXPECTED = {
    "function_calling": Joke(setup=ASK, punchline=ASK),  # the tool call's fitted arguments
    "json_mode": CATS,
    "json_schema": CATS,
}


@pytest.mark.parametrize("method", EXPECTED)
def test_with_structured_output(connect, make_openai_server, method) -> None:
    via = connect(make_openai_server(reply=CATS.model_dump_json()))
    joke = chat_for(via).with_structured_output(Joke, method=method).invoke(ASK)
    assert joke == EXPECTED[method]
    via.assert_served()


async def test_with_structured_output_async(connect, make_openai_server) -> None:
    via = connect(make_openai_server(reply=CATS.model_dump_json()))
    joke = await chat_for(via).with_structured_output(Joke, method="json_schema").ainvoke(ASK)
    assert joke == CATS
    via.assert_served()
