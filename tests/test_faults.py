"""A failing level costs the caller milliseconds, never an exception (unless strict), and is
skipped by its circuit breaker until it answers again.  Real servers, real faults."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mlcache import MultiLevelCache, TierTimeoutError, TierUnavailableError
from mlcache.breaker import CircuitBreaker
from mlcache.localservers import PostgresServer, RedisServer
from mlcache.tiers.redis import TOMBSTONE

pytestmark = pytest.mark.fault


def l2_config(server: RedisServer, **l2: Any) -> dict[str, Any]:
    return {"redis_url": server.url, "postgres_url": None,
            "l2": {"read_timeout": 0.05, "write_timeout": 0.1, "breaker_reset": 0.3, **l2}}


async def timed(coro: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = await coro
    return result, time.perf_counter() - t0


async def test_paused_redis_costs_a_deadline_then_nothing(fresh_redis_server: RedisServer) -> None:
    async with MultiLevelCache(l2_config(fresh_redis_server)) as cache:
        await cache.put_many({f"k{i}": i for i in range(20)})
        await cache.put("hot", "in L1", level="L1")
        cache.l1_cache.lru.clear()
        await cache.put("hot", "in L1", level="L1")
        fresh_redis_server.pause()
        try:
            slow = [await timed(cache.get(f"k{i}")) for i in range(10)]
            assert all(value is None for value, _ in slow)           # fail-open: a miss
            assert cache.l2_cache.breaker.state == "open"
            fast = [await timed(cache.get(f"k{i}")) for i in range(10)]
            hot, hot_time = await timed(cache.get("hot"))
            assert hot == "in L1"
            await cache.put("new", 1)                                # a skipped write, no error
        finally:
            fresh_redis_server.resume()
        stats = await cache.l2_cache.get_stats()
        assert stats["errors"] >= 5 and stats["skipped_by_breaker"] >= 10
        # Bounds far looser than the machine needs, so a busy CI box cannot fail them, yet
        # far below redis-py's default of seconds per call; the real figures are printed.
        worst_slow = max(t for _, t in slow)
        worst_fast = max(t for _, t in fast)
        print(f"\npaused Redis: get {1000 * worst_slow:.1f} ms worst before the breaker opened, "
              f"{1000 * worst_fast:.3f} ms worst after; L1 hit {1000 * hot_time:.3f} ms")
        assert worst_slow < 0.5 and worst_fast < 0.05
        # It comes back by itself: after the open period one probe closes the breaker.
        await asyncio.sleep(0.35)
        deadline = time.monotonic() + 5
        while await cache.get("k3") != 3:
            assert time.monotonic() < deadline, "L2 never came back"
            await asyncio.sleep(0.05)
        assert cache.l2_cache.breaker.state == "closed"


async def test_killed_redis_fails_open(fresh_redis_server: RedisServer) -> None:
    async with MultiLevelCache(l2_config(fresh_redis_server)) as cache:
        await cache.put("a", 1)
        fresh_redis_server.stop()
        cache.l1_cache.lru.clear()
        for i in range(20):
            assert await cache.get(f"x{i}") is None
            await cache.put(f"x{i}", i)
            await cache.invalidate(f"x{i}")
        assert await cache.get_many(["a", "b"]) == {}
        await cache.put_many({"c": 3})
        stats = await cache.l2_cache.get_stats()
        assert stats["errors"] >= 5 and stats["breaker"]["opened"] >= 1


async def test_strict_mode_raises_tier_errors(fresh_redis_server: RedisServer) -> None:
    async with MultiLevelCache({**l2_config(fresh_redis_server), "strict": True}) as cache:
        fresh_redis_server.pause()
        try:
            with pytest.raises(TierTimeoutError, match="L2"):
                await cache.get("k")
        finally:
            fresh_redis_server.resume()
        fresh_redis_server.stop()
        for _ in range(6):  # until the breaker has opened, each call reports the failure
            try:
                await cache.get("k")
            except (TierUnavailableError, TierTimeoutError):
                pass
        assert cache.l2_cache.breaker.state == "open"


async def test_postgres_restart_fails_open_and_comes_back(fresh_postgres_server: PostgresServer) -> None:
    config = {"redis_url": None, "postgres_url": fresh_postgres_server.url,
              "l3": {"read_timeout": 0.5, "write_timeout": 0.5, "breaker_reset": 0.2,
                     "connection_pool_size": {"min": 1, "max": 2}, "command_timeout": 2}}
    async with MultiLevelCache(config) as cache:
        await cache.put("row", {"v": 1})
        restart = asyncio.create_task(asyncio.to_thread(fresh_postgres_server.restart))
        seen, worst = [], 0.0
        while not restart.done():
            cache.l1_cache.lru.clear()
            value, took = await timed(cache.get("row"))  # never raises
            seen.append(value)
            worst = max(worst, took)
            await asyncio.sleep(0.01)
        await restart
        assert set(map(repr, seen)) <= {"{'v': 1}", "None"} and worst < 3.0
        back = time.monotonic()
        while True:
            cache.l1_cache.lru.clear()
            if await cache.get("row") == {"v": 1}:
                break
            assert time.monotonic() - back < 10, "L3 never came back"
            await asyncio.sleep(0.05)
        print(f"\nPostgreSQL restart: worst get {1000 * worst:.0f} ms, L3 answering again "
              f"{time.monotonic() - back:.2f} s after the restart finished")


def test_breaker_states_with_a_fake_clock() -> None:
    now = [0.0]
    b = CircuitBreaker(failure_threshold=3, reset_timeout=1.0, max_reset_timeout=4.0, clock=lambda: now[0])
    for _ in range(2):
        b.failure()
    assert b.allow() and b.state == "closed"
    b.success()
    for _ in range(3):
        b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 1.01
    assert b.allow() and b.state == "half_open"
    assert not b.allow()          # one probe at a time
    b.failure()                   # the probe failed: open again, for longer
    assert b.state == "open" and b.opened == 2
    now[0] = 2.0
    assert not b.allow()          # 1.01 + [1, 2) s: not yet
    now[0] = 3.1
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()
    now[0] = 100.0
    for _ in range(3):
        b.failure()
    now[0] = 100.5
    assert not b.allow()          # back to the first, short wait: 0.5-1 s
    now[0] = 101.01
    assert b.allow()


async def test_cancelling_a_caller_propagates_and_leaves_the_level_working(
    fresh_redis_server: RedisServer,
) -> None:
    # redis-py 8.1 can swallow a cancellation that lands mid-command; mlcache never cancels the
    # driver (callers wait on a shared future), so the caller's CancelledError always arrives.
    async with MultiLevelCache(l2_config(fresh_redis_server, read_timeout=2.0)) as cache:
        await cache.put_many({f"c{i}": i for i in range(50)})
        for attempt in range(30):
            cache.l1_cache.lru.clear()
            task = asyncio.create_task(cache.get(f"c{attempt}"))
            await asyncio.sleep(0 if attempt % 2 else 0.0002 * attempt)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2)
            assert done, "a cancelled get kept running"
            if attempt % 2:
                # cancelled one loop step in, while its read is certainly still in flight
                assert task.cancelled(), "the caller's cancellation was swallowed"
            else:
                assert task.cancelled() or task.result() == attempt
        cache.l1_cache.lru.clear()
        assert await cache.get_many([f"c{i}" for i in range(50)]) == {f"c{i}": i for i in range(50)}
        assert cache.l2_cache.breaker.state == "closed"


async def test_an_invalidation_that_failed_is_never_served_and_lands_later(
    fresh_redis_server: RedisServer,
) -> None:
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(fresh_redis_server.url)
    config = {**l2_config(fresh_redis_server, breaker_failures=1000), "key_prefix": "inv"}
    try:
        async with MultiLevelCache(config) as cache, MultiLevelCache(config) as other:
            await cache.put_many({"old": "stale value", "keep": 1})
            # Redis refuses writes (reads still work): the invalidation, which replaces the
            # value by a tombstone, fails.
            await admin.execute_command("ACL", "SETUSER", "default", "-del", "-unlink", "-set")
            await cache.invalidate("old")
            assert await admin.get("inv:old") not in (None, TOMBSTONE)  # still in Redis...
            cache.l1_cache.lru.clear()
            assert await cache.get("old") is None                   # ...but never served
            assert await cache.get_many(["old", "keep"]) == {"keep": 1}
            assert (await cache.l2_cache.get_stats())["pending_invalidations"] == 1
            # Writes allowed again: the retry lands within a few intervals.
            await admin.execute_command("ACL", "SETUSER", "default", "+del", "+unlink", "+set")
            deadline = time.monotonic() + 5
            while await admin.get("inv:old") not in (None, TOMBSTONE):
                assert time.monotonic() < deadline, "the invalidation never landed"
                await asyncio.sleep(0.05)
            assert await other.get("old") is None
            assert (await cache.l2_cache.get_stats())["pending_invalidations"] == 0
            # A newer write of a pending key clears the mark: its value is the current one.
            await admin.execute_command("ACL", "SETUSER", "default", "-del", "-unlink", "-set")
            await cache.invalidate("keep")
            await admin.execute_command("ACL", "SETUSER", "default", "+del", "+unlink", "+set")
            await cache.put("keep", 2)
            cache.l1_cache.lru.clear()
            assert await cache.get("keep") == 2
    finally:
        await admin.execute_command("ACL", "SETUSER", "default", "+del", "+unlink", "+set")
        await admin.aclose()


async def test_writes_skipped_by_the_breaker_never_leave_an_older_value_served(
    fresh_redis_server: RedisServer,
) -> None:
    async with MultiLevelCache(l2_config(fresh_redis_server, breaker_failures=1)) as cache:
        await cache.put("k", "v1")
        fresh_redis_server.pause()
        try:
            await cache.get("absent")          # times out: the breaker opens
            assert cache.l2_cache.breaker.state == "open"
            await cache.put("k", "v2")         # skipped for L2, which still holds v1
        finally:
            fresh_redis_server.resume()
        cache.l1_cache.lru.clear()
        await asyncio.sleep(0.4)
        for _ in range(20):
            assert await cache.get("k") in (None, "v2")   # never v1
            await asyncio.sleep(0.02)


async def test_initialize_with_servers_down_then_picks_them_up(namespace: str) -> None:
    from mlcache.localservers import free_port

    redis_port, pg_port = free_port(), free_port()
    redis = RedisServer(port=redis_port)
    postgres = PostgresServer(port=pg_port)
    config = {
        "redis_url": f"redis://127.0.0.1:{redis_port}/0",
        "postgres_url": f"postgresql://mlcache:mlcache@127.0.0.1:{pg_port}/mlcache",
        "key_prefix": namespace,
        "l2": {"breaker_reset": 0.2},
        "l3": {"breaker_reset": 0.2, "connection_pool_size": {"min": 1, "max": 2}, "command_timeout": 2},
    }
    try:
        async with MultiLevelCache(config) as cache:       # both down: starts anyway
            await cache.put("k", 1)
            assert await cache.get("k") == 1             # L1 serves
            cache.l1_cache.lru.clear()
            assert await cache.get("k") is None
            await asyncio.to_thread(redis.start)
            await asyncio.to_thread(postgres.start)
            deadline = time.monotonic() + 15
            while True:
                await cache.put("k", 2)
                cache.l1_cache.lru.clear()
                found = await cache.lookup("k")
                l3_ok = (await cache.l3_cache.get_stats())["entries"] == 1
                if found == (2, "L2") and l3_ok:
                    break
                assert time.monotonic() < deadline, f"levels not picked up: {found}, L3 {l3_ok}"
                await asyncio.sleep(0.2)
    finally:
        redis.stop()
        postgres.stop()


async def test_redis_full_is_a_skipped_write_and_reads_go_on() -> None:
    with RedisServer(extra_args=["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]) as server:
        config = {**l2_config(server, breaker_failures=1000), "key_prefix": "oom"}
        async with MultiLevelCache(config) as cache, MultiLevelCache(config) as other:
            await cache.put("early", "fits")
            for i in range(400):                        # ~4 MB: Redis refuses long before
                await cache.put(f"big{i}", "x" * 10_000)
            stats = await cache.l2_cache.get_stats()
            assert stats["skipped_writes"] > 0 and stats["errors"] > 0
            assert await other.get("early") == "fits"   # reads continue from L2
            assert await cache.get("big399") == "x" * 10_000  # the writer's own L1 has it
