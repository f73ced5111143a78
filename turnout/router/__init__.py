"""Routing: which backend serves a request, in what order, with what retries."""

from __future__ import annotations

from ._backend import Backend
from ._router import Router

__all__ = ["Backend", "Router"]
