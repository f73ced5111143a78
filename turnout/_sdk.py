"""The one place that touches the openai SDK's private API.

Every name below is private to the SDK (a leading underscore), so a new
openai release may move it. They are imported here and nowhere else, so an
upgrade that breaks one breaks this module, at import, not five others.

Checked against openai 3.0.0 (the floor of the pin in pyproject.toml, which
``./scripts/test`` runs the suite on too) and 3.60.0 (the newest the suite
ran on when this was written); recheck both when either moves.

- ``FinalRequestOptions`` (``openai._models``): one request's options as the
  caller's SDK built them (method, url, json_data, files, headers, ...). The
  routing seam receives them and the router routes them: the client's
  ``request()`` override, ``Router.send``, the adapters' ``Call``.
- ``RequestOptions`` (``openai._types``): the per-call options a raw
  ``client.post(..., options=...)`` takes (``turnout serve``).
- ``SSEDecoder`` (``openai._streaming``): the SDK's own server-sent-events
  parser, which the Responses bridge reads a chat stream with.
- ``set_custom_headers``: a client's ``_custom_headers``, where the SDK keeps
  ``OPENAI_CUSTOM_HEADERS`` from the environment (kept away from other hosts).
- ``ASYNC_SDK_REQUEST``, ``SYNC_SDK_REQUEST`` (``request`` of
  ``openai._base_client``'s ``AsyncAPIClient``/``SyncAPIClient``): the SDK's
  own ``request``, from its base class. The adapters call it (not their
  client's ``request``), so instrumentation wrapping ``openai.AsyncOpenAI.request``
  on the class (logfire's class-level mode) sees the caller's call once, not each
  backend attempt again; the client compares its class's ``request`` with it to
  know whether such a wrapper is there.
- ``RAW_RESPONSE_HEADER`` (``openai._constants``): the header by which
  ``with_streaming_response`` asks for a body left unread (the client reads it;
  its stand-in request keeps it).
- ``resolve_data_residency`` (``openai._data_residency``), ``configure_provider``
  and ``provider_name`` (``openai._provider``), ``is_x509_workload_identity`` and
  ``mtls_base_url`` (``openai.auth._x509``): the constructor's ``data_residency``,
  ``provider`` and X.509 ``workload_identity`` resolved by the SDK's own rules, for
  the one backend the client builds from them. Newer than 3.0.0, so imported only
  when called (an X.509 check on an SDK without them says no).

- ``share_workload_identity``: the one backend's ``workload_identity`` and
  ``_workload_identity_auth`` (the object holding its token), set on the
  caller's client, which shows them as the SDK's client does.
- ``post_options``: the ``FinalRequestOptions`` of a JSON ``post``, as
  ``FinalRequestOptions.construct`` makes them, copied from a blank one.
- ``remember_urls``: a backend's SDK client keeps the URLs its ``_prepare_url``
  made (the base URL joined to a request's path), one per path.
- ``sdk_copy_arguments``: the SDK's own ``copy()``, run on a stand-in holding
  the attributes it reads (``_api_key_provider``, ``_base_url_was_default``,
  ``_provider``, ``_client``, ``_custom_headers``, ``_custom_query``, ...), for
  the constructor arguments of a copy with another login (``client.copy``).

The client also overrides private hooks of the SDK's base client
(``client.py``): ``_process_response_data`` (to mark who served an answer
and its cost; keyword-only ``data``, ``cast_to``, ``response``), and, for
the path taken when instrumentation wraps ``request`` on the class,
``_prepare_options``, ``_build_request`` (a stand-in request: nothing is
sent from the caller's client) and ``_send_request`` (the seam there).
"""

from __future__ import annotations

from types import MethodType
from typing import Any, Mapping

from openai._base_client import AsyncAPIClient, SyncAPIClient
from openai._constants import RAW_RESPONSE_HEADER
from openai._models import FinalRequestOptions
from openai._streaming import SSEDecoder
from openai._types import RequestOptions

__all__ = [
    "ASYNC_SDK_REQUEST",
    "SYNC_SDK_REQUEST",
    "FinalRequestOptions",
    "RAW_RESPONSE_HEADER",
    "RequestOptions",
    "SSEDecoder",
    "configure_provider",
    "is_x509_workload_identity",
    "mtls_base_url",
    "post_options",
    "provider_name",
    "remember_urls",
    "resolve_data_residency",
    "set_custom_headers",
    "share_workload_identity",
    "sdk_copy_arguments",
]

ASYNC_SDK_REQUEST = AsyncAPIClient.request
SYNC_SDK_REQUEST = SyncAPIClient.request


def set_custom_headers(client: Any, headers: Mapping[str, str] | None) -> None:
    """Replace the headers an SDK client read from ``OPENAI_CUSTOM_HEADERS`` with ``headers``."""
    client._custom_headers = dict(headers or {})


