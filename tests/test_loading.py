"""get_or_set: single-flight per process and (with the lease) across processes, XFetch early
refresh, TTL jitter, fail-safe, and cancellation -- on the session's real Redis and PostgreSQL.

Timing figures are printed (run with -s to see them), never asserted tighter than a shared
machine can hold.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

import pytest

from faultproxy import FaultProxy
from mlcache import MultiLevelCache
from mlcache.localservers import RedisServer


class Counting:
    """An async loader that counts its runs, takes ``seconds`` and returns (or raises)."""

    def __init__(self, seconds: float = 0.05, value: Any = "v", error: BaseException | None = None) -> None:
        self.seconds, self.value, self.error = seconds, value, error
        self.runs = 0

    async def __call__(self) -> Any:
        self.runs += 1
        await asyncio.sleep(self.seconds)
        if self.error is not None:
            raise self.error
        return self.value if self.value != "v" else {"run": self.runs}


async def test_thousand_callers_of_an_expired_hot_key_run_the_loader_once(cache: MultiLevelCache) -> None:
    loader = Counting(0.05)
    assert await cache.get_or_set("hot", loader, ttl_seconds=0.2) == {"run": 1}
    await asyncio.sleep(0.3)                                  # expired everywhere
    t0 = time.perf_counter()
    results = await asyncio.gather(*(cache.get_or_set("hot", loader, ttl_seconds=60) for _ in range(1000)))
    took = time.perf_counter() - t0
    print(f"\n1000 callers of an expired key: loader runs {loader.runs - 1}, all answered in {1000 * took:.0f} ms "
          f"(loader {1000 * loader.seconds:.0f} ms)")
    assert loader.runs == 2
    assert all(r == {"run": 2} for r in results)
    assert await cache.get_or_set("hot", loader, ttl_seconds=60) == {"run": 2} and loader.runs == 2


async def test_loader_exception_reaches_every_waiter_and_nothing_is_cached(cache: MultiLevelCache, direct: Any) -> None:
    loader = Counting(0.05, error=KeyError("boom"))
    results = await asyncio.gather(*(cache.get_or_set("k", loader, max_stale=60) for _ in range(100)),
                                   return_exceptions=True)
    assert loader.runs == 1
    assert all(isinstance(r, KeyError) for r in results)
    assert await cache.get("k") is None and not await direct.in_redis("k") and await direct.row("k") is None
    with pytest.raises(KeyError):                             # no stale copy: no throttle either
        await cache.get_or_set("k", loader)
    assert loader.runs == 2


async def test_fail_safe_serves_stale_within_max_stale_and_throttles_retries(cache: MultiLevelCache) -> None:
    good = Counting(0.0)
    assert await cache.get_or_set("k", good, ttl_seconds=0.2, max_stale=5) == {"run": 1}
    await asyncio.sleep(0.3)
    failing = Counting(0.05, error=ConnectionError("database down"))
    results = await asyncio.gather(*(cache.get_or_set("k", failing, ttl_seconds=0.2, max_stale=5, fail_backoff=0.5)
                                     for _ in range(50)))
    assert results == [{"run": 1}] * 50 and failing.runs == 1
    # Within fail_backoff the loader is not called again: the stale value is served at once.
    assert await cache.get_or_set("k", failing, ttl_seconds=0.2, max_stale=5, fail_backoff=0.5) == {"run": 1}
    assert failing.runs == 1
    stats = cache.loading.stats()
    assert stats["stale_served"] == 51 and stats["throttled"] == 1 and stats["load_failures"] == 1
    await asyncio.sleep(0.55)
    assert await cache.get_or_set("k", failing, ttl_seconds=0.2, max_stale=5) == {"run": 1}
    assert failing.runs == 2                                  # backoff over: tried again
    # Beyond max_stale (the copy is still stored, for callers that accept older values) it raises.
    with pytest.raises(ConnectionError):
        await cache.get_or_set("k", failing, ttl_seconds=0.2, max_stale=0.1)
    # A good loader replaces the stale copy.
    assert await cache.get_or_set("k", good, ttl_seconds=60) == {"run": 2}


async def test_load_timeout_serves_stale_or_raises(cache: MultiLevelCache) -> None:
    await cache.get_or_set("k", Counting(0.0, value="old"), ttl_seconds=0.1, max_stale=10)
    await asyncio.sleep(0.15)
    slow = Counting(10.0, value="new")
    t0 = time.perf_counter()
    assert await cache.get_or_set("k", slow, load_timeout=0.1, max_stale=10) == "old"
    assert time.perf_counter() - t0 < 5
    with pytest.raises(TimeoutError):
        await cache.get_or_set("other", slow, load_timeout=0.1, max_stale=10)


async def test_fail_safe_never_serves_an_invalidated_value(cache: MultiLevelCache, other_cache: MultiLevelCache) -> None:
    await cache.get_or_set("k", Counting(0.0), ttl_seconds=0.1, max_stale=60)
    await asyncio.sleep(0.15)
    await cache.invalidate("k")
    with pytest.raises(ConnectionError):
        await cache.get_or_set("k", Counting(0.0, error=ConnectionError()), max_stale=60)
    # The stale copy is in the shared levels, so another process serves it too.
    await cache.get_or_set("j", Counting(0.0, value="kept"), ttl_seconds=0.1, max_stale=60)
    await asyncio.sleep(0.15)
    assert await other_cache.get_or_set("j", Counting(0.0, error=ConnectionError()), max_stale=60) == "kept"


async def test_cancelling_callers_never_cancels_the_shared_load(cache: MultiLevelCache) -> None:
    loader = Counting(0.2)
    first = asyncio.create_task(cache.get_or_set("k", loader))
    await asyncio.sleep(0.01)
    others = [asyncio.create_task(cache.get_or_set("k", loader)) for _ in range(10)]
    await asyncio.sleep(0.01)
    first.cancel()
    others[0].cancel()
    for task in (first, others[0]):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await asyncio.gather(*others[1:]) == [{"run": 1}] * 9 and loader.runs == 1
    assert await cache.get("k") is not None


async def test_a_value_put_plainly_is_served_as_is(cache: MultiLevelCache) -> None:
    await cache.put("k", [1, 2], ttl_seconds=60)
    loader = Counting()
    assert await cache.get_or_set("k", loader) == [1, 2] and loader.runs == 0


async def test_ttl_jitter_only_shortens_and_is_deterministic_with_rng(cache: MultiLevelCache, direct: Any) -> None:
    await cache.get_or_set("k", Counting(0.0), ttl_seconds=100, level="L2", jitter=0.2, rng=lambda: 0.5)
    assert 89_000 <= await direct.redis_pttl("k") <= 90_000          # 100 s x (1 - 0.2 x 0.5)
    await cache.get_or_set("s", Counting(0.0), ttl_seconds=100, level="L2", jitter=0.2, rng=lambda: 0.5,
                           max_stale=30)
    assert 119_000 <= await direct.redis_pttl("s") <= 120_000         # + max_stale, kept for fail-safe


async def test_xfetch_refreshes_in_the_background_by_its_formula(cache: MultiLevelCache) -> None:
    loader = Counting(0.05)
    await cache.get_or_set("k", loader, ttl_seconds=1.0, early_refresh=1.0, rng=lambda: 0.0)
    # rand -> 1: -ln(1) = 0, no head start: never refreshed early.
    for _ in range(100):
        assert await cache.get_or_set("k", loader, ttl_seconds=1.0, rng=lambda: 0.0) == {"run": 1}
    assert loader.runs == 1
    # rand -> 0: -ln(1e-9) x 0.05 s ~ 1 s >= the time left: refreshed, and the caller is not kept waiting.
    t0 = time.perf_counter()
    assert await cache.get_or_set("k", loader, ttl_seconds=1.0, rng=lambda: 1 - 1e-9) == {"run": 1}
    assert time.perf_counter() - t0 < loader.seconds
    await asyncio.sleep(0.1)
    assert loader.runs == 2 and await cache.get_or_set("k", loader, rng=lambda: 0.0) == {"run": 2}
    assert cache.loading.stats()["early_refreshes"] == 1


async def test_hot_key_with_xfetch_loads_about_once_per_ttl_and_no_caller_waits(cache: MultiLevelCache) -> None:
    ttl, seconds, workers = 1.0, 4.0, 50
    loader = Counting(0.02)
    await cache.get_or_set("hot", loader, ttl_seconds=ttl)
    waited_before = cache.loading.stats()["waited_on_load"]
    latencies: list[float] = []

    async def worker() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            await cache.get_or_set("hot", loader, ttl_seconds=ttl)
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.001)

    await asyncio.gather(*(worker() for _ in range(workers)))
    stats = cache.loading.stats()
    latencies.sort()
    windows = seconds / ttl
    print(f"\nXFetch hot key, {workers} tasks x {seconds:.0f} s, ttl {ttl} s, loader {1000 * loader.seconds:.0f} ms: "
          f"{loader.runs - 1} loads in {windows:.0f} TTL windows ({(loader.runs - 1) / windows:.2f} per window), "
          f"{len(latencies)} calls, p50 {1e6 * latencies[len(latencies) // 2]:.0f} us, p99 "
          f"{1e6 * latencies[int(len(latencies) * 0.99)]:.0f} us, max {1000 * latencies[-1]:.2f} ms; "
          f"callers that waited on a load: {stats['waited_on_load'] - waited_before}")
    # Measured 0: every refresh ran in the background, ~8 loader-durations before expiry.  A
    # machine stall longer than that head start could let one window's callers wait, no more.
    assert stats["waited_on_load"] - waited_before <= workers
    assert stats["early_refreshes"] == loader.runs - 1
    assert windows - 1 <= loader.runs - 1 <= 2 * windows


# --- across processes -------------------------------------------------------------------------

CALLER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from mlcache import MultiLevelCache

    async def main(config, key, barrier, callers, hang):
        runs = 0
        async def loader():
            nonlocal runs
            runs += 1
            if hang:
                print("loading", flush=True)
                await asyncio.sleep(600)
            await asyncio.sleep(0.1)
            return {"loaded_by": os.getpid()}
        async with MultiLevelCache(config) as cache:
            print("ready", flush=True)
            while not os.path.exists(barrier):
                await asyncio.sleep(0.002)
            results = await asyncio.gather(*(cache.get_or_set(key, loader, ttl_seconds=60, level="L2",
                                                              lease=True, lease_ttl=1.0) for _ in range(callers)))
            assert all(r == results[0] for r in results), results[:3]
            print(json.dumps([runs, cache.loading.stats()]), flush=True)

    asyncio.run(main(*json.loads(sys.argv[1])))
    """
)


