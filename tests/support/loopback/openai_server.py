"""A small server speaking the OpenAI HTTP protocol on 127.0.0.1, with faults you switch on.

It answers what the SDK's routed and pinned endpoints send, deterministically:
chat completions (JSON and SSE with ``[DONE]`` and a usage chunk; JSON that
fits ``response_format``'s schema; a tool call whose arguments fit the tool's
schema when ``tools`` are sent), legacy completions, embeddings, models (list
and retrieve), audio transcriptions and translations (multipart), moderations,
image generation, files and batches (kept in memory), and the Responses API
(create, streamed as OpenAI streams it; stored responses with ``previous_response_id``,
retrieve, delete, input items and cancel; see ``_responses.py``). Every answer, errors
included, carries a unique ``x-request-id``. It records every request it
receives, and can misbehave on demand:

    server.fail(Fault(status=503, retry_after="1"), times=2)   # the next two requests
    server.fail(Fault(close=True))                             # every request from now on
    OpenAIServer(disabled={"embeddings", "audio"})             # 404 there, like a server without them
    OpenAIServer(disabled={"responses"})                       # a chat-only server, as most local ones are

Run it standalone (for benchmarks) with ``python -m tests.support.loopback.openai_server``.
"""

from __future__ import annotations

import argparse
import array
import base64
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._http import (
    HANG_LIMIT,
    LoopbackHandler,
    LoopbackServer,
    image_bytes,
    pieces,
    split_even,
    vector,
)
from ._responses import (
    StoredResponse,
    chat_view,
    finished,
    input_items,
    shell,
    sse,
    stream_events,
)
from ._schema import example
from .faults import Fault, FormFile, RecordedRequest

__all__ = ["FAMILIES", "Fault", "OpenAIServer"]

_ROUTES: list[tuple[str, str, str, str | None]] = [  # method, path after any prefix, family, handler
    ("GET", "/models", "models", "_list_models"),
    ("GET", "/models/(?P<ident>.+)", "models", "_retrieve_model"),
    ("POST", "/chat/completions", "chat", "_chat"),
    ("POST", "/completions", "completions", "_completions"),
    ("POST", "/embeddings", "embeddings", "_embeddings"),
    ("POST", "/audio/(?P<task>transcriptions|translations)", "audio", "_audio"),
    ("POST", "/moderations", "moderations", "_moderations"),
    ("POST", "/images/generations", "images", "_images"),
    ("GET", "/images/(?P<ident>[^/]+)[.]png", "images", "_image_file"),
    ("POST", "/files", "files", "_create_file"),
    ("GET", "/files", "files", "_list_files"),
    ("GET", "/files/(?P<ident>[^/]+)", "files", "_retrieve_file"),
    ("DELETE", "/files/(?P<ident>[^/]+)", "files", "_delete_file"),
    ("GET", "/files/(?P<ident>[^/]+)/content", "files", "_file_content"),
    ("POST", "/batches", "batches", "_create_batch"),
    ("GET", "/batches", "batches", "_list_batches"),
    ("GET", "/batches/(?P<ident>[^/]+)", "batches", "_retrieve_batch"),
    ("POST", "/batches/(?P<ident>[^/]+)/cancel", "batches", "_cancel_batch"),
    ("POST", "/responses", "responses", "_create_response"),
    ("GET", "/responses/(?P<ident>[^/]+)", "responses", "_retrieve_response"),
    ("DELETE", "/responses/(?P<ident>[^/]+)", "responses", "_delete_response"),
    ("GET", "/responses/(?P<ident>[^/]+)/input_items", "responses", "_response_input_items"),
    ("POST", "/responses/(?P<ident>[^/]+)/cancel", "responses", "_cancel_response"),
    ("GET", "/organization/admin_api_keys", "admin", "_list_admin_keys"),
]
ROUTES = [(method, re.compile(".*?" + path), family, handler) for method, path, family, handler in _ROUTES]
"""In order: ``/chat/completions`` before ``/completions``, since a prefix may come before either."""

FAMILIES = frozenset(family for _, _, family, _ in _ROUTES)
"""What ``disabled`` may name."""

_ids = itertools.count(1)
"""Process-wide, so a file, batch or response id from one server is unknown to every other."""


