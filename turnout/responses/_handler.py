"""The Responses API: passed through where a backend has it, bridged to chat where it does not, and
what is kept so a follow-up finds its conversation.

Where a request goes. The candidates are the model's backends in priority
order, as for chat. A backend with the Responses API gets the request as the
caller's SDK built it. One without it gets it through the bridge
(``responses.bridge``), as a chat completion. One that may have it (unknown)
is asked natively; if it answers that it lacks the endpoint, it is bridged in
the same attempt, and remembered as lacking it. What a chat backend cannot
do (built-in tools, ``background``) is refused before anything is sent, so
such a request goes only to backends with the Responses API.

State: a map, not ids that encode the backend. The router keeps, in its
state store, which backend made each response (``response:<id>``). Ids stay
the provider's own, so they match its dashboard and logs, and pass-through
answers are never rewritten. The same store must hold bridged conversations
anyway.
- A response made natively stays at its backend. Follow-ups
  (``previous_response_id``), ``retrieve``, ``delete``, ``input_items`` and
  ``cancel`` go to that backend, never failed over.
- A bridged backend keeps nothing, so the router keeps the conversation
  (bounded and expiring, ``responses_ttl``). A follow-up replays it through
  the bridge to any chat backend, with failover. ``retrieve``, ``delete`` and
  ``input_items`` are answered from the store. A deleted response is
  remembered as deleted: asking for it again is a 404.
- An id the store does not know (expired, or made by another process) goes
  to the stateful backend, like other stateful endpoints.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Awaitable, Callable, Mapping, Optional, Protocol, Sequence

import httpx2
import openai

from .._errors import refused, status_error
from ..adapters import Adapter, Call, wire_response
from ..state import State
from . import bridge

__all__ = ["Responses", "Routing"]

Op = Callable[[Call], Awaitable[httpx2.Response]]
Served = tuple[Optional[str], httpx2.Response]


# -- the router as this family uses it: its public API, and nothing else -------------------
class Runner(Protocol):
    """One backend as the router's walk calls it."""

    @property
    def name(self) -> str: ...

    @property
    def adapter(self) -> Adapter: ...

    def has(self, flag: str, model: str) -> bool | None: ...

    def learn(self, flags: tuple[str, ...], model: str) -> None: ...

    def sender(self, stream: bool) -> Op: ...

    async def serve(self, op: Op, arg: Call) -> httpx2.Response: ...


class Candidate(Protocol):
    """A backend for a request's model, and its name for that model."""

    @property
    def runner(self) -> Runner: ...

    @property
    def model(self) -> str: ...


class Choice(Protocol):
    @property
    def candidates(self) -> Sequence[Candidate]: ...


class Select(Protocol):
    """The router's selection: a model's candidates, those that can serve a request, their order."""

    def choice_for(self, model: str) -> Choice: ...

    def capable(self, choice: Any, kind: str, params: Mapping[str, Any]) -> Sequence[Candidate]: ...

    def order(self, candidates: Sequence[Any]) -> Sequence[Candidate]: ...

    def not_found(self, model: str) -> openai.NotFoundError: ...


class Routing(Protocol):
    """What Responses asks of the router (``turnout.router.Router`` has it): its state, its selection, its
    walk over candidates, its stateful backend, and a backend by name."""

    @property
    def state(self) -> State: ...

    @property
    def select(self) -> Select: ...

    @property
    def stateful(self) -> Runner: ...

    def runner(self, name: str) -> Runner | None: ...

    async def walk(
        self,
        plan: Sequence[Any],
        call: Call,
        op_for: Callable[[Any, Call], tuple[Op, Call]] | None = None,
        skipped: dict[str, BaseException] | None = None,
    ) -> Served: ...


