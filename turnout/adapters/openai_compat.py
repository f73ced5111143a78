"""One adapter for every OpenAI-compatible endpoint, cloud or local.

The official SDK does the HTTP, streaming and parsing; this class only
decides which address and key it talks to. A provider is a row in
:mod:`turnout.adapters.presets`, never a subclass of this.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import ssl
import threading
import time
from typing import Any, Callable, Mapping, cast

import httpx2
import openai
from openai.types import Model

from .._errors import ConfigError, describe, malformed_response
from .._redact import redact_url
from .._sdk import ASYNC_SDK_REQUEST, SYNC_SDK_REQUEST, remember_urls, set_custom_headers
from ._base import Call, Capabilities, Health
from ._constructors import SDKClient, build_client
from ._http import Transports, backend_http_client, on_the_loop
from ._inline import INLINE, InlineClient, readable_inline
from .auth import TokenSource, token_source
from .presets import Auth, Preset, fill_base_url, get_preset

__all__ = ["OpenAICompatAdapter", "LOCAL_PLACEHOLDER_KEY"]

LOCAL_PLACEHOLDER_KEY = "sk-no-key-required"
"""Sent to servers that need no key: the SDK insists on one, local servers ignore it."""

DEFAULT_TIMEOUT = 60.0


class OpenAICompatAdapter:
    """A backend reached through ``openai.AsyncOpenAI`` with a preset address and key.

    The SDK client is built with ``max_retries=0``: retrying is the router's
    job, done once. The key is taken from ``api_key``, else from the preset's
    own key variable; it is never read from another provider's variable.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        preset: str | Preset = "openai_compat",
        base_url: str | None = None,
        api_key: str | TokenSource | Callable[[], Any] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        capabilities: Capabilities | None = None,
        http_client: httpx2.AsyncClient | None = None,
        auth: Auth | None = None,
        api_version: str | None = None,
        transports: Transports | None = None,
        proxy: str | None = None,
        sdk: Mapping[str, Any] | None = None,
    ) -> None:
        """``transports``: the caller's ``http_client`` connection layer (``adapters._http``); ``proxy``: this
        backend's own; ``sdk``: the caller's other SDK constructor arguments (``admin_api_key``,
        ``workload_identity``, ``provider``, ``organization``, ``project``, and ``http_client`` for the one
        backend the caller's SDK would have talked to), given to this backend's SDK client as they are. A
        synchronous ``http_client`` makes a synchronous SDK client, whose calls run on worker threads."""
        self.preset = preset if isinstance(preset, Preset) else get_preset(preset)
        self.name = name or self.preset.name
        self.provider = self.preset.name
        self.capabilities = capabilities or self.preset.capabilities
        self.base_url = _resolve_base_url(self.name, self.preset, base_url)
        self.timeout = timeout
        self.credential = api_key or _credential(self.name, self.preset, auth or self.preset.auths[0])
        sdk = dict(sdk or {})
        whole = sdk.pop("http_client", None)  # the caller's own, for the one backend it was made for
        if http_client is None and proxy is None:
            http_client = whole
        if http_client is None:  # the SDK's own defaults, less the SSL context it would build for each client
            http_client = backend_http_client(
                self.base_url, timeout, transports=transports, proxy=proxy, verify=_shared_ssl_context()
            )
        self._made = (headers, api_version, sdk)
        self._client: SDKClient = self._sdk_client(http_client)
        self._inline_http = http_client if isinstance(http_client, InlineClient) else None
        self.inline = (
            self._inline_http is not None
            and not isinstance(self.credential, TokenSource)
            and not inspect.iscoroutinefunction(self.credential)
            and "workload_identity" not in sdk
        )
        """Whether the sync client may send with this backend's synchronous twin (``_inline``): not with a
        token source (it refreshes on the loop that first asked), an async key function, or a workload identity
        (its token is held by the async client, which the caller's client shows)."""
        self._blocking: openai.OpenAI | None = None
        self._lock = threading.Lock()
        self._passes_bytes = type(self._client) in (openai.AsyncOpenAI, openai.OpenAI) and "provider" not in sdk
        """A caller's body may go as its own bytes: not to Azure's deployment routes or a provider's client,
        which read the body the SDK is given (its model names the route; a provider may rewrite it)."""

    def _sdk_client(self, http_client: httpx2.AsyncClient | httpx2.Client) -> SDKClient:
        """This backend's SDK client on ``http_client``: synchronous on a synchronous one."""
        headers, api_version, sdk = self._made
        sync = isinstance(http_client, httpx2.Client)
        common: dict[str, Any] = dict(
            timeout=self.timeout, default_headers=dict(headers) if headers else None, http_client=http_client
        )
        client: SDKClient
        if "provider" in sdk:  # the caller's own SDK provider brings the address and the login
            client = (openai.OpenAI if sync else openai.AsyncOpenAI)(**sdk, max_retries=0, **common)
        else:  # -- issue 26: the row names the SDK constructor (plain, Azure, Bedrock provider) ------------
            client = build_client(
                self.preset,
                self.name,
                base_url=self.base_url,
                credential=self.credential if sync else _async_key(self.credential),  # type: ignore[arg-type]
                api_version=api_version,
                **common,
                **sdk,
            )
        if self.preset.name != "openai":
            _forget_openai_ambient(client, headers, sdk)
        remember_urls(client)
        return client

    def _blocking_client(self) -> openai.OpenAI:
        """The synchronous SDK client the sync ``turnout.OpenAI`` sends with, over the twin connection pool."""
        client = self._blocking
        if client is None:
            with self._lock:
                if self._blocking is None:
                    twin = cast(InlineClient, self._inline_http).twin()
                    self._blocking = cast(openai.OpenAI, self._sdk_client(twin))
                client = self._blocking
        return client

    def __repr__(self) -> str:
        return f"OpenAICompatAdapter(name={self.name!r}, preset={self.preset.name!r}, base_url={redact_url(self.base_url)!r})"

    @property
    def sdk_client(self) -> SDKClient:
        """This backend's own SDK client (the caller's client shows its workload identity)."""
        return self._client

    @property
    def api_key(self) -> str:
        """The key this backend sends (only ever to its own host)."""
        return self._client.api_key

    @property
    def admin_api_key(self) -> str | None:
        """The key this backend sends to OpenAI's admin endpoints (``/organization/...``), if it has one."""
        return getattr(self._client, "admin_api_key", None)

    async def send(self, call: Call) -> httpx2.Response:
        """The request through this backend's own SDK client, as the caller's SDK built it.

        The SDK adds this backend's address, key and headers, raises its own
        exceptions for failed statuses, and hands back the HTTP response
        unparsed: the caller's SDK client parses it.
        """
        # the SDK base class's request: a class-level wrapper of openai.AsyncOpenAI.request sees no attempt (_sdk)
        client = self._client
        options = call.wire_options() if self._passes_bytes else call.options
        if self.inline and INLINE.get():  # the sync turnout.OpenAI, on the calling thread: block as it would
            answer: Any = SYNC_SDK_REQUEST(self._blocking_client(), httpx2.Response, options, stream=call.stream)
        elif isinstance(client, openai.OpenAI):  # the caller's synchronous http_client carries it
            answer = await asyncio.to_thread(SYNC_SDK_REQUEST, client, httpx2.Response, options, stream=call.stream)
        else:
            answer = await ASYNC_SDK_REQUEST(client, httpx2.Response, options, stream=call.stream)
        response: httpx2.Response = answer if isinstance(answer, httpx2.Response) else answer.http_response
        if isinstance(client, openai.OpenAI):
            response = on_the_loop(response)
        elif INLINE.get() and self.inline:
            response = readable_inline(response)
        if response.is_closed and _is_json(response) and response.content:  # read already: check it whole
            try:
                json.loads(response.content)
            except ValueError as err:  # the SDK would let this escape as a bare ValueError, unretried
                raise malformed_response(self.name, str(response.request.url), err) from err
        return response

    async def list_models(self) -> list[Model]:
        try:
            client = self._client
            page = await (
                asyncio.to_thread(client.models.list) if isinstance(client, openai.OpenAI) else client.models.list()
            )
        except ValueError as err:  # a body that is not JSON: callers expect an ``openai.APIError``
            raise malformed_response(self.name, self.base_url.rstrip("/") + "/models", err) from err
        return [m.model_copy(update={"owned_by": self.name}) for m in page.data]

    async def health(self) -> Health:
        """Up when the server answers; a server without ``/models`` still counts as up."""
        start = time.perf_counter()
        try:
            models: int | None = len(await self.list_models())
        except openai.APIStatusError as err:
            if err.status_code not in (404, 405):
                return Health(False, time.perf_counter() - start, error=describe(err))
            models = None
        except openai.APIError as err:
            return Health(False, time.perf_counter() - start, error=describe(err))
        return Health(True, time.perf_counter() - start, models=models)

    async def aclose(self) -> None:
        if isinstance(self.credential, TokenSource):
            await self.credential.aclose()
        client = self._client
        await (asyncio.to_thread(client.close) if isinstance(client, openai.OpenAI) else client.close())


