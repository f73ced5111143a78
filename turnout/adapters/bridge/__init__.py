"""The Responses API over a backend that only has Chat Completions.

A Responses request becomes a Chat Completions request (``_request``); the
answer comes back as the Response object (``_answer``) or, streamed, as the
Responses API's events (``_events``). Pure conversions: which backend gets
the request, and what is kept for a follow-up, is the router's business.
"""