class Responses:
    """The Responses endpoints of one router, and the state they keep."""

    def __init__(self, router: Routing, ttl: float) -> None:
        self.router = router
        self.state = router.state
        self.ttl = ttl

    # -- create --------------------------------------------------------------------
    async def create(self, call: Call) -> Served:
        previous = call.body.get("previous_response_id")
        held = await self._held(previous) if isinstance(previous, str) and previous else None
        if previous and not (held and held.get("bridged")):  # the conversation lives at one backend
            runner = self._holder(held, previous)
            return runner.name, await runner.serve(self._native(runner, call), self._for(runner, call))
        replay = held is not None
        history = _conversation(held) if held else []
        chat_body, refusal = _chat_body(call, history)
        plan, left_out = self._plan(call, chat_body, replay=replay)
        if not plan:
            raise refusal or self.router.select.not_found(str(call.body.get("model")))
        skipped: dict[str, BaseException] = {c.runner.name: refusal for c in left_out} if refusal else {}
        return await self.router.walk(
            plan, call, lambda c, call: self._op(c, call, chat_body, history, replay), skipped
        )

    def _plan(
        self, call: Call, chat_body: dict[str, Any] | None, *, replay: bool
    ) -> tuple[list[Candidate], list[Candidate]]:
        """Each candidate once, in priority order: natively when it may have the Responses API (never for a
        replayed conversation, which only the router holds), else bridged when it can serve the chat body;
        and the candidates that can do neither."""
        model = call.requested_model()
        select = self.router.select
        choice = select.choice_for(model)
        bridgeable: dict[int, Candidate] = {}
        if chat_body is not None and choice.candidates:
            kind = "chat+stream" if call.stream else "chat"
            try:
                bridgeable = {id(c.runner): c for c in select.capable(choice, kind, chat_body)}
            except openai.BadRequestError:  # no backend can serve it as chat: only natively, if at all
                if replay:
                    raise
        plan: list[Candidate] = []
        left_out: list[Candidate] = []
        for candidate in select.order(choice.candidates):
            if not replay and candidate.runner.has("responses", candidate.model) is not False:
                plan.append(candidate)
            elif id(candidate.runner) in bridgeable:
                plan.append(bridgeable[id(candidate.runner)])
            else:
                left_out.append(candidate)
        return plan, left_out

    def _op(
        self, candidate: Candidate, call: Call, chat_body: dict[str, Any] | None, history: list[Any], replay: bool
    ) -> tuple[Op, Call]:
        runner, model = candidate.runner, candidate.model
        call = call.renamed(model)
        flag = runner.has("responses", model)
        if chat_body is None:
            return self._native(runner, call), call
        if replay or flag is False:
            return self._bridged(runner, model, chat_body, history), call
        if flag is None:
            return self._native_else_bridged(runner, model, chat_body, history, call), call
        return self._native(runner, call), call

    # -- the two ways to serve it --------------------------------------------------------
    def _native(self, runner: Runner, call: Call) -> Op:
        """The request as built, through the backend's own Responses API; its id is remembered."""
        send = runner.sender(call.stream)

        async def native(call: Call) -> httpx2.Response:
            response = await send(call)
            if call.body.get("store") is not False or call.body.get("background"):
                if not call.stream and not hasattr(response, "_content"):  # with_streaming_response: left unread
                    await _read_left_open(response)
                made = _made_id(response, call.stream)
                if made:
                    await self.state.put(_key(made), {"backend": runner.name}, self.ttl)
            return response

        return native

    def _bridged(self, runner: Runner, model: str, chat_body: dict[str, Any], history: list[Any]) -> Op:
        """The request as a chat completion; the conversation is kept here, for follow-ups."""
        chat_body = {**chat_body, "model": model}
        if "max_tokens" in chat_body and _wants_completion_tokens(runner):
            chat_body["max_completion_tokens"] = chat_body.pop("max_tokens")
        send = runner.sender(bool(chat_body.get("stream")))

        async def bridged(call: Call) -> httpx2.Response:
            response_id = bridge.new_id("resp")
            keep = self._keeper(runner, call, history, response_id)
            chat = await send(bridge.chat_call(call, chat_body))
            if call.stream:
                return bridge.event_stream(chat, call, response_id, keep)
            return await bridge.answer(chat, call, response_id, keep)

        return bridged

    def _native_else_bridged(
        self, runner: Runner, model: str, chat_body: dict[str, Any], history: list[Any], call: Call
    ) -> Op:
        """A backend that may have the Responses API: asked natively, bridged if it says it has not."""
        native = self._native(runner, call)
        bridged = self._bridged(runner, model, chat_body, history)

        async def either(call: Call) -> httpx2.Response:
            try:
                return await native(call)
            except openai.APIStatusError as err:
                if not refused(err):
                    raise
                runner.learn(("responses",), model)
            return await bridged(call)

        return either

    def _keeper(
        self, runner: Runner, call: Call, history: list[Any], response_id: str
    ) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def keep(response: dict[str, Any]) -> None:
            if call.body.get("store") is False:
                return
            # kept as given; made into messages only if a follow-up comes
            await self.state.put(
                _key(response_id),
                {
                    "backend": runner.name,
                    "bridged": True,
                    "history": history,
                    "input": call.body.get("input"),
                    "response": response,
                },
                self.ttl,
            )

        return keep

    # -- stored responses: retrieve, delete, input_items, cancel ---------------------------
    async def held(self, call: Call) -> Served:
        ident, rest = _ident(call.options.url)
        held = await self._held(ident)
        if held and held.get("bridged"):
            return held["backend"], await self._from_store(call, ident, held, rest)
        runner = self._holder(held, ident)
        response = await runner.serve(runner.sender(call.stream), call)
        if call.options.method.lower() == "delete":
            await self._forget(ident)
        return runner.name, response

    async def _from_store(self, call: Call, ident: str, held: Mapping[str, Any], rest: str) -> httpx2.Response:
        method = call.options.method.lower()
        if method == "delete":
            await self._forget(ident)
            body: Any = {"id": ident, "object": "response", "deleted": True}
        elif rest == "input_items":
            body = _page(bridge.input_items(held["input"], ident), _query(call))
        elif rest == "cancel":
            raise status_error(
                openai.BadRequestError,
                400,
                "only background responses can be cancelled; "
                f"response {ident!r} was made by the chat bridge, which does not run in the background",
                code="unsupported_by_backend",
            )
        elif call.stream:
            raise status_error(
                openai.BadRequestError,
                400,
                f"response {ident!r} was made by the chat bridge; it can be retrieved, but not streamed again",
                code="unsupported_by_backend",
            )
        else:
            body = held["response"]
        return wire_response(call, "turnout://router", content=json.dumps(body).encode())

    async def _held(self, ident: str) -> Optional[dict[str, Any]]:
        held = await self.state.get(_key(ident))
        if held and held.get("deleted"):
            raise status_error(openai.NotFoundError, 404, f"response {ident!r} was deleted", code="response_not_found")
        return held

    async def _forget(self, ident: str) -> None:
        """A deleted response stays known as deleted (for ``responses_ttl``), so asking for it again is a 404
        here, not a question to whichever backend gets unknown ids."""
        await self.state.put(_key(ident), {"deleted": True}, self.ttl)

    def _holder(self, held: Optional[Mapping[str, Any]], ident: str) -> Runner:
        """The backend that made a stored response; for an id not in the store, the stateful backend,
        if it can hold responses at all."""
        name = held.get("backend") if held else None
        found = self.router.runner(name) if name else None
        if found is not None:
            return found
        runner = self.router.stateful
        if runner.adapter.capabilities.responses is False:
            raise status_error(
                openai.NotFoundError,
                404,
                f"response {ident!r} is not known here: bridged responses are kept "
                f"{self.ttl:.0f}s in the router's state, and backend {runner.name!r} (the stateful "
                "backend, which gets ids the router does not know) has no Responses API to hold it",
                code="response_not_found",
            )
        return runner

    def _for(self, runner: Runner, call: Call) -> Call:
        """``call`` with the model named as ``runner`` knows it."""
        model = call.body.get("model")
        if isinstance(model, str):
            choice = self.router.select.choice_for(model)
            found = next((c.model for c in choice.candidates if c.runner is runner), None)
            if found:
                return call.renamed(found)
        return call


