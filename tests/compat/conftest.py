"""Every compat scenario runs twice against the same loopback server.

``sdk``      the plain openai client pointed at the server: the control, it must pass
             whatever turnout does, or the scenario tests the server, not turnout.
``turnout``  ``turnout.AsyncOpenAI()`` / ``turnout.OpenAI()`` configured by environment only,
             whose primary backend is a closed port: every call fails over before it succeeds,
             which turnout's log says ("failing over from dead to live") and the tests check.

Both backends are ``vllm`` presets: one that declares streaming, tools and JSON schema. A
generic ``openai_compat`` primary declares only chat, so the router would try the live
backend (known to support what a request needs) first and never exercise failover.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import openai
import pytest

from tests.support.loopback import OpenAIServer

KEY = "sk-test.key"


@dataclass
class Via:
    """How a scenario gets its openai clients for one server: straight, or through turnout."""

    name: str
    server: OpenAIServer
    _monkeypatch: pytest.MonkeyPatch
    _dead_port: int
    _home: Path
    _caplog: pytest.LogCaptureFixture

    def async_client(self) -> openai.AsyncOpenAI:
        if self.name == "sdk":
            return openai.AsyncOpenAI(base_url=self.server.base_url, api_key=KEY)
        import turnout

        self._configure()
        return turnout.AsyncOpenAI()

    def client(self) -> openai.OpenAI:
        if self.name == "sdk":
            return openai.OpenAI(base_url=self.server.base_url, api_key=KEY)
        import turnout

        self._configure()
        return turnout.OpenAI()

    def _configure(self) -> None:
        env = {
            "TURNOUT_BACKENDS": "dead,live",
            "TURNOUT_BACKEND__DEAD__PROVIDER": "vllm",
            "TURNOUT_BACKEND__DEAD__BASE_URL": f"http://127.0.0.1:{self._dead_port}/v1",
            "TURNOUT_BACKEND__DEAD__API_KEY": KEY,
            "TURNOUT_BACKEND__DEAD__MAX_RETRIES": "0",
            "TURNOUT_BACKEND__LIVE__PROVIDER": "vllm",
            "TURNOUT_BACKEND__LIVE__BASE_URL": self.server.base_url,
            "TURNOUT_BACKEND__LIVE__API_KEY": KEY,
        }
        for name, value in env.items():
            self._monkeypatch.setenv(name, value)
        self._monkeypatch.chdir(self._home)  # no stray .env
        self._caplog.set_level(logging.INFO, logger="turnout")

    def assert_served(self, *completions: Any) -> None:
        """The live server answered; through turnout, ``served_by`` names it for each raw completion given."""
        assert self.server.chat_requests(), "the live server received no chat request"
        if self.name == "turnout":
            import turnout

            assert [turnout.served_by(c) for c in completions] == ["live"] * len(completions)
            assert "failing over from dead to live" in self._caplog.text, "the dead primary was not tried first"


@pytest.fixture(params=["sdk", "turnout"])
def connect(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    free_port: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> Callable[[OpenAIServer], Via]:
    """``connect(server)``: a :class:`Via` for that server, once per variant."""
    return lambda server: Via(request.param, server, monkeypatch, free_port, tmp_path, caplog)


@pytest.fixture
def via(connect: Callable[[OpenAIServer], Via], openai_server: OpenAIServer) -> Via:
    """The common case: one default loopback server."""
    return connect(openai_server)
