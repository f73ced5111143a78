"""The router's in-memory state store: what it keeps, for how long, and how much."""

from __future__ import annotations

import pytest

from turnout.state import MemoryState, _memory


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(_memory, "now", lambda: now[0])
    return now


async def test_a_value_is_kept_until_it_expires(clock: list[float]) -> None:
    state = MemoryState()
    await state.put("a", {"backend": "x"}, ttl=60)
    clock[0] += 59
    assert await state.get("a") == {"backend": "x"}
    clock[0] += 2
    assert await state.get("a") is None


async def test_it_holds_at_most_max_items_dropping_the_oldest_written(clock: list[float]) -> None:
    state = MemoryState(max_items=3)
    for key in "abcd":
        await state.put(key, {"k": key}, ttl=60)
    assert [await state.get(k) for k in "abcd"] == [None, {"k": "b"}, {"k": "c"}, {"k": "d"}]
    await state.put("b", {"k": "b2"}, ttl=60)  # rewritten: now the newest
    await state.put("e", {"k": "e"}, ttl=60)
    assert await state.get("c") is None and await state.get("b") == {"k": "b2"}


async def test_expired_values_are_dropped_when_new_ones_arrive(clock: list[float]) -> None:
    state = MemoryState()
    for i in range(100):
        await state.put(f"old{i}", {}, ttl=1)
    clock[0] += 5
    await state.put("new", {}, ttl=1)
    assert len(state._items) == 1 and "items=1" in repr(state)


async def test_delete_says_whether_there_was_anything(clock: list[float]) -> None:
    state = MemoryState()
    await state.put("a", {}, ttl=10)
    assert await state.delete("a") is True
    assert await state.delete("a") is False