def _conversation(held: Mapping[str, Any]) -> list[Any]:
    """A bridged response's whole conversation as chat messages: what came before it, its input, its output."""
    return [
        *held["history"],
        *bridge.messages_of(held["input"] or ()),
        *bridge.messages_of(held["response"].get("output") or ()),
    ]


def _chat_body(call: Call, history: list[Any]) -> tuple[dict[str, Any] | None, openai.BadRequestError | None]:
    """The chat body that would bridge ``call``, or why there is none (a bad request: no backend can)."""
    try:
        return bridge.to_chat(call.body, history=history, stream=call.stream), None
    except bridge.Unsupported as err:
        return None, err


def _wants_completion_tokens(runner: Runner) -> bool:
    """OpenAI's own chat API refuses ``max_tokens`` for reasoning models; every other server takes it."""
    return runner.adapter.provider == "openai"


async def _read_left_open(response: httpx2.Response) -> None:
    """Read a body the caller asked to stream to itself (one JSON answer), and leave the response open to it,
    serving what was read."""
    await response.aread()
    response.stream = httpx2.ByteStream(response.content)
    response.is_closed = response.is_stream_consumed = False


def _made_id(response: httpx2.Response, stream: bool) -> str | None:
    """The id of the response a backend just made: in the JSON, or in a stream's first event."""
    try:
        data = json.loads(_first_event(response) or b"null") if stream else json.loads(response.content)
    except ValueError:
        return None
    if isinstance(data, dict) and stream:
        data = data.get("response")
    ident = data.get("id") if isinstance(data, dict) else None
    return ident if isinstance(ident, str) else None


def _first_event(response: httpx2.Response) -> bytes | None:
    """The data of a stream's first event, which the router read before handing it on: its relay keeps it
    as ``first`` (``None`` for a compressed stream)."""
    first = getattr(response.stream, "first", None)
    return first if isinstance(first, bytes) else None


def _key(ident: str) -> str:
    return f"response:{ident}"


def _ident(url: str) -> tuple[str, str]:
    """``/responses/<id>[/<rest>]`` → (id, rest)."""
    tail = url.split("?", 1)[0].split("/responses/", 1)[-1].strip("/")
    ident, _, rest = tail.partition("/")
    return urllib.parse.unquote(ident), rest


def _query(call: Call) -> Mapping[str, Any]:
    params = call.options.params
    return params if isinstance(params, Mapping) else {}


def _page(items: list[dict[str, Any]], query: Mapping[str, Any]) -> dict[str, Any]:
    """A list page as the API sends one: ``order`` (newest first by default), ``after``, ``limit``."""
    ordered = list(items) if query.get("order") == "asc" else list(reversed(items))
    after = query.get("after")
    if after:
        ids = [i.get("id") for i in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    limit = int(query.get("limit") or 20)
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > limit,
    }
