"""Faults made on the servers themselves, mid-load: Redis ``CLIENT PAUSE``, PostgreSQL's
``pg_terminate_backend`` of the cache's connections and ``pg_ctl restart -m immediate``.

What the callers saw (no exception, no wrong or invalidated value), the get latency, the time
until the level is used again, and the pools, are asserted; the figures are printed (-s).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from faultload import Oracle, check_all, pg_pool, redis_pool, run_load, wait_until
from mlcache import MultiLevelCache
from mlcache.localservers import PostgresServer, RedisServer

pytestmark = pytest.mark.fault

WORKERS, KEYS = 8, 10
L2_READ = 0.05
SLACK = 0.1


def _no_bad_reads(oracle: Oracle) -> None:
    assert not oracle.served_invalidated, oracle.served_invalidated[:3]
    assert not oracle.served_older, oracle.served_older[:3]


async def test_client_pause_costs_a_deadline_and_recovers(fresh_redis_server: RedisServer, namespace: str) -> None:
    url = fresh_redis_server.url
    config = {"redis_url": url, "postgres_url": None, "key_prefix": namespace,
              "l2": {"read_timeout": L2_READ, "write_timeout": 0.1, "breaker_reset": 0.2, "breaker_max_reset": 0.8}}
    admin = aioredis.Redis.from_url(url)
    oracle = Oracle()
    try:
        async with MultiLevelCache(config) as cache, MultiLevelCache(config) as other:
            level = cache.l2_cache
            await run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=0.3)
            normal = redis_pool(cache)["connected"]
            pause = 2.0
            # From a separate connection: every client, reads and writes, waits 2 s.
            await admin.execute_command("CLIENT", "PAUSE", int(pause * 1000), "ALL")
            resumed_at = time.monotonic() + pause
            during = await run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=pause - 0.3)
            assert not during.errors, during.errors[:3]
            assert level.breaker.opened >= 1
            print(f"\nCLIENT PAUSE {pause:.0f} s: {during.summary()} (L2 read deadline {1000 * L2_READ:.0f} ms)")
            assert during.percentile(1.0) <= L2_READ + 3 * SLACK
            after = asyncio.create_task(run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=2.0))
            await wait_until(lambda: time.monotonic() >= resumed_at, 5, "pause over")
            closed = await wait_until(lambda: level.breaker.state == "closed", 5, "L2 breaker closing")
            assert not (await after).errors
            print(f"CLIENT PAUSE: L2 breaker closed {1000 * closed:.0f} ms after the pause ended "
                  f"(open period at most {1000 * level.breaker.max_reset_timeout:.0f} ms)")
            await wait_until(lambda: not level.pending, 5, "pending invalidations landing")
            await wait_until(lambda: not level._stragglers, 5, "abandoned calls finishing")
            await check_all(cache, oracle)
            await check_all(other, oracle)
            _no_bad_reads(oracle)
            pool = redis_pool(cache)
            server_side = [c for c in await admin.client_list() if c.get("name") == "mlcache"]
            print(f"CLIENT PAUSE: pool {pool}, {normal} connected before; server sees "
                  f"{len(server_side)} mlcache connections (both caches)")
            assert pool["in_use"] == 0 and pool["connected"] <= normal + WORKERS
            assert len(server_side) == pool["connected"] + redis_pool(other)["connected"]
    finally:
        await admin.aclose()


def _l3_config(url: str, namespace: str, **l3: Any) -> dict[str, Any]:
    return {"redis_url": None, "postgres_url": url,
            "l3": {"table": namespace, "read_timeout": 0.1, "write_timeout": 0.2,
                   "connection_pool_size": {"min": 2, "max": 4}, "command_timeout": 1.0, **l3}}


async def _l3_answers(cache: MultiLevelCache, key: str, value: Any) -> bool:
    cache.l1_cache.lru.delete(key)
    return await cache.lookup(key) == (value, "L3")


async def test_pg_terminate_backend_of_the_cache_connections(postgres_url: str, namespace: str) -> None:
    config = _l3_config(postgres_url, namespace, breaker_reset=0.2, breaker_max_reset=1.0)
    admin = await asyncpg.connect(postgres_url)
    oracle = Oracle()
    try:
        async with MultiLevelCache(config) as cache:
            await cache.put("probe", "p")
            load = asyncio.create_task(run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=2.0))
            back_times = []
            for _ in range(3):
                await asyncio.sleep(0.3)
                pool = cache.l3_cache.tier._pool  # type: ignore[union-attr]
                pids = [h._con.get_server_pid() for h in pool._holders if h._con is not None]
                killed = await admin.fetchval(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid) t",
                    pids)
                assert killed == len(pids) >= 1
                t0 = time.monotonic()
                await wait_until(lambda: _l3_answers(cache, "probe", "p"), 5, "L3 answering again", interval=0.005)
                back_times.append(time.monotonic() - t0)
            result = await load
            assert not result.errors, result.errors[:3]
            assert (await cache.l3_cache.get_stats())["errors"] > 0
            print(f"\npg_terminate_backend x3 mid-load: L3 answering again after "
                  f"{', '.join(f'{1000 * t:.0f}' for t in back_times)} ms; {result.summary()}")
            assert max(back_times) < 1.0
            await wait_until(lambda: not cache.l3_cache.pending, 5, "pending invalidations landing")
            await check_all(cache, oracle)
            _no_bad_reads(oracle)
            await wait_until(lambda: pg_pool(cache)["idle"] == pg_pool(cache)["size"], 5, "pool idle")
            pool_now = pg_pool(cache)
            ours = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            print(f"pg_terminate_backend: pool {pool_now}, server sees {ours} other connections")
            assert 1 <= pool_now["size"] <= pool_now["max"] and ours == pool_now["size"]
    finally:
        await admin.close()


async def test_pg_ctl_restart_immediate_mid_load(fresh_postgres_server: PostgresServer, namespace: str) -> None:
    config = _l3_config(fresh_postgres_server.url, namespace, breaker_reset=0.2, breaker_max_reset=1.0)
    oracle = Oracle()
    async with MultiLevelCache(config) as cache:
        await cache.put("probe", "p")
        load = asyncio.create_task(run_load(cache, oracle, workers=WORKERS, keys_per_worker=KEYS, seconds=3.0))
        await asyncio.sleep(0.3)
        t_restart = time.monotonic()
        await asyncio.to_thread(fresh_postgres_server.restart, "immediate")
        back = time.monotonic()
        # The table is UNLOGGED: crash recovery (an immediate shutdown) empties it.  The probe
        # is written again until L3 takes it and answers with it.
        async def answering() -> bool:
            if await _l3_answers(cache, "probe", "p"):
                return True
            await cache.put("probe", "p")
            return False

        again = await wait_until(answering, 5, "L3 answering after the restart", interval=0.005)
        result = await load
        assert not result.errors, result.errors[:3]
        assert (await cache.l3_cache.get_stats())["errors"] > 0   # the outage was felt, and absorbed
        print(f"\npg_ctl restart -m immediate mid-load: restart took {back - t_restart:.2f} s, L3 used again "
              f"{1000 * again:.0f} ms after the server was back; {result.summary()}")
        assert again < 1.0
        await wait_until(lambda: not cache.l3_cache.pending, 5, "pending invalidations landing")
        await check_all(cache, oracle)
        _no_bad_reads(oracle)
        await wait_until(lambda: pg_pool(cache)["idle"] == pg_pool(cache)["size"], 5, "pool idle")
        pool = pg_pool(cache)
        assert 1 <= pool["size"] <= pool["max"]
