"""The Responses API as libraries use it: pydantic-ai's ``OpenAIResponsesModel`` and langchain-openai's
``ChatOpenAI(use_responses_api=True)``, handed turnout's clients the way their docs hand them a client.

Every scenario runs three ways against its own loopback server (the ``via`` fixture here, which
tests/compat/test_agents_sdk.py shares):

``sdk``      the plain openai client, the server answering ``/v1/responses`` itself: the control.
``native``   turnout, a dead primary then the live server, both presets with the Responses API (vLLM):
             the request is passed through, failing over first.
``bridged``  turnout, a dead primary then the live server with ``/v1/responses`` switched off (404),
             both presets without it (Aphrodite): each request becomes a chat completion and its answer
             a Response, failing over first.

The server answers a Responses request as it would the chat request it amounts to, so the three see the
same answers: the prompt echoed (``echo: <prompt>``), a tool result acknowledged (``tool said: <result>``),
tools called and JSON written with values fitting their schema, every string being the prompt.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from tests.compat import need
from tests.compat.conftest import Via
from tests.support.loopback import OpenAIServer

need("pydantic_ai")
need("langchain_openai")

from langchain_openai import ChatOpenAI  # noqa: E402
from pydantic_ai import Agent, NativeOutput  # noqa: E402
from pydantic_ai.models.openai import OpenAIResponsesModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402

from tests.compat.test_langchain_openai import bind_tools_round_trip, shout  # noqa: E402
from tests.compat.test_pydantic_ai import run_stream_text  # noqa: E402

pytestmark = pytest.mark.compat

CHAT_ONLY = "aphrodite"
"""A preset with tools and JSON schema but no Responses API: turnout bridges to it."""


@dataclass
class ResponsesVia(Via):
    """A :class:`Via` whose turnout backends are chat-only presets when ``bridged``."""

    bridged: bool = False

    def _configure(self) -> None:
        super()._configure()
        if self.bridged:
            for backend in ("DEAD", "LIVE"):
                self._monkeypatch.setenv(f"TURNOUT_BACKEND__{backend}__PROVIDER", CHAT_ONLY)

    def assert_served(self) -> None:  # type: ignore[override]  # libraries keep the raw answers to themselves
        """The live server answered through the API this way uses (chat when bridged, else Responses,
        never both); through turnout, after trying the dead primary."""
        responses = [r for r in self.server.requests if r.path.endswith("/responses")]
        chats = self.server.chat_requests()
        if self.bridged:
            assert chats and not responses, f"bridged, yet {len(chats)} chat and {len(responses)} Responses requests"
        else:
            assert responses and not chats, f"native, yet {len(chats)} chat and {len(responses)} Responses requests"
        if self.name == "turnout":
            assert "failing over from dead to live" in self._caplog.text, "the dead primary was not tried first"


@pytest.fixture(name="via", params=["sdk", "native", "bridged"])
def _via(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    free_port: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    make_openai_server: Callable[..., OpenAIServer],
) -> ResponsesVia:
    """A fresh loopback server and the way (above) this test reaches it."""
    bridged = request.param == "bridged"
    server = make_openai_server(**({"disabled": {"responses"}} if bridged else {}))
    name = "sdk" if request.param == "sdk" else "turnout"
    return ResponsesVia(name, server, monkeypatch, free_port, tmp_path, caplog, bridged=bridged)


# -- pydantic-ai -------------------------------------------------------------


class CityLocation(BaseModel):
    city: str
    country: str


OLYMPICS = "Where were the olympics held in 2012?"
FITTED = CityLocation(city=OLYMPICS, country=OLYMPICS)


def responses_model(via: ResponsesVia) -> OpenAIResponsesModel:
    return OpenAIResponsesModel("test-model", provider=OpenAIProvider(openai_client=via.async_client()))


async def test_pydantic_ai_text(via) -> None:
    result = await Agent(responses_model(via), instructions="Be concise.").run("Where does hello world come from?")
    assert result.output == "echo: Where does hello world come from?"
    assert result.usage.output_tokens == len(result.output.split())
    if via.bridged:
        assert via.server.chat_requests()[-1].json["messages"][0] == {"role": "system", "content": "Be concise."}
    via.assert_served()


async def test_pydantic_ai_output_type(via) -> None:
    """The output tool, called because ``tool_choice`` is ``required``, is the result."""
    result = await Agent(responses_model(via), output_type=CityLocation).run(OLYMPICS)
    assert result.output == FITTED
    via.assert_served()


async def test_pydantic_ai_native_output(via) -> None:
    """``text.format`` json_schema: without it the server would echo, and parsing would fail."""
    result = await Agent(responses_model(via), output_type=NativeOutput(CityLocation)).run(OLYMPICS)
    assert result.output == FITTED
    via.assert_served()


async def test_pydantic_ai_run_stream_text(via) -> None:
    await run_stream_text(responses_model(via), via)


# -- langchain-openai --------------------------------------------------------


class Joke(BaseModel):
    """Joke to tell user."""

    setup: str = Field(description="The setup of the joke")
    punchline: str = Field(description="The punchline to the joke")


def chat_for(via: ResponsesVia) -> ChatOpenAI:
    """All four clients set, as tests/compat/test_langchain_openai.py explains."""
    root, root_async = via.client(), via.async_client()
    return ChatOpenAI(
        model="test-model",
        use_responses_api=True,
        root_client=root,
        root_async_client=root_async,
        client=root.chat.completions,
        async_client=root_async.chat.completions,
    )


def test_langchain_invoke(via) -> None:
    answer = chat_for(via).invoke("Translate 'I love programming' to French.")
    assert answer.text == "echo: Translate 'I love programming' to French."
    assert answer.response_metadata["status"] == "completed"
    assert answer.usage_metadata and answer.usage_metadata["output_tokens"] == len(answer.text.split())
    via.assert_served()


async def test_langchain_ainvoke(via) -> None:
    answer = await chat_for(via).ainvoke([("system", "Be brief."), ("human", "hello there")])
    assert answer.text == "echo: hello there"
    via.assert_served()


def test_langchain_stream(via) -> None:
    chunks = list(chat_for(via).stream("one two three"))
    assert "".join(c.text for c in chunks) == "echo: one two three"
    assert sum(1 for c in chunks if c.text) > 1, "the text arrives in pieces"
    via.assert_served()


def test_langchain_bind_tools_round_trip(via) -> None:
    bind_tools_round_trip(chat_for(via), via)


async def test_langchain_bind_tools_astream(via) -> None:
    chunks = [c async for c in chat_for(via).bind_tools([shout]).astream("remember the milk")]
    merged = functools.reduce(operator.add, chunks)
    assert sum(1 for c in chunks if c.tool_call_chunks) > 1, "the arguments arrive in pieces"
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [("shout", {"text": "remember the milk"})]
    via.assert_served()


def test_langchain_structured_output(via) -> None:
    """``responses.parse(text_format=Joke)`` underneath."""
    ask = "Tell me a joke about cats"
    joke = chat_for(via).with_structured_output(Joke, method="json_schema").invoke(ask)
    assert joke == Joke(setup=ask, punchline=ask)
    via.assert_served()
