"""Pinned endpoints (files, batches: one backend, never failed over) and aggregated ones (models: every backend).

Counted at each loopback server, so "exactly one backend" means no other server saw the request.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import openai
import pytest

import turnout
from tests.client.test_client_surface import configure, dead_url
from tests.router.test_router import sleeps  # noqa: F401  (backoff's waits, skipped)
from tests.settings.test_settings import env, isolated  # noqa: F401  (autouse: no TURNOUT_ from the shell, no .env)
from tests.support.loopback import Fault, OpenAIServer

LINES = (
    b'{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    b'{"custom_id": "2", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
)

Servers = dict[str, OpenAIServer]


def jsonl(name: str = "requests.jsonl") -> tuple[str, io.BytesIO]:
    return (name, io.BytesIO(LINES))


def touched(servers: Servers) -> dict[str, int]:
    """How many requests each server received."""
    return {name: len(server.requests) for name, server in servers.items()}


@pytest.fixture
def three(monkeypatch: pytest.MonkeyPatch, make_openai_server: Callable[..., OpenAIServer]) -> Servers:
    """``local`` (vllm, the primary), then two OpenAI backends (at loopback addresses): ``first_openai``, ``second_openai``."""
    servers = {name: make_openai_server() for name in ("local", "first_openai", "second_openai")}
    configure(
        monkeypatch,
        ("local", "vllm", servers["local"].base_url),
        ("first_openai", "openai", servers["first_openai"].base_url),
        ("second_openai", "openai", servers["second_openai"].base_url),
        TURNOUT_BACKEND__FIRST_OPENAI__API_KEY="sk-test.first.openai",
        TURNOUT_BACKEND__SECOND_OPENAI__API_KEY="sk-test.second.openai",
    )
    return servers


# -- pinned ---------------------------------------------------------------------------


async def test_files_and_batches_go_to_the_first_openai_backend_only(three: Servers) -> None:
    async with turnout.AsyncOpenAI() as client:
        created = await client.files.create(file=jsonl(), purpose="batch")
        listed = await client.files.list(purpose="batch")
        retrieved = await client.files.retrieve(created.id)
        content = await client.files.content(created.id)
        batch = await client.batches.create(
            input_file_id=created.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"run": "7"}
        )
        again = await client.batches.retrieve(batch.id)
        deleted = await client.files.delete(created.id)
        remaining = await client.files.list()
    assert (created.filename, created.bytes, created.purpose) == ("requests.jsonl", len(LINES), "batch")
    assert [f.id for f in listed.data] == [created.id] and retrieved == created
    assert content.content == LINES
    assert again == batch and batch.request_counts is not None and batch.request_counts.total == 2
    assert batch.metadata == {"run": "7"}
    assert deleted.deleted and remaining.data == []
    assert all(turnout.served_by(x) == "first_openai" for x in (created, listed, retrieved, content, batch, deleted))
    assert touched(three) == {"local": 0, "first_openai": 8, "second_openai": 0}


async def test_without_an_openai_backend_the_primary_serves_files(
    monkeypatch: pytest.MonkeyPatch, make_openai_server: Callable[..., OpenAIServer]
) -> None:
    servers = {"primary": make_openai_server(), "backup": make_openai_server()}
    configure(
        monkeypatch, ("primary", "vllm", servers["primary"].base_url), ("backup", "localai", servers["backup"].base_url)
    )
    async with turnout.AsyncOpenAI() as client:
        created = await client.files.create(file=jsonl(), purpose="batch")
        assert (await client.files.retrieve(created.id)).id == created.id
    assert turnout.served_by(created) == "primary"
    assert touched(servers) == {"primary": 2, "backup": 0}


async def test_a_pinned_backend_that_is_down_is_not_failed_over(
    monkeypatch: pytest.MonkeyPatch, free_port: int, make_openai_server: Callable[..., OpenAIServer]
) -> None:
    backup = make_openai_server()
    configure(monkeypatch, ("primary", "vllm", dead_url(free_port)), ("backup", "vllm", backup.base_url))
    async with turnout.AsyncOpenAI() as client:
        with pytest.raises(openai.APIConnectionError) as caught:
            await client.files.create(file=jsonl(), purpose="batch")
        with pytest.raises(openai.APIConnectionError):
            await client.batches.retrieve("batch_anything")
        chat = await client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}])
    assert not isinstance(caught.value, turnout.AllBackendsFailedError), "one backend was asked: nothing to combine"
    assert turnout.served_by(chat) == "backup", "routed endpoints still fail over"
    assert [r.path for r in backup.requests] == ["/v1/chat/completions"]


@pytest.mark.usefixtures("sleeps")
async def test_a_failing_pinned_backend_is_retried_but_never_left(
    three: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURNOUT_MAX_RETRIES", "1")
    pinned = three["first_openai"]
    pinned.fail(Fault(status=503), times=1)
    async with turnout.AsyncOpenAI() as client:
        created = await client.files.create(file=jsonl(), purpose="batch")
        pinned.fail(Fault(status=500))
        with pytest.raises(openai.InternalServerError) as caught:
            await client.files.retrieve(created.id)
    assert turnout.served_by(created) == "first_openai"
    assert caught.value.status_code == 500 and not isinstance(caught.value, turnout.AllBackendsFailedError)
    assert touched(three) == {"local": 0, "first_openai": 4, "second_openai": 0}, "two attempts each, on it alone"


async def test_pinned_lists_paginate(three: Servers) -> None:
    pinned = three["first_openai"]
    async with turnout.AsyncOpenAI() as client:
        ids = [(await client.files.create(file=jsonl(f"part{i}.jsonl"), purpose="batch")).id for i in range(3)]
        paged = [f.id async for f in client.files.list(limit=1)]
        first = await client.files.list(limit=2, order="asc")
        second = await first.get_next_page()
    async with openai.AsyncOpenAI(api_key="sk-control", base_url=pinned.base_url, max_retries=0) as control:
        expected = [f.id async for f in control.files.list(limit=1)]
    assert paged == expected == ids[::-1]
    assert [f.id for f in first.data] == ids[:2] and first.has_more
    assert [f.id for f in second.data] == ids[2:] and not second.has_next_page()
    assert touched(three) == {"local": 0, "first_openai": 3 + 3 + 2 + 3, "second_openai": 0}


def test_the_sync_client_pins_and_paginates_too(three: Servers) -> None:
    with turnout.OpenAI() as client:
        ids = [client.files.create(file=jsonl(), purpose="batch").id for _ in range(2)]
        assert [f.id for f in client.files.list(limit=1)] == ids[::-1]
        batch = client.batches.create(input_file_id=ids[0], endpoint="/v1/chat/completions", completion_window="24h")
        assert client.batches.retrieve(batch.id).status == "validating"
        assert client.files.content(ids[1]).read() == LINES
    assert touched(three) == {"local": 0, "first_openai": 2 + 2 + 2 + 1, "second_openai": 0}


# -- aggregated: models --------------------------------------------------------------------


@pytest.fixture
def catalogue(
    monkeypatch: pytest.MonkeyPatch, make_openai_server: Callable[..., OpenAIServer], free_port: int
) -> Servers:
    """``alpha`` (two models), a dead backend, ``beta`` (one model)."""
    servers = {"alpha": make_openai_server(models=["a-small", "a-large"]), "beta": make_openai_server(models=["b-one"])}
    configure(
        monkeypatch,
        ("alpha", "vllm", servers["alpha"].base_url),
        ("gone", "vllm", dead_url(free_port)),
        ("beta", "vllm", servers["beta"].base_url),
    )
    return servers


async def test_models_list_merges_every_backend_and_leaves_out_a_down_one(catalogue: Servers) -> None:
    async with turnout.AsyncOpenAI() as client:
        page = await client.models.list()
        iterated = [m.id async for m in client.models.list()]
    assert [(m.id, m.owned_by) for m in page.data] == [("a-small", "alpha"), ("a-large", "alpha"), ("b-one", "beta")]
    assert iterated == ["a-small", "a-large", "b-one"]
    assert all(isinstance(m, openai.types.Model) for m in page.data)


async def test_models_retrieve_finds_any_backends_model(catalogue: Servers) -> None:
    async with turnout.AsyncOpenAI() as client:
        found = await client.models.retrieve("b-one")
        with pytest.raises(openai.NotFoundError) as caught:
            await client.models.retrieve("nobody-has-this")
    assert (found.id, found.owned_by) == ("b-one", "beta")
    assert caught.value.status_code == 404 and "nobody-has-this" in caught.value.message


async def test_models_list_fails_when_every_backend_is_down(
    monkeypatch: pytest.MonkeyPatch, free_port: int, make_openai_server: Callable[..., OpenAIServer]
) -> None:
    broken = make_openai_server()
    broken.fail(Fault(status=503))
    configure(monkeypatch, ("gone", "vllm", dead_url(free_port)), ("broken", "vllm", broken.base_url))
    async with turnout.AsyncOpenAI() as client:
        with pytest.raises(turnout.AllBackendsFailedError) as caught:
            await client.models.list()
        with pytest.raises(openai.APIError):
            await client.models.retrieve("test-model")
    assert isinstance(caught.value, openai.APIError)
    assert set(caught.value.errors) == {"gone", "broken"}
    assert isinstance(caught.value.errors["gone"], openai.APIConnectionError)
    assert isinstance(caught.value.errors["broken"], openai.InternalServerError)