_SSL_CONTEXTS: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def _shared_ssl_context() -> ssl.SSLContext:
    """httpx2's default SSL context, built once per process and shared by every adapter's own client.

    Building one (loading the CA store) costs ~20 ms and ~0.8 MiB, most of an SDK
    client's construction time and memory: a router of 20 backends paid it 20 times. An
    ``SSLContext`` is safe to share between clients, threads and event loops;
    each adapter keeps its own connection pool and closes only that. Keyed by
    the variables httpx2 reads for it, so changing them still takes effect.
    """
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    ctx = _SSL_CONTEXTS.get(key)
    if ctx is None:
        ctx = _SSL_CONTEXTS[key] = httpx2.create_ssl_context()
    return ctx


def _is_json(response: httpx2.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/json")


def _resolve_base_url(name: str, preset: Preset, base_url: str | None) -> str:
    url = (
        base_url
        or (preset.url_env and os.environ.get(preset.url_env))
        or (preset.base_url and fill_base_url(name, preset.base_url, os.environ.get))
    )
    if not url:
        raise ConfigError(f"backend {name!r}: provider {preset.name!r} needs a base_url")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"backend {name!r}: base_url {redact_url(url)!r} must start with http:// or https://")
    return url


def _credential(name: str, preset: Preset, auth: Auth) -> str | TokenSource | None:
    """The preset's key, or the token source (or, for AWS, the SDK's own signing) ``auth`` names."""
    if auth not in preset.auths:
        raise ConfigError(
            f"backend {name!r}: provider {preset.name!r} takes AUTH={'|'.join(preset.auths)}, not {auth!r}"
        )
    if auth == "key":
        return _preset_key(name, preset)
    return None if auth == "aws" else token_source(auth, name)


