from __future__ import annotations

from typing import AsyncIterator, Iterator

import pytest

from tests.support.loopback import OpenAIServer

# The slow groups (registered in pyproject.toml): a folder of its own, or a fixture that starts a real server.
_MARK_BY_FOLDER = {"integration": "integration", "compat": "compat"}
_MARK_BY_FIXTURE = {
    "llamacpp": "integration",
    "redis_server": "redis",
    "make_redis_server": "redis",
    "sentinel_group": "redis",
    "cluster": "redis",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the slow groups it belongs to, so ``-m "not integration"`` leaves them out."""
    for item in items:
        marks = {_MARK_BY_FOLDER.get(item.path.parent.name)}
        marks |= {mark for name, mark in _MARK_BY_FIXTURE.items() if name in getattr(item, "fixturenames", ())}
        for mark in sorted(marks - {None} - {m.name for m in item.iter_markers()}):
            item.add_marker(mark)


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A fresh OpenAI-protocol server on a free loopback port."""
    with OpenAIServer() as server:
        yield server


@pytest.fixture
def make_openai_server() -> Iterator:
    """A factory for several independent servers in one test; all are stopped afterwards."""
    servers: list[OpenAIServer] = []

    def make(**kwargs: object) -> OpenAIServer:
        server = OpenAIServer(**kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the provider variables they set themselves."""
    from turnout.adapters import PRESETS
    from turnout.adapters.presets import url_variables

    for preset in PRESETS.values():
        for var in (*preset.key_envs, preset.url_env, *url_variables(preset.base_url or "")):
            if var:
                monkeypatch.delenv(var, raising=False)
    for var in (
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_CUSTOM_HEADERS",
        "OPENAI_ADMIN_KEY",
        "OPENAI_API_VERSION",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


from typing import TYPE_CHECKING  # noqa: E402  (appended section: the real llama.cpp server)

if TYPE_CHECKING:
    from tests.support.llamacpp import LlamaCppServer


@pytest.fixture(scope="session")
def llamacpp() -> Iterator[LlamaCppServer]:
    """One real llama.cpp server (tiny SmolLM2 model, chat + embeddings) for the whole session.

    Skips only where ``llama_cpp`` cannot be imported; with CI=true that is a
    failure instead, so CI never goes green without the real-server tests.
    """
    import os

    from tests.support.llamacpp import LlamaCppServer, llama_cpp_missing

    reason = llama_cpp_missing()
    if reason:
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    with LlamaCppServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _llamacpp_alive(request: pytest.FixtureRequest) -> Iterator[None]:
    """The test during which the llama.cpp server dies names the death, not only the tests after it."""
    yield
    if "llamacpp" in request.fixturenames:
        request.getfixturevalue("llamacpp").check()


@pytest.fixture
def ollama_server(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A fresh Ollama-protocol server on a free loopback port; no ambient Ollama key reaches it."""
    from tests.support.loopback import OllamaServer

    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)

    with OllamaServer() as server:
        yield server


@pytest.fixture
def make_ollama_server(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A factory for Ollama servers with non-default knobs; all are stopped afterwards."""
    from tests.support.loopback import OllamaServer

    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)

    servers: list[OllamaServer] = []

    def make(**kwargs: object) -> OllamaServer:
        server = OllamaServer(**kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
async def clients() -> AsyncIterator:
    """``clients(*backends, **router_options)``: a ``turnout.AsyncOpenAI`` over a Router of its own (its
    own state, unless ``state=`` shares one); all closed afterwards."""
    import turnout

    made: list[turnout.AsyncOpenAI] = []

    def make(*backends: object, **kwargs: object) -> turnout.AsyncOpenAI:
        client = turnout.AsyncOpenAI(router=turnout.Router(list(backends), **kwargs))  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def client_over() -> AsyncIterator:
    """``client_over(adapter)``: a ``turnout.AsyncOpenAI`` over that one adapter, as users reach it.

    No router retries, so each request reaches its server exactly once; closed (with its adapter) afterwards.
    """
    import turnout

    clients: list[turnout.AsyncOpenAI] = []

    def make(adapter: object, **knobs: object) -> turnout.AsyncOpenAI:
        backend = turnout.Backend(adapter, **{"max_retries": 0, **knobs})  # type: ignore[arg-type]
        client = turnout.AsyncOpenAI(router=turnout.Router([backend]))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


# -- a real Redis server (tests/support/redis_server.py) -------------------------------------------------
def _redis_or_skip() -> None:
    import os

    from tests.support.redis_server import redis_server_missing

    reason = redis_server_missing()
    if reason:
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def _redis_session() -> Iterator:
    _redis_or_skip()
    from tests.support.redis_server import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server(_redis_session) -> Iterator:
    """One real Redis server for the session, emptied before each test that uses it."""
    _redis_session.flush()
    yield _redis_session


@pytest.fixture
def make_redis_server() -> Iterator:
    """A factory for Redis servers of a test's own (to kill and start again); all stopped afterwards."""
    _redis_or_skip()
    from tests.support.redis_server import RedisServer

    servers: list[RedisServer] = []

    def make() -> RedisServer:
        server = RedisServer().start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.__exit__()


@pytest.fixture
def sentinel_group() -> Iterator:
    """A primary, its replica and a Sentinel watching them (tests/support/redis_ha.py); stopped afterwards."""
    _redis_or_skip()
    from tests.support.redis_ha import SentinelGroup

    with SentinelGroup() as group:
        yield group


@pytest.fixture
def cluster() -> Iterator:
    """A Redis Cluster of three primaries, each with a replica (tests/support/redis_ha.py); stopped afterwards."""
    _redis_or_skip()
    from tests.support.redis_ha import Cluster

    with Cluster() as made:
        yield made
