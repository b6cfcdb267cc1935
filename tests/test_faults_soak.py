"""Longer fault runs: Redis SIGKILLed mid-load and restarted empty on the same port, 10^5
failing operations checked for leaks, and loader single-flight against a stampede.

The soak's length is MLCACHE_SOAK_SECONDS (default 6 s: kill at 1.5 s, restart 2 s later,
3.5 s of load after it) so the fault suite stays under ~3 minutes; the issue's 10 s run is
``MLCACHE_SOAK_SECONDS=10``.
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from typing import Any

import pytest

from faultload import Oracle, check_all, pg_pool, redis_pool, run_load, wait_until
from mlcache import MultiLevelCache, cache_result
from mlcache.localservers import PostgresServer, RedisServer

pytestmark = pytest.mark.fault

SOAK_SECONDS = float(os.environ.get("MLCACHE_SOAK_SECONDS", "6"))
SLACK = 0.1


def kill(server: RedisServer) -> int:
    """SIGKILL the redis-server this test started (its own PID, nothing else); return its port."""
    port = server.port
    os.kill(server.pid, signal.SIGKILL)
    server.stop()  # reaps the process, removes its temp dir
    return port


async def test_redis_killed_mid_load_and_restarted_empty(
    fresh_redis_server: RedisServer, postgres_url: str, namespace: str,
) -> None:
    # The levels' default deadlines and breakers: the targets hold for what users get.
    config = {"redis_url": fresh_redis_server.url, "postgres_url": postgres_url, "key_prefix": namespace,
              "l3": {"table": namespace, "connection_pool_size": {"min": 1, "max": 4}}}
    oracle = Oracle()
    kill_at, down_for = SOAK_SECONDS / 4, 2.0
    replacement: RedisServer | None = None
    try:
        async with MultiLevelCache(config) as cache:
            level = cache.l2_cache
            load = asyncio.create_task(run_load(cache, oracle, workers=50, keys_per_worker=4,
                                                seconds=SOAK_SECONDS, pause=0.001))
            await asyncio.sleep(kill_at)
            port = kill(fresh_redis_server)
            await asyncio.sleep(down_for)
            assert level.breaker.state != "closed"
            replacement = RedisServer(port=port)
            await asyncio.to_thread(replacement.start)         # answering PING when it returns
            back = time.monotonic()
            reads_before_back = oracle.reads
            stats = level.breaker.stats()
            next_probe = stats["retry_in"] if stats["state"] == "open" else 0.0
            closed = await wait_until(lambda: level.breaker.state == "closed", 35, "L2 breaker closing")
            result = await load
            assert not result.errors, result.errors[:3]                   # zero exceptions to callers
            print(f"\nRedis SIGKILLed at {kill_at:.1f} s, back on port {port} after {down_for:.0f} s, "
                  f"{SOAK_SECONDS:.0f} s run, 50 workers: {result.summary()}")
            print(f"L2 breaker closed {1000 * closed:.0f} ms after Redis answered; its next probe was due "
                  f"in {1000 * next_probe:.0f} ms; {oracle.reads - reads_before_back} reads after, "
                  f"{oracle.misses} misses in all")
            # Closed by the first probe after Redis returned: within one probe interval.
            assert closed <= next_probe + SLACK
            await wait_until(lambda: not level.pending and not cache.l3_cache.pending, 10, "pending landing")
            await check_all(cache, oracle)
            async with MultiLevelCache(config) as other:       # another process's view
                await check_all(other, oracle)
            assert not oracle.served_invalidated, oracle.served_invalidated[:3]   # zero, during or after
            assert not oracle.served_older, oracle.served_older[:3]
            pool = redis_pool(cache)
            assert pool["in_use"] == 0 and pool["objects"] <= 50
    finally:
        if replacement is not None:
            replacement.stop()


# --- 10^5 failing operations: memory, tasks and pools stay flat -------------------------------

async def _failing_ops(cache: MultiLevelCache, n: int, *, concurrency: int = 50) -> None:
    """n get / put / invalidate calls, all failing below L1, over a fixed set of 500 keys (so the
    pending-invalidation set is bounded by the keys, as it is in an application)."""
    async def one(w: int) -> None:
        for i in range(w, n, concurrency):
            key = f"k{i % 500}"
            r = i % 10
            if r < 6:
                cache.l1_cache.lru.delete(key)
                assert await cache.get(key) in (None, f"v{key}")
            elif r < 9:
                await cache.put(key, f"v{key}")
            else:
                await cache.invalidate(key)
    await asyncio.gather(*(one(w) for w in range(concurrency)))


async def _quiet(cache: MultiLevelCache) -> None:
    for level in (cache.l2_cache, cache.l3_cache):
        if getattr(level, "enabled", False):
            await wait_until(lambda: not level._stragglers, 10, f"{level.name} abandoned calls ending")
    await asyncio.sleep(0)


# With the breaker forced closed every operation is a refused connect (~0.3 ms in the drivers),
# so that path runs 2*10^4 operations to keep the suite short; MLCACHE_LEAK_OPS=100000 runs the
# full count on both paths.
LEAK_OPS = {"open": 100_000, "forced_closed": int(os.environ.get("MLCACHE_LEAK_OPS", "20000"))}


@pytest.mark.parametrize("breaker", ["open", "forced_closed"])
@pytest.mark.parametrize("level", ["L2", "L3"])
async def test_failing_operations_leave_memory_tasks_and_pools_flat(level: str, breaker: str, namespace: str) -> None:
    n = LEAK_OPS[breaker]
    failures = {"breaker_failures": 10**9} if breaker == "forced_closed" else {}
    if level == "L2":
        server: Any = RedisServer()
        server.start()
        config = {"redis_url": server.url, "postgres_url": None, "key_prefix": namespace, "l2": failures}
    else:
        server = PostgresServer()
        server.start()
        config = {"redis_url": None, "postgres_url": server.url,
                  "l3": {"table": namespace, "connection_pool_size": {"min": 2, "max": 4}, **failures}}
    try:
        async with MultiLevelCache(config) as cache:
            shared = cache.l2_cache if level == "L2" else cache.l3_cache
            await cache.put("warm", 1)
            assert cache.l1_cache.lru.delete("warm") and await cache.get("warm") == 1
            server.stop()                                   # down for the rest of the test
            await _failing_ops(cache, 20_000)               # warm-up: every code path, pools, caches
            await _quiet(cache)
            gc.collect()
            tasks_before = len(asyncio.all_tasks())
            tracemalloc.start()
            try:
                before = tracemalloc.take_snapshot()
                t0 = time.perf_counter()
                await _failing_ops(cache, n)
                took = time.perf_counter() - t0
                await _quiet(cache)
                gc.collect()
                after = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
            # What pytest keeps of the run (captured log records, output) is not the cache's.
            outside = [tracemalloc.Filter(False, logging.__file__), tracemalloc.Filter(False, "*/_pytest/*")]
            before, after = before.filter_traces(outside), after.filter_traces(outside)
            growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
            top = after.compare_to(before, "lineno")[:3]
            stats = await shared.get_stats()
            pool = redis_pool(cache) if level == "L2" else pg_pool(cache)
            tasks_after = len(asyncio.all_tasks())
            print(f"\n{level} down, breaker {breaker}: {n} failing ops in {took:.1f} s; memory "
                  f"{growth / 1024:+.1f} KiB; tasks {tasks_before} -> {tasks_after}; pool {pool}; "
                  f"errors {stats['errors']}, skipped by breaker {stats['skipped_by_breaker']}")
            print("  largest growth:", *top, sep="\n    ")
            if breaker == "forced_closed":
                assert shared.breaker.state == "closed" and stats["errors"] >= n // 20
            else:
                assert stats["skipped_by_breaker"] >= n // 2
            # Flat: under 10 bytes per operation (with a 512 KiB floor for the allocator's and
            # asyncio's own churn, e.g. cancelled timer handles awaiting cleanup), where keeping
            # one small object per failing call would cost 50+ bytes each; and no allocation
            # site holds more objects than a fraction of the calls (key strings: up to 2 x 500).
            assert growth < max(512 * 1024, 10 * n), "\n".join(map(str, top))
            by_count = max(after.compare_to(before, "lineno"), key=lambda stat: stat.count_diff)
            assert by_count.count_diff < max(2000, n // 20), str(by_count)
            assert tasks_after <= tasks_before
            if level == "L2":
                # in use only for a moment, by the pending invalidations' retry
                await wait_until(lambda: redis_pool(cache)["in_use"] == 0, 2, "Redis pool idle")
                assert redis_pool(cache)["objects"] <= 50
            else:
                assert pool is None or pool["size"] <= pool["max"]
    finally:
        server.stop()


# --- single-flight when Redis comes back empty -----------------------------------------------

CALLER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from mlcache import MultiLevelCache, cache_result

    async def main(config, barrier, callers):
        calls = 0
        async with MultiLevelCache(config) as cache:
            @cache_result(cache, ttl_seconds=300, cache_level="L2")
            async def report(day):
                nonlocal calls
                calls += 1
                await asyncio.sleep(0.1)          # an expensive loader
                return {"day": day, "total": 42}

            print("ready", flush=True)
            while not os.path.exists(barrier):
                await asyncio.sleep(0.005)
            results = await asyncio.gather(*(report("2024-01-01") for _ in range(callers)))
            assert all(r == {"day": "2024-01-01", "total": 42} for r in results), results[:3]
        print(json.dumps(calls), flush=True)

    asyncio.run(main(*json.loads(sys.argv[1])))
    """
)


