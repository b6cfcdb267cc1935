"""Faults in the network between the cache and a real server, made by our own TCP proxy
(tests/faultproxy.py): added latency, blackhole, reset and refusal, for L2 and L3.

Every test drives workers doing get / put / invalidate through the fault and after it heals,
and asserts what the callers saw (no exception, no wrong or invalidated value), the get
latency against the level's read deadline, the breaker opening and closing by itself, and
the driver's pool back to its normal size.  The figures are printed (run with -s).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from faultload import Oracle, check_all, pg_pool, redis_pool, run_load, wait_until
from faultproxy import FaultProxy
from mlcache import MultiLevelCache

pytestmark = pytest.mark.fault

# Deadlines as the defaults (L2 50 ms) or tighter; breakers that probe back quickly so the
# tests stay short.  The slack covers a busy CI machine's scheduling, not the level.
L2_READ, L3_READ = 0.05, 0.1
SLACK = 0.1
WORKERS, KEYS = 8, 10


def _port(url: str) -> int:
    parts = urlsplit(url)
    assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "fault tests talk to loopback only"
    assert parts.port is not None
    return parts.port


async def apply(proxy: FaultProxy, mode: str) -> None:
    if mode == "latency":
        proxy.latency(4 * max(L2_READ, L3_READ))  # every round trip misses the read deadline
    elif mode == "blackhole":
        proxy.blackhole()
    elif mode == "reset":
        proxy.reset()
    elif mode == "refuse":
        await proxy.refuse()
    else:
        raise ValueError(mode)


def _latency_report(level: str, mode: str, deadline: float, load: Any) -> None:
    print(f"\n{level} {mode}: during the fault {load.summary()} (read deadline {1000 * deadline:.0f} ms)")


async def _through_fault(cache: MultiLevelCache, level: Any, proxy: FaultProxy, mode: str,
                         oracle: Oracle, deadline: float, seconds: float = 1.0) -> tuple[Any, float]:
    """Load before, during and after a fault; returns (the load during it, recovery seconds)."""
    before = await run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=0.3)
    assert not before.errors and level.breaker.state == "closed"
    await apply(proxy, mode)
    during = await run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=seconds)
    assert not during.errors, during.errors[:3]                       # fail-open: no exception
    assert level.breaker.opened >= 1 and (await level.get_stats())["errors"] > 0
    _latency_report(level.name, mode, deadline, during)
    # The deadline bounds every get, and once the breaker is open a get costs ~nothing.
    assert during.percentile(0.99) <= deadline + SLACK
    assert during.percentile(1.0) <= deadline + 3 * SLACK
    await proxy.pass_through()
    healed = time.monotonic()
    after_task = asyncio.create_task(
        run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=1.5))
    closed = await wait_until(lambda: level.breaker.state == "closed", 5, f"{level.name} breaker closing")
    after = await after_task
    assert not after.errors, after.errors[:3]
    print(f"{level.name} {mode}: breaker closed {1000 * closed:.0f} ms after healing "
          f"(open period {1000 * level.breaker.reset_timeout:.0f}-{1000 * level.breaker.max_reset_timeout:.0f} ms)")
    # The invalidations and writes that could not land are retried until they have.
    await wait_until(lambda: not level.pending, 5, f"{level.name} pending invalidations landing")
    return during, time.monotonic() - healed


@pytest.mark.parametrize("mode", ["latency", "blackhole", "reset", "refuse"])
async def test_l2_through_a_faulty_network(mode: str, redis_url: str, namespace: str) -> None:
    proxy = await FaultProxy.start(_port(redis_url))
    l2 = {"read_timeout": L2_READ, "write_timeout": 0.1, "breaker_reset": 0.2, "breaker_max_reset": 0.8}
    config = {"redis_url": f"redis://127.0.0.1:{proxy.port}/0", "postgres_url": None,
              "key_prefix": namespace, "l2": l2}
    # Another process's view: straight to Redis, its own L1.
    direct = {**config, "redis_url": redis_url}
    oracle = Oracle()
    try:
        async with MultiLevelCache(config) as cache, MultiLevelCache(direct) as other:
            await run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=0.3)
            normal = redis_pool(cache)["connected"]
            await _through_fault(cache, cache.l2_cache, proxy, mode, oracle, L2_READ)
            # Nothing wrong was served by anyone, during the fault or after it healed.
            await check_all(cache, oracle)
            await check_all(other, oracle)
            assert not oracle.served_invalidated and not oracle.served_older, (
                oracle.served_invalidated[:3], oracle.served_older[:3])
            # Pool back to normal: the calls abandoned to the fault have ended (bounded by the
            # socket timeout), nothing is in use, and no more sockets than before the fault.
            await wait_until(lambda: not cache.l2_cache._stragglers and redis_pool(cache)["in_use"] == 0,
                             5, "abandoned Redis calls finishing")
            await run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=0.3)
            pool = redis_pool(cache)
            print(f"L2 {mode}: pool {pool}, proxy holds {proxy.open_connections} connections, "
                  f"{normal} before the fault")
            assert pool["in_use"] == 0
            # Every socket the proxy holds is one the pool knows (none leaked outside it).  redis-py
            # never closes idle connections, so the pool may keep a few opened while others were
            # stuck in the fault, but it must not have grown toward max_connections (50).
            # (The backplane's publishing and subscribing sockets go through the proxy too.)
            assert cache.backplane is not None
            assert proxy.open_connections - cache.backplane.open_connections() == pool["connected"]
            assert pool["connected"] <= normal + WORKERS and cache.backplane.open_connections() <= 2
    finally:
        await proxy.close()


@pytest.mark.parametrize("mode", ["latency", "blackhole", "reset", "refuse"])
async def test_l3_through_a_faulty_network(mode: str, postgres_url: str, namespace: str) -> None:
    proxy = await FaultProxy.start(_port(postgres_url))
    parts = urlsplit(postgres_url)
    via_proxy = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}").geturl()
    l3 = {"table": namespace, "read_timeout": L3_READ, "write_timeout": 0.2, "breaker_reset": 0.2,
          "breaker_max_reset": 0.8, "connection_pool_size": {"min": 1, "max": 4}, "command_timeout": 1.0}
    config = {"redis_url": None, "postgres_url": via_proxy, "l3": l3}
    direct = {**config, "postgres_url": postgres_url}
    oracle = Oracle()
    try:
        async with MultiLevelCache(config) as cache, MultiLevelCache(direct) as other:
            await _through_fault(cache, cache.l3_cache, proxy, mode, oracle, L3_READ)
            await check_all(cache, oracle)
            await check_all(other, oracle)
            assert not oracle.served_invalidated and not oracle.served_older, (
                oracle.served_invalidated[:3], oracle.served_older[:3])
            # Pool back to normal: within its bounds, every connection idle once the load stops,
            # and every socket the proxy holds is one the pool knows.
            await wait_until(lambda: not cache.l3_cache._stragglers, 5, "abandoned queries finishing")
            await run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=0.3)
            await wait_until(lambda: pg_pool(cache)["idle"] == pg_pool(cache)["size"], 5, "pool idle")
            pool = pg_pool(cache)
            print(f"L3 {mode}: pool {pool}, proxy holds {proxy.open_connections} connections")
            assert 1 <= pool["size"] <= pool["max"]
            assert proxy.open_connections == pool["size"]
    finally:
        await proxy.close()


async def test_a_late_reply_does_not_close_the_breaker(redis_url: str, namespace: str) -> None:
    # Regression: a reply arriving after its caller's deadline counted as a success and closed
    # the breaker, so under added latency it flapped and callers kept paying the deadline.
    proxy = await FaultProxy.start(_port(redis_url))
    config = {"redis_url": f"redis://127.0.0.1:{proxy.port}/0", "postgres_url": None, "key_prefix": namespace,
              "l2": {"read_timeout": L2_READ, "breaker_failures": 1, "breaker_reset": 30.0}}
    try:
        async with MultiLevelCache(config) as cache:
            await cache.put("k", 1)
            cache.l1_cache.lru.delete("k")
            proxy.latency(4 * L2_READ)
            assert await cache.get("k") is None                      # the deadline passed: a miss
            assert cache.l2_cache.breaker.state == "open"
            await wait_until(lambda: not cache.l2_cache.loader._tasks, 2, "the late reply arriving")
            assert cache.l2_cache.breaker.state == "open"
    finally:
        await proxy.close()
