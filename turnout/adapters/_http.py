"""The caller's ``http_client=``, given to every backend reached over HTTP.

(The one backend a client's constructor makes gets it whole instead, as the SDK would use it: the
caller chose it for that one host. This module is for backends from the environment.)

A turnout client talks to many hosts, so the caller's httpx client is not
used as it is: each backend keeps its own client (its own address, key,
headers and timeout) built on the caller's *transports*: the connection
layer, where a proxy, TLS verification and client certificates, connection
limits and a custom transport (aiohttp's, a mock) live. What lives on the
caller's client itself (its headers, auth, cookies) stays there, so
nothing set for one provider reaches another provider's host. The caller's
client is closed when the turnout client is closed, as the SDK closes it;
a backend closing its own client leaves the shared transports open.

A synchronous client's transports are synchronous, and the backends run on
the router's event loop: each request is sent on a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator, Union

import httpx2
import openai

from ._inline import BlockingClient, InlineClient

__all__ = ["Transports", "aiohttp_client", "backend_http_client", "on_the_loop"]

CallerClient = Union[httpx2.AsyncClient, httpx2.Client]


class Transports:
    """The connection layer of the caller's ``http_client``, shared by every backend's own client."""

    def __init__(self, caller: CallerClient) -> None:
        if not isinstance(caller, (httpx2.AsyncClient, httpx2.Client)):
            raise TypeError(
                f"http_client must be an httpx2.Client or httpx2.AsyncClient (as the openai SDK takes), "
                f"not {type(caller).__name__}"
            )
        self.transport = _shared(caller._transport)
        self.mounts: dict[str, httpx2.AsyncBaseTransport | None] = {
            str(pattern.pattern): None if t is None else _shared(t) for pattern, t in caller._mounts.items()
        }
        self.follow_redirects = caller.follow_redirects


def backend_http_client(
    base_url: str,
    timeout: float | None,
    *,
    transports: Transports | None = None,
    proxy: str | None = None,
    verify: Any = True,
) -> httpx2.AsyncClient:
    """One backend's own httpx client: through its own ``proxy`` when it has one, else over the caller's
    transports when it gave an ``http_client``, else the SDK's defaults."""
    if transports is None or proxy is not None:  # the SDK's defaults: the sync client may send on a sync twin

        def twin() -> httpx2.Client:
            return BlockingClient(base_url=base_url, timeout=timeout, proxy=proxy, verify=verify)

        return InlineClient(twin, base_url=base_url, timeout=timeout, proxy=proxy, verify=verify)
    return httpx2.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        transport=transports.transport,
        mounts=transports.mounts,
        follow_redirects=transports.follow_redirects,
        trust_env=False,
    )  # the caller's mounts already hold what its environment said


def aiohttp_client() -> httpx2.AsyncClient | None:
    """The SDK's aiohttp client (``openai.DefaultAioHttpClient``), to give every backend as a caller's
    ``http_client`` is; ``None`` without aiohttp. Its C parser reads an answer, and a stream's many small
    chunks above all, at a fraction of httpx's pure-Python cost: what ``turnout serve`` relays with."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return None
    client = openai.DefaultAioHttpClient()
    client._transport = _ConnectErrors(client._transport)
    return client


class _ConnectErrors(httpx2.AsyncBaseTransport):
    """The SDK's aiohttp transport calls every failed connection a ``ConnectTimeout`` (its table maps aiohttp's
    base connection error first): a refused one is a ``ConnectError`` again, as httpx raises it, so a dead
    backend is not reported as a slow one."""

    def __init__(self, transport: httpx2.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self._transport.handle_async_request(request)
        except httpx2.ConnectTimeout as err:
            if isinstance(err.__cause__, asyncio.TimeoutError):  # a real one
                raise
            raise httpx2.ConnectError(str(err), request=request) from err.__cause__

    async def aclose(self) -> None:
        await self._transport.aclose()


def _shared(transport: Any) -> httpx2.AsyncBaseTransport:
    """The caller's transport as one backend sees it: async, and never closed by that backend."""
    if isinstance(transport, httpx2.AsyncBaseTransport):
        return _Unclosed(transport)
    if isinstance(transport, httpx2.BaseTransport):
        return _Threaded(transport)
    raise TypeError(
        f"http_client's transport {type(transport).__name__} is neither an httpx2 transport nor an async one"
    )


class _Unclosed(httpx2.AsyncBaseTransport):
    def __init__(self, transport: httpx2.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        """The caller's transport belongs to the caller's client: closed with it."""


class _Threaded(httpx2.AsyncBaseTransport):
    """A synchronous transport sending from a worker thread, its answer read a chunk at a time."""

    def __init__(self, transport: httpx2.BaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        sync = httpx2.Request(
            request.method, request.url, headers=request.headers, content=body, extensions=request.extensions
        )
        response = await asyncio.to_thread(self._transport.handle_request, sync)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=_ThreadedBody(response.stream),
            extensions=dict(response.extensions),
        )

    async def aclose(self) -> None:
        """Closed with the caller's client."""


def on_the_loop(response: httpx2.Response) -> httpx2.Response:
    """A synchronous client's response (the one backend's, on the caller's synchronous ``http_client``),
    readable on the router's loop: a body not read yet is read a chunk at a time on a worker thread."""
    response.stream = httpx2.ByteStream(response.content) if response.is_closed else _ThreadedBody(response.stream)
    return response


class _ThreadedBody(httpx2.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._chunks: Iterator[bytes] = iter(stream)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await asyncio.to_thread(next, self._chunks, None)
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
