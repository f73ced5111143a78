"""Where the router keeps what outlives one request.

Today: stored Responses conversations and which backend holds a response,
in this process's memory, bounded and expiring.
"""

from ._memory import MemoryState

__all__ = ["MemoryState"]