async def test_loader_single_flight_when_redis_comes_back_empty(
    fresh_redis_server: RedisServer, namespace: str,
) -> None:
    config = {"redis_url": fresh_redis_server.url, "postgres_url": None, "key_prefix": namespace}
    replacement: RedisServer | None = None
    calls = 0
    try:
        async with MultiLevelCache(config) as cache:
            # The same module and qualified name as in the other processes: the same key.
            async def report(day: str) -> dict[str, Any]:
                nonlocal calls
                calls += 1
                await asyncio.sleep(0.1)
                return {"day": day, "total": 42}
            report.__module__, report.__qualname__ = "__main__", "main.<locals>.report"
            report = cache_result(cache, ttl_seconds=300, cache_level="L2")(report)

            assert await report("2024-01-01") == {"day": "2024-01-01", "total": 42} and calls == 1
            # Redis restarts empty; this process's L1 is cold too.
            replacement = RedisServer(port=kill(fresh_redis_server))
            replacement.start()
            cache.l1_cache.lru.clear()
            calls = 0
            with tempfile.TemporaryDirectory() as tmp:
                barrier = os.path.join(tmp, "go")
                procs = [
                    subprocess.Popen([sys.executable, "-c", CALLER, json.dumps([config, barrier, 200])],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
                    for _ in range(3)
                ]
                try:
                    for p in procs:
                        assert p.stdout is not None
                        assert (await asyncio.to_thread(p.stdout.readline)).strip() == "ready"
                    open(barrier, "w").close()
                    results = await asyncio.gather(*(report("2024-01-01") for _ in range(200)))
                    outs = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
                finally:
                    for p in procs:
                        if p.poll() is None:
                            p.kill()
                            p.wait()
            assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
            per_process = [calls] + [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
            print(f"\nRedis back empty, 4 processes x 200 concurrent callers: loader calls per process {per_process}")
            assert all(r == {"day": "2024-01-01", "total": 42} for r in results)
            assert all(c <= 1 for c in per_process) and sum(per_process) >= 1
    finally:
        if replacement is not None:
            replacement.stop()
