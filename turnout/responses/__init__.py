"""The Responses API: passed through to backends that have it, bridged to chat for those that do not,
and stored responses served where they were made.

It stands beside the router and uses only its public API (``Routing``: the selection, the walk, the
stateful backend, the state), so another endpoint family with ways of its own to serve a request can
be built the same way. ``bridge`` holds the pure conversions between the two APIs.
"""

from ._handler import Responses, Routing

__all__ = ["Responses", "Routing"]
