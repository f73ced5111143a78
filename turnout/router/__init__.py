"""Routing: which backend serves a request, in what order, with what retries."""

from __future__ import annotations

from ._backend import Backend
from ._events import RouterEvent
from ._facade import AsyncOpenAI, OpenAI
from ._router import ModelList, Router, served_by
from ._stream import RoutedStream

__all__ = ["AsyncOpenAI", "OpenAI", "Backend", "ModelList", "RoutedStream", "Router", "RouterEvent", "served_by"]
