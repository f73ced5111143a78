"""The drop-in clients: the openai SDK's surface, served by a Router.

``turnout.AsyncOpenAI`` has the namespaces and signatures of
``openai.AsyncOpenAI`` for what turnout routes (chat completions, embeddings,
models); ``turnout.OpenAI`` is its synchronous twin, running the same async
router on a background loop. What turnout does not route (files, audio,
images, ...) raises ``NotImplementedError`` naming the method.
"""

from __future__ import annotations

import inspect
from types import TracebackType
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping, Optional

import httpx2
import openai
from openai.types import Model

from .._errors import status_error
from ._portal import run
from ._retry import max_retries_override
from ._router import ModelList, Router
from ._stream import RoutedStream

__all__ = ["AsyncOpenAI", "OpenAI"]


class AsyncOpenAI:
    """A drop-in for ``openai.AsyncOpenAI``; the backends come from the environment (or ``router=``).

    ``api_key`` and ``base_url`` given together (or ``base_url`` alone) make one
    backend, as the SDK would talk to; ``timeout`` and ``max_retries`` set every
    backend's per-attempt timeout and retries; ``default_headers`` are sent to
    every backend. Other keyword arguments are settings fields (see README).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx2.Timeout | None = None,
        max_retries: int | None = None,
        default_headers: Mapping[str, str] | None = None,
        router: Router | None = None,
        **settings: Any,
    ) -> None:
        if router is None:
            from ..settings import router_for_client

            router = router_for_client(api_key=api_key, base_url=base_url, timeout=_seconds(timeout),
                                       max_retries=max_retries, default_headers=default_headers, **settings)
        self.router = router
        self._timeout: float | None = None
        self._max_retries: int | None = None
        self.chat = _Chat(self)
        self.embeddings = _Embeddings(self)
        self.models = _Models(self)

    def with_options(self, *, timeout: float | httpx2.Timeout | None = None,
                     max_retries: int | None = None) -> AsyncOpenAI:
        """A client sharing this one's backends, with a total ``timeout`` or ``max_retries`` per call."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy._timeout = _seconds(timeout) if timeout is not None else self._timeout
        copy._max_retries = max_retries if max_retries is not None else self._max_retries
        copy.chat, copy.embeddings, copy.models = _Chat(copy), _Embeddings(copy), _Models(copy)
        return copy

    async def _call(self, op: Callable[..., Awaitable[Any]], params: dict[str, Any]) -> Any:
        timeout = _seconds(_given(params.pop("timeout", None))) or self._timeout
        token = max_retries_override.set(self._max_retries) if self._max_retries is not None else None
        try:
            return await op(timeout=timeout, **{k: v for k, v in params.items() if _given(v) is not None})
        finally:
            if token is not None:
                max_retries_override.reset(token)

    async def close(self) -> None:
        await self.router.aclose()

    async def __aenter__(self) -> AsyncOpenAI:
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return _unrouted(name)

    def __repr__(self) -> str:
        return f"turnout.AsyncOpenAI({self.router!r})"


class _Namespace:
    """One SDK namespace (``chat``, ``embeddings``, ...): what it routes, and a clear word on the rest."""

    path = ""

    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return _unrouted(f"{self.path}.{name}")


class _Chat(_Namespace):
    path = "chat"

    def __init__(self, client: AsyncOpenAI) -> None:
        super().__init__(client)
        self.completions = _Completions(client)


class _Completions(_Namespace):
    path = "chat.completions"

    async def create(self, **params: Any) -> Any:
        """``chat.completions.create``: a ``ChatCompletion``, or with ``stream=True`` a stream of chunks."""
        router = self._client.router
        op = router.stream_chat if _given(params.pop("stream", None)) else router.chat
        return await self._client._call(op, params)


class _Embeddings(_Namespace):
    path = "embeddings"

    async def create(self, **params: Any) -> Any:
        return await self._client._call(self._client.router.embeddings, params)


class _Models(_Namespace):
    path = "models"

    def list(self) -> _ModelListing:
        """Awaitable (a page with ``.data``) and async-iterable without ``await``, as in the SDK."""
        return _ModelListing(self._client.router)

    async def retrieve(self, model: str) -> Model:
        listing = await self._client.router.list_models()
        for item in listing.data:
            if item.id == model or f"{item.owned_by}/{item.id}" == model:
                return item
        raise status_error(openai.NotFoundError, 404, f"no backend lists model {model!r}", code="model_not_found")


class _ModelListing:
    def __init__(self, router: Router) -> None:
        self._router = router

    def __await__(self) -> Generator[Any, None, ModelList]:
        return self._router.list_models().__await__()

    async def __aiter__(self) -> AsyncIterator[Model]:
        for item in (await self._router.list_models()).data:
            yield item


def _seconds(timeout: float | httpx2.Timeout | None) -> float | None:
    """The SDK takes seconds or an ``httpx.Timeout``; turnout's deadline is the longest of its parts."""
    if timeout is None or isinstance(timeout, (int, float)):
        return timeout
    parts = [getattr(timeout, k, None) for k in ("connect", "read", "write", "pool")]
    return max((p for p in parts if p is not None), default=None)


def _given(value: Any) -> Any:
    """``None`` for the SDK's "not given" sentinels, so they mean what they mean to the SDK."""
    return None if isinstance(value, (openai.NotGiven, openai.Omit)) else value


def _unrouted(path: str) -> Any:
    """An SDK namespace we don't route; names the SDK doesn't have stay AttributeErrors."""
    name = path.rsplit(".", 1)[-1]
    if name.startswith("_") or ("." not in path and not hasattr(openai.AsyncOpenAI, name)):
        raise AttributeError(f"turnout clients have no attribute {path!r}")
    return _Unrouted(path)


class _Unrouted:
    """An SDK namespace turnout does not route: any call raises ``NotImplementedError`` naming it."""

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> _Unrouted:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Unrouted(f"{self._path}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"turnout does not route {self._path}(); it routes chat.completions.create, embeddings.create "
            f"and models.list — use the openai SDK directly for {self._path}")


# -- the synchronous twin --------------------------------------------------------

class _SyncNamespace:
    """The async namespace ``target`` without ``await``: each attribute wrapped once, on first use."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = _synced(getattr(self._target, name))
        setattr(self, name, value)  # build each wrapper once
        return value


class OpenAI(_SyncNamespace):
    """A drop-in for ``openai.OpenAI``: the same surface without ``await``, on the same async router."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(AsyncOpenAI(**kwargs))

    @property
    def router(self) -> Router:
        return self._target.router

    def with_options(self, **options: Any) -> OpenAI:
        copy = object.__new__(type(self))
        _SyncNamespace.__init__(copy, self._target.with_options(**options))
        return copy

    def close(self) -> None:
        run(self._target.close())

    def __enter__(self) -> OpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"turnout.OpenAI({self.router!r})"


def _synced(value: Any) -> Any:
    if isinstance(value, _Namespace):
        return _SyncNamespace(value)
    if callable(value) and not isinstance(value, _Unrouted):
        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            if inspect.iscoroutine(result):
                result = run(result)
            elif inspect.isawaitable(result):  # models.list(): awaitable, not a coroutine
                result = run(_awaited(result))
            return SyncStream(result) if isinstance(result, RoutedStream) else result
        return call
    return value


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class SyncStream:
    """``openai.Stream``-alike: iterate with ``for``, ``with`` it, ``close()`` it."""

    def __init__(self, stream: RoutedStream) -> None:
        self._stream = stream
        self.backend = self._turnout_backend = stream.backend

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return run(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        run(self._stream.close())

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