def _new_id(prefix: str) -> str:
    return f"{prefix}loopback{next(_ids)}"


@dataclass(eq=False)
class OpenAIServer(LoopbackServer):
    """One loopback server. Use as a context manager, or ``start()``/``stop()``."""

    models: list[str] = field(default_factory=lambda: ["test-model"])
    reply: str | None = None
    """Fixed reply text; by default the server echoes the last user message."""
    finish_reason: str | None = None
    """Every chat answer's finish reason, if set (``content_filter``: as a provider's output filter ends one)."""
    stream_chunks: int | None = None
    """Split a streamed reply into exactly this many content chunks."""
    stream_delay: float = 0.0
    """Seconds between streamed chunks."""
    embedding_dim: int = 8
    name: str = "loopback"
    disabled: set[str] = field(default_factory=set)
    """Endpoint families (see ``FAMILIES``) answered with 404, as by a server without them."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.disabled = set(self.disabled)
        unknown = self.disabled - FAMILIES
        if unknown:
            raise ValueError(f"unknown endpoint families {sorted(unknown)}; known: {sorted(FAMILIES)}")
        self.stored_files: dict[str, tuple[dict[str, Any], bytes]] = {}
        """Uploaded files by id: the FileObject JSON and the content."""
        self.batches: dict[str, dict[str, Any]] = {}
        self.stored_responses: dict[str, StoredResponse] = {}
        """Responses made with ``store`` (the default) by id, with the input items they were made from."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def responses_requests(self) -> list[RecordedRequest]:
        """Every Responses API request: creates, and retrieve, delete, input items and cancel of stored ones."""
        return [r for r in self.requests if re.search(r"/responses(/|$)", r.path)]

    # -- answers -----------------------------------------------------------
    def answer_text(self, body: dict[str, Any]) -> str:
        """The assistant's text: an echo, a tool result acknowledged, or JSON fitting ``response_format``."""
        if self.reply is not None:
            return self.reply
        text = _prompt(body)
        fmt = body.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
        if schema:
            return json.dumps(example(schema, text))
        if fmt.get("type") in ("json_object", "json_schema"):
            return json.dumps({"echo": text})
        return text if _last_message(body).get("role") == "tool" else f"echo: {text}"

    def wants_tool_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The tool call to answer with (``name`` and JSON ``arguments`` fitting its schema), or None for text.

        The tool named by ``tool_choice``, else the first; after a tool result, text, unless
        ``tool_choice`` demands a call: then the first tool not called yet in the conversation.
        """
        tools = [t["function"] for t in body.get("tools") or [] if isinstance(t.get("function"), dict)]
        choice = body.get("tool_choice")
        if not tools or choice == "none":
            return None
        named = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        after_result = _last_message(body).get("role") == "tool"
        if after_result and named is None and choice != "required":
            return None
        called = {
            c.get("function", {}).get("name")
            for m in body.get("messages") or []
            if isinstance(m, dict)
            for c in m.get("tool_calls") or []
        }
        fn = next((t for t in tools if t.get("name") == named), None) if named else None
        if fn is None and after_result:
            fn = next((t for t in tools if t.get("name") not in called), None)
        fn = fn or tools[0]
        arguments = example(fn.get("parameters") or {"type": "object"}, _prompt(body))
        return {"name": fn["name"], "arguments": json.dumps(arguments)}


class _Handler(LoopbackHandler):
    server_state: OpenAIServer
    request_id_prefix = "req_loopback_"

    def route(self, path: str, body: dict[str, Any] | None, fault: Fault | None) -> None:
        for method, pattern, family, handler in ROUTES:
            match = pattern.fullmatch(path)
            if match and method == self.command:
                if handler is not None and family not in self.server_state.disabled:
                    getattr(self, handler)(body or {}, fault, **match.groupdict())
                    return
                break
        self.error(404, f"Invalid URL ({self.command} {path}): not found")

    def error_body(self, status: int, message: str, fault: Fault | None) -> dict[str, Any]:
        kind = fault.error_type if fault is not None else "invalid_request_error"
        code = fault.code if fault is not None else None
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def _known_model(self, body: dict[str, Any], required: bool = True) -> bool:
        """Whether ``model`` is served (answering 404, as OpenAI does, when not); absent is fine unless required."""
        model = body.get("model")
        if model is None and not required or model in self.server_state.models:
            return True
        self.error(
            404,
            f"The model `{model}` does not exist",
            Fault(error_type="invalid_request_error", code="model_not_found"),
        )
        return False

    def _missing(self, body: dict[str, Any], *names: str) -> bool:
        """Answer 400 when a required parameter is absent, as OpenAI does."""
        for name in names:
            if body.get(name) in (None, "", []):
                self.error(
                    400,
                    f"Missing required parameter: '{name}'.",
                    Fault(error_type="invalid_request_error", code="missing_required_parameter"),
                )
                return True
        return False

    # -- models --------------------------------------------------------------
    def _list_models(self, body: dict[str, Any], fault: Fault | None) -> None:
        self.json(200, {"object": "list", "data": [_model(m) for m in self.server_state.models]})

    def _retrieve_model(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        if self._known_model({"model": ident}):
            self.json(200, _model(ident))

    # -- chat ----------------------------------------------------------------
    def _chat(self, body: dict[str, Any], fault: Fault | None) -> None:
        state = self.server_state
        if not self._known_model(body):
            return
        if not body.get("messages"):
            self.error(
                400,
                "'messages' is a required property",
                Fault(error_type="invalid_request_error", code="invalid_request"),
            )
            return
        model = body["model"]
        tool = state.wants_tool_call(body)
        text = None if tool else state.answer_text(body)
        usage = _usage(body, text or json.dumps(tool))
        text, cut_short = _limited(text, body.get("max_completion_tokens", body.get("max_tokens")))
        finish = state.finish_reason or ("tool_calls" if tool else "length" if cut_short else "stop")
        if body.get("stream"):
            self._stream_chat(body, model, text, tool, finish, usage, fault)
            return
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tool:
            message["tool_calls"] = [{"id": "call_1", "type": "function", "function": tool}]
        self.json(
            200,
            {
                "id": "chatcmpl-loopback",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": usage,
            },
        )

    def _stream_chat(
        self,
        body: dict[str, Any],
        model: str,
        text: str | None,
        tool: dict[str, Any] | None,
        finish: str,
        usage: dict[str, int],
        fault: Fault | None,
    ) -> None:
        """Content in pieces; a tool call as OpenAI streams one: id, name and empty arguments first, then the
        arguments in pieces."""
        base = {
            "id": "chatcmpl-loopback",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        cut = self._cutter(body, tool)
        if tool:
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": tool["name"], "arguments": ""},
                        }
                    ]
                }
            )
            deltas.extend(
                {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in cut(tool["arguments"])
            )
        else:
            deltas.extend({"content": piece} for piece in cut(text or ""))
        events = [{**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]} for delta in deltas]
        ending = [{**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}]
        self._sse(body, events, ending, {**base, "choices": [], "usage": usage}, fault)

    def _cutter(self, body: dict[str, Any], tool: dict[str, Any] | None) -> Callable[[str], list[str]]:
        """How a streamed answer is cut, alike on both APIs: tool arguments and JSON in a few even pieces (so
        a partial parser sees them grow), prose a word a piece; exactly ``stream_chunks`` pieces when set."""
        chunks = self.server_state.stream_chunks
        if tool:
            return lambda text: split_even(text, chunks or 3)
        if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
            return lambda text: split_even(text, chunks or 4)
        return lambda text: pieces(text, chunks)

    def _sse(
        self,
        body: dict[str, Any],
        events: list[dict[str, Any]],
        ending: list[dict[str, Any]],
        usage: dict[str, Any],
        fault: Fault | None,
    ) -> None:
        """Chat and legacy completions' SSE: data-only events, then the usage event when
        ``stream_options.include_usage`` asks, and ``[DONE]``."""
        closing = [_data(usage)] if (body.get("stream_options") or {}).get("include_usage") else []
        self._stream([_data(e) for e in events], [_data(e) for e in ending], [*closing, b"data: [DONE]\n\n"], fault)

    def _stream(self, frames: list[bytes], ending: list[bytes], closing: list[bytes], fault: Fault | None) -> None:
        """An SSE stream: ``frames`` (cut by ``cut_after``, paced by ``stream_delay``), ``ending``, ``closing``.
        An ``empty`` fault sends only ``closing``: a clean end before any event."""
        state = self.server_state
        if fault is not None and fault.empty:
            frames = ending = []
        if fault is not None and fault.no_done:
            closing = [frame for frame in closing if b"[DONE]" not in frame]
        self.start_chunked("text/event-stream")
        try:
            for i, frame in enumerate(frames):
                if self._stopped_at(i, fault):
                    return
                self.chunk(frame)
                if state.stream_delay:
                    state.wait(state.stream_delay)
            for frame in [*ending, *closing]:
                self.chunk(frame)
            self.chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _stopped_at(self, i: int, fault: Fault | None) -> bool:
        """Did a fault stop the stream before its ``i``-th frame: cut, ended cleanly, or stalled?"""
        if fault is None:
            return False
        if fault.cut_after is not None and i >= fault.cut_after:
            self.drop()
            return True
        if fault.end_after is not None and i >= fault.end_after:
            self.chunk(b"")
            return True
        if fault.stall_after is not None and i >= fault.stall_after:
            self.idle(HANG_LIMIT)
            self.close_connection = True
            return True
        return False

    # -- legacy completions --------------------------------------------------
    def _completions(self, body: dict[str, Any], fault: Fault | None) -> None:
        """``echo: <prompt>`` per prompt (``echo=true`` puts the prompt first); ``max_tokens`` counts words."""
        if not self._known_model(body):
            return
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else [str(p) for p in prompt or [""]]
        limit = body.get("max_tokens")
        texts, finishes = [], []
        for p in prompts:
            text, cut_short = _limited(
                self.server_state.reply if self.server_state.reply is not None else f"echo: {p}", limit
            )
            texts.append(p + (text or "") if body.get("echo") else text or "")
            finishes.append("length" if cut_short else "stop")
        prompt_tokens = sum(len(p.split()) for p in prompts)
        completion_tokens = sum(len(t.split()) for t in texts)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        base = {"id": "cmpl-loopback", "object": "text_completion", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            self.json(
                200,
                {
                    **base,
                    "usage": usage,
                    "choices": [
                        {"index": i, "text": t, "finish_reason": f, "logprobs": None}
                        for i, (t, f) in enumerate(zip(texts, finishes))
                    ],
                },
            )
            return
        events = [
            {**base, "choices": [{"index": i, "text": piece, "finish_reason": None, "logprobs": None}]}
            for i, t in enumerate(texts)
            for piece in pieces(t, self.server_state.stream_chunks)
        ]
        ending = [
            {**base, "choices": [{"index": i, "text": "", "finish_reason": f, "logprobs": None}]}
            for i, f in enumerate(finishes)
        ]
        self._sse(body, events, ending, {**base, "choices": [], "usage": usage}, fault)

    # -- responses (stateful: a stored response is what a router pins to one backend) ------------------
    def _create_response(self, body: dict[str, Any], fault: Fault | None) -> None:
        """Answered as chat is (see ``_responses.chat_view``), after the stored conversation a
        ``previous_response_id`` names; kept unless ``store`` is false. ``background`` (not streamed) answers
        ``queued`` and is done by the first retrieve, so it can be cancelled before that."""
        state = self.server_state
        if body.get("prompt") and not body.get("model"):  # a stored prompt brings its model (and may hold the input)
            body = {**body, "model": state.models[0], "input": body.get("input") or "from a stored prompt"}
        if self._missing(body, "input") or not self._known_model(body):
            return
        history: list[dict[str, Any]] = []
        if (previous := body.get("previous_response_id")) is not None:
            if (earlier := state.stored_responses.get(previous)) is None:
                self._refuse(
                    404,
                    f"Previous response with id '{previous}' not found.",
                    "previous_response_id",
                    "previous_response_not_found",
                )
                return
            history = earlier.conversation()
        store = body.get("store") is not False
        background = bool(body.get("background")) and not body.get("stream")
        if background and not store:
            self._refuse(400, "Background mode requires store=true.", "background", "invalid_value")
            return
        items = [*history, *input_items(body["input"], _new_id)]
        view = chat_view(body, items)
        tool = state.wants_tool_call(view)
        text, cut_short = _limited(None if tool else state.answer_text(view), body.get("max_output_tokens"))
        start = shell(body, response_id=_new_id("resp_"), created_at=int(time.time()))
        response = finished(
            start,
            text=text,
            tool=tool,
            chat_usage=_usage(view, text or json.dumps(tool)),
            cut_short=cut_short,
            new_id=_new_id,
        )
        if background:
            state.stored_responses[start["id"]] = StoredResponse(
                {**start, "status": "queued"}, items, finished=response
            )
            response = state.stored_responses[start["id"]].response
        elif store:
            state.stored_responses[start["id"]] = StoredResponse(response, items)
        if not body.get("stream"):
            self.json(200, response)
            return
        frames = [sse(event) for event in stream_events(response, self._cutter(view, tool))]
        self._stream(frames[:-1], frames[-1:], [], fault)

    def _retrieve_response(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        if stored := self._stored_response(ident):
            if stored.finished is not None:
                stored.response, stored.finished = stored.finished, None
            self.json(200, stored.response)

    def _delete_response(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        if self._stored_response(ident):
            del self.server_state.stored_responses[ident]
            self.json(200, {"id": ident, "object": "response", "deleted": True})

    def _response_input_items(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        if stored := self._stored_response(ident):
            self.json(200, _page(stored.items, self.query))

    def _cancel_response(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        """Only a background response can be cancelled; once it has finished, cancelling returns it as it is."""
        if (stored := self._stored_response(ident)) is None:
            return
        if not stored.response.get("background"):
            self._refuse(400, "Cannot cancel a synchronous response.")
            return
        if stored.finished is not None:
            stored.response, stored.finished = {**stored.response, "status": "cancelled"}, None
        self.json(200, stored.response)

    def _stored_response(self, ident: str) -> StoredResponse | None:
        stored = self.server_state.stored_responses.get(ident)
        if stored is None:
            self._refuse(404, f"Response with id '{ident}' not found.")
        return stored

    def _refuse(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        """An error naming the parameter at fault, as OpenAI's Responses API does (a ``Fault`` names none)."""
        self.json(
            status, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
        )

    # -- embeddings ----------------------------------------------------------
    def _embeddings(self, body: dict[str, Any], fault: Fault | None) -> None:
        state = self.server_state
        if not self._known_model(body):
            return
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dim = body.get("dimensions") or state.embedding_dim
        vectors: list[Any] = [vector(str(x), dim) for x in items]
        if body.get("encoding_format") == "base64":  # little-endian float32, as OpenAI sends them
            vectors = [base64.b64encode(array.array("f", v).tobytes()).decode() for v in vectors]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        tokens = sum(len(str(x).split()) for x in items)
        self.json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # -- audio ---------------------------------------------------------------
    def _audio(self, body: dict[str, Any], fault: Fault | None, task: str) -> None:
        """``transcribed <filename> (<n> bytes)`` (or ``translated ...``) in the asked ``response_format``."""
        upload = body.get("file")
        if not isinstance(upload, FormFile):
            self.error(
                400,
                "Missing required parameter: 'file'.",
                Fault(error_type="invalid_request_error", code="missing_required_parameter"),
            )
            return
        if self._missing(body, "model") or not self._known_model(body):
            return
        done, verb = _AUDIO_TASKS[task]
        text = f"{done} {upload.filename} ({len(upload.data)} bytes)"
        fmt = body.get("response_format") or "json"
        if str(body.get("stream", "")).lower() == "true" and task == "transcriptions":
            self._stream_transcript(text, fault)
        elif fmt == "text":
            self.raw(200, text.encode(), "text/plain; charset=utf-8")
        elif fmt in ("srt", "vtt"):
            stamp = "00:00:00,000 --> 00:00:01,000" if fmt == "srt" else "00:00:00.000 --> 00:00:01.000"
            cue = f"1\n{stamp}\n{text}\n" if fmt == "srt" else f"WEBVTT\n\n{stamp}\n{text}\n"
            self.raw(200, cue.encode(), "text/plain; charset=utf-8")
        elif fmt == "verbose_json":
            segment = {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": 1.0,
                "text": text,
                "tokens": [1, 2, 3],
                "temperature": 0.0,
                "avg_logprob": -0.1,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
            self.json(
                200,
                {
                    "task": verb,
                    "language": "english",
                    "duration": 1.0,
                    "text": text,
                    "segments": [segment],
                    "usage": {"type": "duration", "seconds": 1.0},
                },
            )
        elif fmt == "json":
            self.json(
                200,
                {"text": text, "usage": {"type": "duration", "seconds": 1.0}}
                if task == "transcriptions"
                else {"text": text},
            )
        else:
            self.error(
                400,
                f"Invalid value for 'response_format': '{fmt}'.",
                Fault(error_type="invalid_request_error", code="invalid_value"),
            )

    def _stream_transcript(self, text: str, fault: Fault | None) -> None:
        """A streamed transcription as OpenAI sends one: ``transcript.text.delta`` events, then
        ``transcript.text.done`` with the whole text, and no ``[DONE]``."""
        frames = [_data({"type": "transcript.text.delta", "delta": piece}) for piece in pieces(text, None)]
        done = {
            "type": "transcript.text.done",
            "text": text,
            "usage": {"type": "tokens", "input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
        }
        self._stream(frames, [_data(done)], [], fault)

    # -- moderations ---------------------------------------------------------
    def _moderations(self, body: dict[str, Any], fault: Fault | None) -> None:
        """Nothing is flagged; every category the SDK's Moderation type has is filled."""
        if self._missing(body, "input") or not self._known_model(body, required=False):
            return
        inputs = body["input"]
        count = 1 if isinstance(inputs, str) or inputs and isinstance(inputs[0], dict) else len(inputs)
        result = {
            "flagged": False,
            "categories": dict.fromkeys(_MODERATION_CATEGORIES, False),
            "category_scores": dict.fromkeys(_MODERATION_CATEGORIES, 0.0001),
            "category_applied_input_types": {c: ["text"] for c in _MODERATION_CATEGORIES},
        }
        self.json(
            200,
            {
                "id": f"modr-loopback{next(_ids)}",
                "model": body.get("model") or "omni-moderation-latest",
                "results": [result] * count,
            },
        )

    # -- images --------------------------------------------------------------
    def _images(self, body: dict[str, Any], fault: Fault | None) -> None:
        """``n`` tiny PNGs, as ``b64_json`` (the default) or as URLs served by this server."""
        if self._missing(body, "prompt") or not self._known_model(body, required=False):
            return
        as_url = body.get("response_format") == "url"
        data = [
            {
                "revised_prompt": body["prompt"],
                **(
                    {"url": f"http://127.0.0.1:{self.server_state.port}/v1/images/loopback{i}.png"}
                    if as_url
                    else {"b64_json": base64.b64encode(image_bytes()).decode()}
                ),
            }
            for i in range(int(body.get("n") or 1))
        ]
        self.json(
            200, {"created": int(time.time()), "data": data, **({"size": body["size"]} if "size" in body else {})}
        )

    def _image_file(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        self.raw(200, image_bytes(), "image/png")

    # -- files (stateful: what a router pins to one backend) -----------------
    def _create_file(self, body: dict[str, Any], fault: Fault | None) -> None:
        upload = body.get("file")
        if not isinstance(upload, FormFile):
            self.error(
                400,
                "Missing required parameter: 'file'.",
                Fault(error_type="invalid_request_error", code="missing_required_parameter"),
            )
            return
        if self._missing(body, "purpose"):
            return
        ident = f"file-loopback{next(_ids)}"
        meta = {
            "id": ident,
            "object": "file",
            "bytes": len(upload.data),
            "created_at": int(time.time()),
            "filename": upload.filename or "upload",
            "purpose": body["purpose"],
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self.server_state.stored_files[ident] = (meta, upload.data)
        self.json(200, meta)

    def _list_files(self, body: dict[str, Any], fault: Fault | None) -> None:
        metas = [
            meta
            for meta, _ in self.server_state.stored_files.values()
            if self.query.get("purpose") in (None, meta["purpose"])
        ]
        self.json(200, _page(metas, self.query))

    def _stored_file(self, ident: str) -> tuple[dict[str, Any], bytes] | None:
        stored = self.server_state.stored_files.get(ident)
        if stored is None:
            self.error(404, f"No such File object: {ident}", Fault(error_type="invalid_request_error"))
        return stored

    def _retrieve_file(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        if stored := self._stored_file(ident):
            self.json(200, stored[0])

    def _file_content(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        if stored := self._stored_file(ident):
            self.raw(200, stored[1], "application/octet-stream")

    def _delete_file(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        if self._stored_file(ident):
            del self.server_state.stored_files[ident]
            self.json(200, {"id": ident, "object": "file", "deleted": True})

    # -- batches -------------------------------------------------------------
    def _create_batch(self, body: dict[str, Any], fault: Fault | None) -> None:
        """A batch of a file uploaded here (its lines are the request count); it stays ``validating``."""
        if self._missing(body, "input_file_id", "endpoint", "completion_window"):
            return
        stored = self._stored_file(body["input_file_id"])
        if stored is None:
            return
        lines = len([line for line in stored[1].splitlines() if line.strip()])
        now = int(time.time())
        batch = {
            "id": f"batch_loopback{next(_ids)}",
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "created_at": now,
            "expires_at": now + 86400,
            "metadata": body.get("metadata"),
            "errors": None,
            "output_file_id": None,
            "error_file_id": None,
            "request_counts": {"total": lines, "completed": 0, "failed": 0},
        }
        self.server_state.batches[batch["id"]] = batch
        self.json(200, batch)

    # -- admin (OpenAI's organization endpoints) ---------------------------------
    def _list_admin_keys(self, body: dict[str, Any], fault: Fault | None) -> None:
        """An empty page; the admin key a request carried is in ``requests`` for tests to read."""
        self.json(200, {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False})

    def _list_batches(self, body: dict[str, Any], fault: Fault | None) -> None:
        self.json(200, _page(list(self.server_state.batches.values()), self.query))

    def _retrieve_batch(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        if batch := self._batch(ident):
            self.json(200, batch)

    def _cancel_batch(self, body: dict[str, Any], fault: Fault | None, ident: str) -> None:
        if batch := self._batch(ident):
            now = int(time.time())
            batch.update(status="cancelled", cancelling_at=now, cancelled_at=now)
            self.json(200, batch)

    def _batch(self, ident: str) -> dict[str, Any] | None:
        batch = self.server_state.batches.get(ident)
        if batch is None:
            self.error(404, f"No batch found with id '{ident}'.", Fault(error_type="invalid_request_error"))
        return batch


_AUDIO_TASKS = {"transcriptions": ("transcribed", "transcribe"), "translations": ("translated", "translate")}

_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """One cursor page as OpenAI lists send them: newest first unless ``order=asc``, ``after`` an id, ``limit``."""
    items = items if query.get("order") == "asc" else items[::-1]
    ids = [item["id"] for item in items]
    if query.get("after") in ids:
        items = items[ids.index(query["after"]) + 1 :]
    limit = int(query.get("limit") or 10000)
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


def _limited(text: str | None, limit: int | None) -> tuple[str | None, bool]:
    """``text`` cut to ``limit`` words (the server's tokens), and whether it was cut."""
    if text is None or limit is None or limit >= len(text.split()):
        return text, False
    return " ".join(text.split()[:limit]), True


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _last_message(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    return messages[-1] if messages and isinstance(messages[-1], dict) else {}


def _prompt(body: dict[str, Any]) -> str:
    """What answers echo: the last message's text; a tool result reads ``tool said: <content>``."""
    last = _last_message(body)
    text = _text_of(last.get("content"))
    return f"tool said: {text}" if last.get("role") == "tool" else text


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content or "")


def _usage(body: dict[str, Any], answer: str) -> dict[str, int]:
    prompt = sum(len(_text_of(m.get("content")).split()) for m in body.get("messages") or [])
    completion = len(answer.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "loopback"}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--reply", default=None)
    parser.add_argument("--stream-chunks", type=int, default=None)
    parser.add_argument(
        "--disable",
        action="append",
        default=[],
        choices=sorted(FAMILIES),
        help="answer this endpoint family with 404 (repeatable)",
    )
    args = parser.parse_args()
    server = OpenAIServer(
        models=args.model or ["test-model"],
        reply=args.reply,
        stream_chunks=args.stream_chunks,
        disabled=set(args.disable),
    )
    server.serve_until_interrupted(args.port)


OpenAIServer.handler = _Handler


if __name__ == "__main__":
    main()
