"""The contract every backend keeps, so the router never asks which kind it holds.

Adapters take the keyword arguments of the openai SDK's ``create`` methods
(with ``model`` already resolved to the backend's own model name) and return
the openai SDK's own types. Failures are raised as the openai SDK's own
exception classes, whatever protocol the backend speaks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol, runtime_checkable

from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

__all__ = ["Adapter", "Capabilities", "Health"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the router skips backends that lack what a request needs.

    A flag that claims too much turns into a run-time failure on that backend,
    so presets claim only what the provider documents.
    """

    chat: bool = True
    streaming: bool = True
    tools: bool = True
    vision: bool = False
    embeddings: bool = False
    json_mode: bool = True
    json_schema: bool = False
    audio_transcription: bool = False

    def replace(self, **changes: bool) -> Capabilities:
        """A copy with some flags changed; unknown names raise ``TypeError``."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class Health:
    """One health probe's result. ``latency`` is in seconds."""

    up: bool
    latency: float
    models: int | None = None
    error: str | None = None


@runtime_checkable
class Adapter(Protocol):
    """One backend. ``name`` is the configured backend name (unique per router)."""

    name: str
    capabilities: Capabilities

    async def chat(self, **params: Any) -> ChatCompletion:
        """A non-streamed chat completion."""
        ...

    def stream_chat(self, **params: Any) -> AsyncIterator[ChatCompletionChunk]:
        """A streamed chat completion.

        Nothing is sent until the first ``__anext__``, so the router can open the
        stream and read its first chunk inside one retried call; ``aclose()``
        releases the connection.
        """
        ...

    async def embeddings(self, **params: Any) -> CreateEmbeddingResponse: ...

    async def list_models(self) -> list[Model]:
        """The models this backend serves, with ``owned_by`` set to the backend's name."""
        ...

    async def health(self) -> Health: ...

    async def aclose(self) -> None: ...