def resolve_data_residency(region: Any, base_url: Any, *, provider: Any, websocket_base_url: Any = None) -> Any:
    """The address of a ``data_residency`` region (and the SDK's refusals of what it cannot go with)."""
    from openai._data_residency import resolve_data_residency as resolve

    if websocket_base_url is None:
        return resolve(region, base_url, provider=provider)
    return resolve(region, base_url, provider=provider, websocket_base_url=websocket_base_url)


def configure_provider(provider: Any) -> Any:
    """A ``provider=`` as the SDK configures it (its ``base_url`` among the rest)."""
    from openai._provider import _configure_provider

    return _configure_provider(provider)


def provider_name(provider: Any) -> str:
    """The provider's name as the SDK's own error messages spell it."""
    from openai._provider import _provider_name

    return str(_provider_name(provider))


def is_x509_workload_identity(identity: Any) -> bool:
    """Is ``identity`` an X.509 workload identity? No on an SDK older than them."""
    if identity is None:
        return False
    try:
        from openai.auth._x509 import is_x509_workload_identity as is_x509
    except ImportError:
        return False
    return bool(is_x509(identity))


def mtls_base_url() -> str:
    """OpenAI's mTLS address: the SDK's default base URL for an X.509 identity."""
    from openai.auth._x509 import MTLS_API_BASE_URL

    return str(MTLS_API_BASE_URL)


def share_workload_identity(client: Any, backend_client: Any) -> None:
    """The one backend's workload identity, shown on the caller's client as the SDK shows its own: the identity
    (``workload_identity``) and the object holding its token (``_workload_identity_auth``), the backend's."""
    client.workload_identity = getattr(backend_client, "workload_identity", None)
    client._workload_identity_auth = getattr(backend_client, "_workload_identity_auth", None)


_BLANK_POST = FinalRequestOptions.construct(method="post", url="/")
_MUTABLE = tuple(k for k, v in _BLANK_POST.__dict__.items() if isinstance(v, (dict, list, set)))


def post_options(url: str, body: Any) -> FinalRequestOptions:
    """The options of ``client.post(url, body=body)``: a copy of blank ones (~2 µs), where ``construct`` fills
    each default anew with pydantic's deep copy (~25 µs). Their mutable defaults are copied too."""
    update = {key: _BLANK_POST.__dict__[key].copy() for key in _MUTABLE}
    options = _BLANK_POST.model_copy(update={**update, "url": url, "json_data": body})
    object.__setattr__(options, "__pydantic_fields_set__", {"method", "url", "json_data"})  # as construct's
    return options


def remember_urls(client: Any) -> None:
    """``client`` builds each request's URL once per path and keeps it.

    The SDK joins the base URL and the path anew for every request (httpx's
    ``copy_with``: ~15 µs alone, 50–80 µs between two requests, the largest
    single step before a send), though a backend's requests go to a few paths.
    The URL is immutable and the same each time; what is kept is forgotten when
    the base URL changes, and once more than :data:`_URLS_KEPT` paths have been seen
    (paths with ids in them, ``/files/{id}``)."""
    client._turnout_urls = (client.base_url, {})
    client._prepare_url = MethodType(_remembered_url, client)


_URLS_KEPT = 64


def _remembered_url(client: Any, url: str) -> Any:
    base, made = client._turnout_urls
    if base is not client.base_url:  # set anew: its setter makes another URL
        base, made = client._turnout_urls = (client.base_url, {})
    prepared = made.get(url)
    if prepared is None:
        if len(made) >= _URLS_KEPT:
            made.clear()
        prepared = made[url] = type(client)._prepare_url(client, url)
    return prepared


def sdk_copy_arguments(kind: Any, state: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments the SDK's own ``copy()`` (``kind``'s) gives a copy of a client in ``state`` with
    ``changes``: its own rules on what a new key, identity, provider or region keeps and drops. ``state`` holds
    the attributes that ``copy`` reads (``api_key``, ``_api_key_provider``, ``base_url``, ``_base_url_was_default``,
    ``_provider``, ``_client``, ...)."""
    twin = _Twin.__new__(_Twin)
    twin.__dict__.update(state)
    copied = kind.copy(twin, **changes)
    arguments = dict(copied.arguments)
    if copied.__dict__.get("_base_url_was_default"):  # the SDK's default address, still chosen by default
        arguments.pop("base_url", None)
    return arguments


class _Twin:
    """Stands for a client in the SDK's ``copy()``, which builds ``self.__class__(...)``: here, the arguments.
    What it lacks (newer SDKs read more, such as ``_ambient_authorizations``, the ``Authorization`` headers
    the SDK took from the environment) reads as ``None``: nothing of that kind, as turnout carries none."""

    def __init__(self, **arguments: Any) -> None:
        self.arguments = arguments
        self._custom_headers = arguments.get("default_headers") or {}

    def __getattr__(self, name: str) -> Any:
        return None
