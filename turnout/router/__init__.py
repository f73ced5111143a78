"""Routing: which backend serves a request, in what order, with what retries.

Besides ``Router.send`` (one SDK request), an endpoint family with ways of its own to serve a request
(``turnout.responses``) uses the router's public ``select``, ``walk``, ``runner(name)`` and ``stateful``.
"""

from __future__ import annotations

from ._backend import Backend
from ._endpoints import ENDPOINTS, endpoint_for
from ._events import RouterEvent
from ._router import ModelList, Router
from ._stream import usable

__all__ = ["Backend", "ENDPOINTS", "ModelList", "Router", "RouterEvent", "endpoint_for", "usable"]