def _preset_key(name: str, preset: Preset) -> str:
    if not preset.key_envs:
        return LOCAL_PLACEHOLDER_KEY
    key = next((os.environ[v] for v in preset.key_envs if os.environ.get(v)), None)
    if not key:
        raise ConfigError(f"backend {name!r}: no API key; set {preset.key_env}")
    return key


def _forget_openai_ambient(client: SDKClient, headers: Mapping[str, str] | None, given: Mapping[str, Any]) -> None:
    """Keep OpenAI's own ambient settings away from other providers' hosts.

    The SDK reads ``OPENAI_ORG_ID``, ``OPENAI_PROJECT_ID``, ``OPENAI_ADMIN_KEY`` and
    ``OPENAI_CUSTOM_HEADERS`` from the environment for every client it builds;
    sent to Groq or a local server they would leak OpenAI account details.
    What was given for this backend itself stays.
    """
    client.organization = given.get("organization")
    client.project = given.get("project")
    client.admin_api_key = given.get("admin_api_key")
    set_custom_headers(client, headers)


def _async_key(key: Any) -> Any:
    """A caller's key function (a token refreshed before each request) as the async SDK client calls it:
    awaited. A token source is one already."""
    if not callable(key) or isinstance(key, TokenSource) or inspect.iscoroutinefunction(key):
        return key

    async def fresh() -> Any:
        value = key()
        return await value if inspect.isawaitable(value) else value

    return fresh
