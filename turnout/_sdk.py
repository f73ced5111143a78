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

The client also overrides one private hook of the SDK's base client,
``_process_response_data`` (``client.py``: to mark who served an answer);
its signature (keyword-only ``data``, ``cast_to``, ``response``) is the same
in both versions.
"""

from __future__ import annotations

from typing import Any, Mapping

from openai._models import FinalRequestOptions
from openai._streaming import SSEDecoder
from openai._types import RequestOptions

__all__ = ["FinalRequestOptions", "RequestOptions", "SSEDecoder", "set_custom_headers"]


def set_custom_headers(client: Any, headers: Mapping[str, str] | None) -> None:
    """Replace the headers an SDK client read from ``OPENAI_CUSTOM_HEADERS`` with ``headers``."""
    client._custom_headers = dict(headers or {})
