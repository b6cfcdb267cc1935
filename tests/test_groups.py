"""Group invalidation: tags and literal key prefixes, in every level and every process's L1."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pytest

from mlcache import MultiLevelCache

MISSING = object()


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the timeout"
        await asyncio.sleep(0.002)


async def everywhere(cache: MultiLevelCache, direct: Any, key: str) -> list[bool]:
    """[in L1, in L2, in L3]"""
    return [cache.l1_cache.lru.peek(key, MISSING) is not MISSING, await direct.in_redis(key),
            await direct.row(key) is not None]


async def test_invalidate_tag_reaches_every_level_and_other_processes(
        cache: MultiLevelCache, other_cache: MultiLevelCache, direct: Any) -> None:
    await cache.put("p:1", 1, tags=["product", "featured"])
    await cache.put_many({"p:2": 2, "p:3": 3}, tags=["product"])
    await cache.put("u:1", "user")
    assert await other_cache.get_many(["p:1", "p:2", "u:1"]) == {"p:1": 1, "p:2": 2, "u:1": "user"}
    assert 0 < await direct.redis.pttl(f"{direct.ns}!tag:product") <= 3_600_000
    assert await cache.invalidate_tag("product") == 3
    for key in ("p:1", "p:2", "p:3"):
        assert await everywhere(cache, direct, key) == [False, False, False]
    await until(lambda: other_cache.l1_cache.lru.peek("p:1", MISSING) is MISSING
                and other_cache.l1_cache.lru.peek("p:2", MISSING) is MISSING)
    assert await other_cache.get("u:1") == "user" and await everywhere(cache, direct, "u:1") == [True, True, True]
    # The tag's index forgot what it invalidated; "featured" still names p:1 (now gone).
    assert await cache.invalidate_tag("product") == 0
    assert await cache.invalidate_tag("featured") == 1


async def test_a_tag_set_lives_as_long_as_its_longest_lived_key(cache: MultiLevelCache, direct: Any) -> None:
    await cache.put("a", 1, ttl_seconds=100, tags=["t"])
    await cache.put("b", 1, ttl_seconds=10, tags=["t"])
    assert 99_000 < await direct.redis.pttl(f"{direct.ns}!tag:t") <= 100_000
    await cache.put("c", 1, ttl_seconds=None, tags=["t"])
    assert await direct.redis.pttl(f"{direct.ns}!tag:t") == -1


async def test_invalidate_prefix_is_literal(cache: MultiLevelCache, other_cache: MultiLevelCache,
                                            direct: Any) -> None:
    keys = {"a*b:1": 1, "a*b:2": 2, "axb:3": 3, "50%_off:1": 4, "50xyoff:2": 5, "a*b": 6}
    await cache.put_many(keys)
    await asyncio.sleep(0.05)                    # the put's own announcement has landed
    await other_cache.get_many(list(keys))
    assert await cache.invalidate_prefix("a*b:") is True
    assert await cache.invalidate_prefix("50%_") is True
    gone, kept = ["a*b:1", "a*b:2", "50%_off:1"], ["axb:3", "50xyoff:2", "a*b"]
    for key in gone:
        assert await everywhere(cache, direct, key) == [False, False, False], key
    for key in kept:
        assert await everywhere(cache, direct, key) == [True, True, True], key
    await until(lambda: all(other_cache.l1_cache.lru.peek(k, MISSING) is MISSING for k in gone))
    assert all(other_cache.l1_cache.lru.peek(k, MISSING) is not MISSING for k in kept)


async def test_tags_on_an_l1_only_cache() -> None:
    async with MultiLevelCache({"redis_url": None, "postgres_url": None}) as c:
        await c.put("x", 1, tags=["t"])
        await c.put_many({"y": 2}, tags=["t"], level="L1")
        await c.put("z", 3)
        assert await c.invalidate_tag("t") == 2
        assert await c.get("x") is None and await c.get("y") is None and await c.get("z") == 3
        await c.put("q:1", 1)
        assert await c.invalidate_prefix("q:") is True and await c.get("q:1") is None


@pytest.mark.parametrize("call, error", [
    (lambda c: c.put("k", 1, tags="one"), TypeError),
    (lambda c: c.put("k", 1, tags=[""]), ValueError),
    (lambda c: c.put("k", 1, tags=[1]), TypeError),
    (lambda c: c.put_many({"k": 1}, tags=["a\x00b"]), ValueError),
    (lambda c: c.invalidate_tag(""), ValueError),
    (lambda c: c.invalidate_prefix(b"k"), TypeError),
    (lambda c: c.invalidate_prefix(""), ValueError),
])
async def test_bad_tags_and_prefixes_are_refused_before_any_level(
        cache: MultiLevelCache, direct: Any, call: Any, error: type) -> None:
    with pytest.raises(error) as info:
        await call(cache)
    assert "\x00" not in str(info.value)
    assert not await direct.in_redis("k") and await direct.row("k") is None