def spawn(config: dict[str, Any], key: str, barrier: str, callers: int, hang: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CALLER, json.dumps([config, key, barrier, callers, hang])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


async def readline(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return (await asyncio.to_thread(proc.stdout.readline)).strip()


@pytest.mark.multiprocess
async def test_lease_runs_the_loader_once_across_processes(cache: MultiLevelCache, cache_config: dict[str, Any]) -> None:
    loader = Counting(0.1)
    await cache.get_or_set("hot", loader, ttl_seconds=0.2, level="L2", lease=True)
    await asyncio.sleep(0.3)
    loader.runs = 0
    with tempfile.TemporaryDirectory() as tmp:
        barrier = os.path.join(tmp, "go")
        procs = [spawn(cache_config, "hot", barrier, 1000) for _ in range(3)]
        try:
            for p in procs:
                assert await readline(p) == "ready", p.stderr.read() if p.stderr else ""
            open(barrier, "w").close()
            t0 = time.perf_counter()
            results = await asyncio.gather(*(cache.get_or_set("hot", loader, ttl_seconds=60, level="L2", lease=True,
                                                               lease_ttl=1.0) for _ in range(1000)))
            outs = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
            took = time.perf_counter() - t0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    runs = [loader.runs] + [r[0] for r in reports]
    print(f"\n4 processes x 1000 callers, lease on: loader runs per process {runs} (total {sum(runs)}); "
          f"all done in {1000 * took:.0f} ms; lease waits {[r[1]['lease_waits'] for r in reports]}")
    assert sum(runs) == 1
    assert len({json.dumps(r) for r in results}) == 1


@pytest.mark.multiprocess
@pytest.mark.fault
async def test_lease_holder_killed_waiters_take_over_after_expiry(
    cache: MultiLevelCache, cache_config: dict[str, Any],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        barrier = os.path.join(tmp, "go")
        open(barrier, "w").close()
        holder = spawn(cache_config, "k", barrier, 1, hang=True)
        try:
            assert await readline(holder) == "ready"
            assert await readline(holder) == "loading"         # it holds the lease now
            loader = Counting(0.05)
            waiters = [asyncio.create_task(cache.get_or_set("k", loader, level="L2", lease=True, lease_ttl=1.0))
                       for _ in range(100)]
            await asyncio.sleep(0.2)
            assert loader.runs == 0                            # waiting on the other process' lease
            os.kill(holder.pid, signal.SIGKILL)
            killed = time.perf_counter()
            results = await asyncio.gather(*waiters)
            took = time.perf_counter() - killed
        finally:
            if holder.poll() is None:
                holder.kill()
            holder.communicate()                               # reaps it and closes its pipes
    stats = cache.loading.stats()
    print(f"\nlease holder SIGKILLed: 100 waiters answered {1000 * took:.0f} ms later (lease_ttl 1000 ms, "
          f"taken ~200 ms before the kill); loader runs here {loader.runs}")
    assert loader.runs == 1 and results == [{"run": 1}] * 100
    assert stats["lease_waits"] == 1 and stats["lease_acquired"] == 1


@pytest.mark.fault
async def test_lease_falls_back_to_per_process_when_redis_is_down(fresh_redis_server: RedisServer, namespace: str) -> None:
    proxy = await FaultProxy.start(fresh_redis_server.port)
    config = {"redis_url": proxy.url("redis") + "/0", "postgres_url": None, "key_prefix": namespace,
              "l2": {"read_timeout": 0.2, "write_timeout": 0.2}}
    try:
        async with MultiLevelCache(config) as cache:
            await proxy.refuse()
            loader = Counting(0.05)
            results = await asyncio.gather(*(cache.get_or_set("k", loader, level="L2", lease=True) for _ in range(200)))
            assert results == [{"run": 1}] * 200 and loader.runs == 1
            assert cache.loading.stats()["lease_unavailable"] == 1
    finally:
        await proxy.close()


async def test_readme_example_runs(cache: MultiLevelCache) -> None:
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "get_or_set(" in b]

    class Db:  # the application's database, as the example imagines it
        async def fetch_user(self, user_id: int) -> dict[str, Any]:
            return {"id": user_id}

    scope: dict[str, Any] = {"cache": cache, "db": Db()}
    exec(compile("async def example():\n" + textwrap.indent(block, "    ") + "    return user\n",
                 "README.md", "exec"), scope)
    assert await scope["example"]() == {"id": 123}
