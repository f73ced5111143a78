"""Faults and request records shared by the loopback servers (OpenAI and Ollama)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Fault:
    """One way to misbehave. Fields combine: ``delay`` runs first, then the rest.

    status        answer with this HTTP status and a protocol-style error body
    retry_after   with ``status``: a ``Retry-After`` header (seconds, as a string)
    retry_after_ms  with ``status``: a ``retry-after-ms`` header
    delay         seconds to wait before answering
    close         drop the connection without answering
    cut_after     streams only: drop the connection after this many chunks
    malformed     answer 200 with a body that is not valid JSON
    hang          never answer (until the server stops, or 30 s)
    error_line    Ollama streams only: send an ``{"error": ...}`` line after ``cut_after`` chunks
    empty         streams only: end cleanly (``[DONE]``) before any chunk
    end_after     streams only: end the body cleanly after this many chunks, with no finish reason,
                  ``[DONE]`` or final event (a crashed worker behind a proxy)
    stall_after   streams only: say nothing more after this many chunks (until the server stops, or 30 s)
    no_done       streams only: finish with a finish reason but no ``[DONE]`` (TGI before July 2024)
    headers       extra headers on the answer, whatever it is (a provider's ``x-ratelimit-*``)
    """

    status: int | None = None
    message: str | None = None
    error_type: str = "server_error"
    code: str | None = None
    retry_after: str | None = None
    retry_after_ms: str | None = None
    delay: float = 0.0
    close: bool = False
    cut_after: int | None = None
    malformed: bool = False
    hang: bool = False
    error_line: str | None = None
    empty: bool = False
    end_after: int | None = None
    stall_after: int | None = None
    no_done: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FormFile:
    """One file part of a multipart/form-data request."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    """What a server received. ``json`` is the JSON body (``None`` for GET, DELETE and multipart);
    ``form`` the multipart fields (text as ``str``, files as :class:`FormFile`, a repeated or ``[]``
    name as a list); ``request_id`` the ``x-request-id`` the answer carried; ``raw`` the body's bytes as sent."""

    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None
    form: dict[str, Any] | None = None
    query: dict[str, str] = field(default_factory=dict)
    request_id: str | None = None
    raw: bytes = b""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


class FaultQueue:
    """Faults applied in order to the coming requests: each for ``times`` requests, or for ever."""

    def __init__(self) -> None:
        self._items: list[list[Any]] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault, times: int | None = None) -> None:
        with self._lock:
            self._items.append([fault, times])

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def take(self) -> Fault | None:
        with self._lock:
            if not self._items:
                return None
            item = self._items[0]
            if item[1] is not None:
                item[1] -= 1
                if item[1] <= 0:
                    self._items.pop(0)
            return item[0]
