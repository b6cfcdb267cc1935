"""The backplane: a change on one cache reaches every other cache's L1 over Redis pub/sub.

Two caches in one process stand for two processes here (each has its own L1 and its own
origin id); tests/test_consistency_processes.py does it with real OS processes.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pytest
from faultproxy import FaultProxy

from mlcache import MultiLevelCache

MISSING = object()


async def until(check: Callable[[], bool], timeout: float = 2.0) -> float:
    """Seconds until ``check()`` holds; fails the test after ``timeout``."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"not within {timeout} s")
        await asyncio.sleep(0.001)
    return time.monotonic() - t0


def in_l1(cache: MultiLevelCache, key: str) -> Any:
    return cache.l1_cache.lru.peek(key, MISSING)


async def test_invalidate_and_put_reach_the_other_l1(cache: MultiLevelCache, other_cache: MultiLevelCache) -> None:
    assert cache.backplane is not None and other_cache.backplane is not None
    assert cache.backplane.trusted and other_cache.backplane.trusted
    await cache.put("k", 1)
    assert await other_cache.get("k") == 1 and in_l1(other_cache, "k") == 1
    await cache.invalidate("k")
    await until(lambda: in_l1(other_cache, "k") is MISSING)
    assert await other_cache.get("k", MISSING) is MISSING
    await other_cache.put("k", 2)                 # and the other way round
    await until(lambda: in_l1(cache, "k") is MISSING)
    await cache.put("k", 3)
    await until(lambda: in_l1(other_cache, "k") is MISSING)
    assert await other_cache.get("k") == 3
    # Bulk calls announce every key in one message.
    await cache.put_many({"a": 1, "b": 2})
    assert await other_cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
    bp = cache.backplane
    sent = bp.published
    await cache.invalidate_many(["a", "b"])
    await until(lambda: in_l1(other_cache, "a") is MISSING and in_l1(other_cache, "b") is MISSING)
    await until(lambda: bp.published > sent)
    assert bp.published == sent + 1


async def test_own_messages_are_ignored_and_clear_reaches_everyone(
        cache: MultiLevelCache, other_cache: MultiLevelCache) -> None:
    await cache.put("mine", 1)
    await other_cache.put("theirs", 2)
    await until(lambda: in_l1(cache, "theirs") is MISSING)
    await asyncio.sleep(0.05)                   # its own announcement has come back by now
    assert in_l1(cache, "mine") == 1
    assert await cache.get("theirs") == 2
    await other_cache.clear()
    await until(lambda: len(cache.l1_cache.lru) == 0)


async def test_other_namespaces_are_not_touched(cache_config: dict, namespace: str) -> None:
    async with MultiLevelCache(cache_config) as a, \
            MultiLevelCache({**cache_config, "key_prefix": namespace + "x"}) as b:
        await b.put("k", "b's")
        await a.put("k", "a's")
        await a.invalidate("k")
        await asyncio.sleep(0.1)
        assert in_l1(b, "k") == "b's"


async def test_backplane_off_and_without_redis(cache_config: dict) -> None:
    async with MultiLevelCache({**cache_config, "backplane": False}) as c:
        assert c.backplane is None
        assert (await c.get_comprehensive_stats())["backplane"] == {"enabled": False}
    async with MultiLevelCache({**cache_config, "redis_url": None}) as c:
        assert c.backplane is None


async def test_a_cut_subscription_flushes_l1_and_nothing_stale_is_served_after_it_heals(
        redis_url: str, cache_config: dict) -> None:
    proxy = await FaultProxy.in_front_of(redis_url)
    # The reader reaches Redis through the proxy; the writer directly.
    reader_config = {**cache_config, "redis_url": f"redis://127.0.0.1:{proxy.port}/0",
                     "l2": {**cache_config["l2"], "read_timeout": 0.05, "write_timeout": 0.1}}
    try:
        async with MultiLevelCache(reader_config) as reader, MultiLevelCache(cache_config) as writer:
            bp = reader.backplane
            assert bp is not None and bp.trusted
            await writer.put("k", "old", ttl_seconds=60)
            assert await reader.get("k") == "old" and in_l1(reader, "k") == "old"
            await proxy.refuse()
            await until(lambda: not bp.trusted, 5.0)
            assert in_l1(reader, "k") is MISSING          # flushed on the drop
            # Deaf now: L1 still works, but nothing in it lives longer than UNTRUSTED_TTL.
            assert await reader.get("k") == "old"
            assert reader.l1_cache.lru.ttl("k") <= 1.0
            await writer.put("k", "new", ttl_seconds=60)  # the reader cannot hear this
            await proxy.pass_through()
            healed = await until(lambda: bp.trusted, 10.0)
            print(f"backplane: resubscribed {1000 * healed:.0f} ms after the network healed")
            assert in_l1(reader, "k") is MISSING          # flushed again on resubscribing
            assert await reader.get("k") == "new"
            assert reader.l1_cache.lru.ttl("k") > 30      # the cap is lifted
            stats = (await reader.get_comprehensive_stats())["backplane"]
            assert stats["drops"] >= 1 and stats["trusted"]
    finally:
        await proxy.close()


async def test_a_silent_subscription_counts_as_dropped(redis_url: str, cache_config: dict) -> None:
    # A blackholed connection raises nothing: the PINGs going unanswered is what tells.
    proxy = await FaultProxy.in_front_of(redis_url)
    config = {**cache_config, "redis_url": f"redis://127.0.0.1:{proxy.port}/0",
              "l2": {**cache_config["l2"], "read_timeout": 0.05, "write_timeout": 0.1}}
    try:
        async with MultiLevelCache(config) as c:
            assert c.backplane is not None and c.backplane.trusted
            proxy.blackhole()
            t = await until(lambda: not c.backplane.trusted, 5.0)
            print(f"backplane: a blackholed subscription noticed after {1000 * t:.0f} ms")
    finally:
        await proxy.close()


async def test_no_stale_write_back_of_a_read_that_an_invalidation_overtook(
        cache_config: dict, postgres_url: str, direct: Any) -> None:
    """The reader's SELECT runs before the writer's DELETE, but its answer arrives after the
    invalidation completed (and was announced): the old value it read is returned (the get
    began first) but written neither into its L1 nor back into L2."""
    proxy = await FaultProxy.in_front_of(postgres_url)
    host = postgres_url.rsplit("@", 1)[1].split("/")[0]
    slow_l3 = {**cache_config, "postgres_url": postgres_url.replace(host, f"127.0.0.1:{proxy.port}")}
    try:
        async with MultiLevelCache(slow_l3) as reader, MultiLevelCache(cache_config) as writer:
            await writer.put("k", "old", ttl_seconds=60)
            await direct.drop_redis("k")
            await until(lambda: in_l1(reader, "k") is MISSING)
            for _ in range(3):                     # warm: a prepared read, one round trip
                await reader.get("warm", MISSING)
                await asyncio.sleep(0.05)
            proxy.latency(0.3)                     # the reader's L3 round trip: 0.6 s
            t0 = time.monotonic()
            pending = asyncio.create_task(reader.get("k"))
            await asyncio.sleep(0.35)              # its SELECT has run; the answer is on its way
            await writer.invalidate("k")
            assert time.monotonic() - t0 < 0.55    # the invalidation finished first
            assert await pending == "old"
            await asyncio.sleep(0.05)
            assert in_l1(reader, "k") is MISSING and not await direct.in_redis("k")
            proxy.latency(0.0)
            assert await reader.get("k", MISSING) is MISSING
    finally:
        await proxy.close()
