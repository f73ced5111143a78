"""Credentials that ride inside a URL (``https://user:token@host``) never reach a repr, log or report."""

from __future__ import annotations

import re

__all__ = ["redact_url"]

_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#@]*)@")


def redact_url(url: str) -> str:
    """``https://user:****@host/...``; a URL without credentials comes back unchanged."""
    match = _USERINFO.match(url)
    if match is None:
        return url
    user, sep, _ = match.group(2).partition(":")
    userinfo = f"{user}:****" if sep else "****"
    return f"{match.group(1)}{userinfo}@{url[match.end() :]}"
