"""TURNOUT_STATEFUL_BACKEND: the one backend stateful calls (files, batches, ...) go to, never failed over."""

from __future__ import annotations

import io

import openai
import pytest

import turnout
from tests.settings.test_settings import env, isolated  # noqa: F401  (autouse fixture)
from tests.support.loopback import Fault


@pytest.fixture
def two(monkeypatch: pytest.MonkeyPatch, make_openai_server):  # type: ignore[no-untyped-def]
    first, second = make_openai_server(), make_openai_server()
    env(
        monkeypatch,
        TURNOUT_BACKENDS="first,second",
        TURNOUT_BACKEND__FIRST__PROVIDER="vllm",
        TURNOUT_BACKEND__FIRST__BASE_URL=first.base_url,
        TURNOUT_BACKEND__SECOND__PROVIDER="vllm",
        TURNOUT_BACKEND__SECOND__BASE_URL=second.base_url,
    )
    return first, second


def _file_requests(server) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.path for r in server.requests if "/files" in r.path]


async def test_files_go_to_the_named_backend_only(two, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    first, second = two
    monkeypatch.setenv("TURNOUT_STATEFUL_BACKEND", "second")
    async with turnout.AsyncOpenAI() as client:
        created = await client.files.create(file=("notes.jsonl", io.BytesIO(b'{"a": 1}\n')), purpose="batch")
        listed = await client.files.list()
        assert [f.id for f in listed.data] == [created.id]
        assert turnout.served_by(created) == "second"
    assert _file_requests(first) == [] and len(_file_requests(second)) == 2


async def test_a_stateful_backend_that_is_down_is_not_failed_over(two, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    first, second = two
    monkeypatch.setenv("TURNOUT_STATEFUL_BACKEND", "second")
    monkeypatch.setenv("TURNOUT_MAX_RETRIES", "0")
    second.fail(Fault(status=503))
    async with turnout.AsyncOpenAI() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.files.list()
    assert not isinstance(caught.value, turnout.AllBackendsFailedError)
    assert _file_requests(first) == [] and len(_file_requests(second)) == 1
