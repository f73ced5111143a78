"""The Responses API over a backend that only has Chat Completions.

A Responses request becomes a Chat Completions request (``_request``); the
answer comes back as the Response object (``_answer``) or, streamed, as the
Responses API's events (``_events``). Pure conversions: which backend gets
the request, and what is kept for a follow-up, is the router's business.
"""

from ._answer import input_items, new_id, to_response
from ._request import Unsupported, messages_of, to_chat
from ._wire import answer, chat_call, event_stream

__all__ = [
    "Unsupported",
    "answer",
    "chat_call",
    "event_stream",
    "input_items",
    "messages_of",
    "new_id",
    "to_chat",
    "to_response",
]
