"""The endpoint table: which SDK request is routed how, and what it needs of a backend.

One row per endpoint, matched on the method and the path the SDK built
(relative to the client's base URL). A new endpoint is a row here, never a
new code path. The Responses API has two modes of its own (``router._responses``):
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
    # method ("*": any), path (a full match), endpoint
    ("post", r"/chat/completions", Endpoint("chat")),
    ("post", r"/completions", Endpoint("completions", need="completions")),
    ("post", r"/embeddings", Endpoint("embeddings", need="embeddings")),
    ("post", r"/audio/(transcriptions|translations)", Endpoint("audio", need="audio_transcription")),
    ("post", r"/moderations", Endpoint("moderations", need="moderations", model_optional=True)),
    ("post", r"/images/generations", Endpoint("images", need="image_generation", model_optional=True)),
    ("post", r"/responses", Endpoint("responses", mode="responses", need="responses", model_optional=True)),
    ("get", r"/responses/[^/]+(/input_items)?", Endpoint("response", mode="held")),
    ("delete", r"/responses/[^/]+", Endpoint("response", mode="held")),
    ("post", r"/responses/[^/]+/cancel", Endpoint("response", mode="held")),
    ("get", r"/models", Endpoint("models", mode="aggregated")),
    ("get", r"/models/[^/]+", Endpoint("model", mode="aggregated")),
    # OpenAI's organization administration: OpenAI-only, with its admin key (OPENAI_ADMIN_KEY)
    ("*", r"/organization/.*", Endpoint("admin", mode="admin")),
)

_COMPILED = tuple((method, re.compile(pattern), endpoint) for method, pattern, endpoint in ENDPOINTS)
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
