"""Credentials that expire: one token source, whatever cloud issues the token.

A backend's credential is a static key (``AUTH=key``) or a :class:`TokenSource`
(``AUTH=entra``: Microsoft Entra ID through ``azure-identity``; ``AUTH=google``:
Google's application default credentials through ``google-auth``). AWS's own
credential chain (``AUTH=aws``) needs no source here: the SDK's Bedrock
provider signs each request itself.

A token source is handed to the backend's SDK client as its callable key
(``api_key=`` or Azure's ``azure_ad_token_provider=``): the SDK asks it for
a token on every request. It answers from its cache; the first request waits
for the first fetch, and concurrent ones share it. Ahead of expiry one
refresh runs in the background while requests go on with the still valid
token. A fetch that fails raises an ``openai.AuthenticationError`` naming
the backend and the source (never the token, nor the library's own message,
which may quote a credential file), so the router fails over as for a 401.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timezone
from typing import Callable, NamedTuple

import openai

from .._errors import ConfigError, status_error

__all__ = ["Token", "TokenSource", "token_source", "CREDENTIAL_UNAVAILABLE", "CREDENTIAL_SOURCES"]

log = logging.getLogger("turnout.auth")

CREDENTIAL_UNAVAILABLE = "credential_unavailable"
"""The ``code`` of the 401 a token source raises when it cannot get a token."""

REFRESH_AHEAD = 300.0
"""Seconds before expiry a background refresh starts (at most half the token's life)."""

CREDENTIAL_SOURCES = {
    "entra": "Microsoft Entra ID token (azure-identity DefaultAzureCredential)",
    "google": "Google OAuth token (google-auth application default credentials)",
    "aws": "AWS credential chain, each request signed by the openai SDK's Bedrock provider",
}
"""What each ``AUTH`` other than ``key`` sends, as ``turnout config`` and errors name it."""

RETRY_AFTER_FAILURE = 10.0
"""Seconds after a failed fetch before a background refresh is tried again (a request finding the
token expired always tries at once)."""

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class Token(NamedTuple):
    value: str
    expires_at: float
    """Seconds since the epoch (``time.time()``)."""


class TokenSource:
    """One backend's token: fetched once, refreshed ahead of expiry off the request path, one fetch at a time.

    ``fetch`` is blocking (the credential libraries are): it runs in a worker thread.
    Calling the source gives the token to send, which is what the openai SDK's callable key expects.
    """

    def __init__(
        self, backend: str, source: str, fetch: Callable[[], Token], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.backend = backend
        self.source = source
        self._fetch = fetch
        self._clock = clock
        self._token: Token | None = None
        self._issued = 0.0
        self._pending: asyncio.Task[Token] | None = None
        self._quiet_until = 0.0
        self.fetches = 0

    def __repr__(self) -> str:
        return f"TokenSource(backend={self.backend!r}, source={self.source!r})"

    async def __call__(self) -> str:
        token, now = self._token, self._clock()
        if token is None or now >= token.expires_at:  # shielded: one caller's cancellation is not everyone's
            return (await asyncio.shield(self._refresh())).value
        ahead = min(REFRESH_AHEAD, (token.expires_at - self._issued) / 2)
        if now >= token.expires_at - ahead and now >= self._quiet_until:
            self._refresh()  # in the background; this request goes on with the still valid token
        return token.value

    def _refresh(self) -> asyncio.Task[Token]:
        """The one fetch under way, started if none is: concurrent callers share it."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_task(self._fetched())
            self._pending.add_done_callback(_consume)
        return self._pending

    async def _fetched(self) -> Token:
        try:
            self.fetches += 1
            token = await asyncio.to_thread(self._fetch)
        except Exception as err:  # the library's message may quote a credential: only its class is shown
            self._quiet_until = self._clock() + RETRY_AFTER_FAILURE  # the token in hand still serves meanwhile
            log.warning("backend %s: no token from %s (%s)", self.backend, self.source, type(err).__name__)
            raise unavailable(self.backend, self.source, type(err).__name__) from None
        finally:
            self._pending = None
        self._token, self._issued = token, self._clock()
        return token

    async def aclose(self) -> None:
        if self._pending is not None:
            self._pending.cancel()


def _consume(task: asyncio.Task[Token]) -> None:
    """A background refresh's failure is reported by the request that needs the token, not as an orphan."""
    if not task.cancelled():
        task.exception()


def unavailable(backend: str, source: str, why: str) -> openai.AuthenticationError:
    """The 401 a failed fetch becomes: the router fails over on it and cools the backend down."""
    return status_error(
        openai.AuthenticationError,
        401,
        f"backend {backend!r}: could not obtain a token from {source}: {why}",
        url="turnout://credentials",
        code=CREDENTIAL_UNAVAILABLE,
    )


# -- the sources AUTH names --------------------------------------------------------------


def token_source(auth: str, backend: str) -> TokenSource:
    """The token source ``TURNOUT_BACKEND__<NAME>__AUTH`` names; its library is imported only here."""
    if auth == "entra":
        return TokenSource(backend, CREDENTIAL_SOURCES["entra"], _entra(backend))
    if auth == "google":
        return TokenSource(backend, CREDENTIAL_SOURCES["google"], _google(backend))
    raise ConfigError(f"backend {backend!r}: AUTH={auth} has no token source; accepted: entra, google")


def _entra(backend: str) -> Callable[[], Token]:
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise _missing(backend, "entra", "azure-identity", "azure") from None
    credential = DefaultAzureCredential()

    def fetch() -> Token:
        got = credential.get_token(ENTRA_SCOPE)
        return Token(got.token, float(got.expires_on))

    return fetch


def _google(backend: str) -> Callable[[], Token]:
    try:
        import google.auth
        from google.auth.transport.requests import Request
    except ImportError:
        raise _missing(backend, "google", "google-auth", "google") from None
    found: list[object] = []

    def fetch() -> Token:
        if not found:  # discovery reads files and may ask the metadata server: off the event loop, like the rest
            found.append(google.auth.default(scopes=[GOOGLE_SCOPE])[0])
        credentials = found[0]
        credentials.refresh(Request())  # type: ignore[attr-defined]
        expiry = credentials.expiry  # type: ignore[attr-defined]  # naive UTC
        expires_at = expiry.replace(tzinfo=timezone.utc).timestamp() if expiry is not None else time.time() + 3000
        return Token(credentials.token, expires_at)  # type: ignore[attr-defined]

    return fetch


def _missing(backend: str, auth: str, package: str, extra: str) -> ConfigError:
    return ConfigError(f"backend {backend!r}: AUTH={auth} needs the {package} package; pip install 'turnout[{extra}]'")
