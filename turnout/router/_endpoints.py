"""The endpoint table: which SDK request is routed how, and what it needs of a backend.

One row per endpoint, matched on the method and the path the SDK built
(relative to the client's base URL). A new endpoint is a row here, never a
new code path. The Responses API has two modes of its own (``turnout.responses``):
creating a response is routed, natively or through the bridge; a stored response
is *held*, served where it was made. The admin endpoints (``/organization/...``) go to
the backend holding an OpenAI admin key, never to another provider. What no row matches is pinned: stateful APIs (files,
batches, uploads, vector stores, fine-tuning, conversations, containers,
stored responses, ...) go to one backend and are never failed over, so their
state is never split across providers.
"""

from __future__ import annotations

import re

from ..adapters import Endpoint

__all__ = ["ENDPOINTS", "PINNED", "endpoint_for"]

PINNED = Endpoint("pinned", mode="pinned")

ENDPOINTS: tuple[tuple[str, str, Endpoint], ...] = (
    # method ("*": any), path (``{id}``: one path segment; ``{path}``: one or more), endpoint
    ("post", "/chat/completions", Endpoint("chat", streams=True)),
    ("post", "/completions", Endpoint("completions", need="completions", streams=True)),
    ("post", "/embeddings", Endpoint("embeddings", need="embeddings")),
    ("post", "/audio/transcriptions", Endpoint("audio", need="audio_transcription", streams=True, upload=True)),
    ("post", "/audio/translations", Endpoint("audio", need="audio_transcription", upload=True)),
    ("post", "/moderations", Endpoint("moderations", need="moderations", model_optional=True)),
    ("post", "/images/generations", Endpoint("images", need="image_generation", model_optional=True)),
    (
        "post",
        "/responses",
        Endpoint("responses", mode="responses", need="responses", streams=True, model_optional=True),
    ),
    ("get", "/responses/{id}", Endpoint("response", mode="held")),
    ("get", "/responses/{id}/input_items", Endpoint("response", mode="held")),
    ("delete", "/responses/{id}", Endpoint("response", mode="held")),
    ("post", "/responses/{id}/cancel", Endpoint("response", mode="held")),
    ("get", "/models", Endpoint("models", mode="aggregated")),
    ("get", "/models/{id}", Endpoint("model", mode="aggregated")),
    # OpenAI's organization administration: OpenAI-only, with its admin key (OPENAI_ADMIN_KEY)
    ("*", "/organization/{path}", Endpoint("admin", mode="admin")),
)
"""The table ``turnout serve`` answers from too (its routes are made from these rows)."""

_COMPILED = tuple(
    (
        method,
        re.compile(re.escape(path).replace(re.escape("{id}"), "[^/]+").replace(re.escape("{path}"), ".+")),
        endpoint,
    )
    for method, path, endpoint in ENDPOINTS
)
_CACHE: dict[tuple[str, str], Endpoint] = {}


def endpoint_for(method: str, path: str) -> Endpoint:
    """The row for an SDK request (``path`` as the SDK's options carry it), or :data:`PINNED`."""
    key = (method, path)
    found = _CACHE.get(key)
    if found is None:
        bare = "/" + path.split("?", 1)[0].lstrip("/")
        found = next((e for m, p, e in _COMPILED if m in (method.lower(), "*") and p.fullmatch(bare)), PINNED)
        if len(_CACHE) < 1024:  # paths with ids in them (files/abc) are pinned and not worth keeping
            _CACHE[key] = found
    return found
