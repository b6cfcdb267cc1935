"""Load and bookkeeping shared by the fault tests: workers doing get / put / invalidate while a
level misbehaves, an oracle that checks every read, and views of the drivers' pools.

Each worker owns its keys, so every operation on a key is sequential and every read can be
judged exactly: it must return the key's latest value or a miss (fail-open), never an older
value and never one that was invalidated.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from mlcache import MultiLevelCache


@dataclass
class Oracle:
    current: dict[str, Any] = field(default_factory=dict)
    superseded: dict[str, set[Any]] = field(default_factory=dict)  # overwritten or invalidated
    invalidated: dict[str, set[Any]] = field(default_factory=dict)
    reads = 0
    misses = 0
    served_invalidated: list[tuple[str, Any, float]] = field(default_factory=list)
    served_older: list[tuple[str, Any, float]] = field(default_factory=list)
    _n = 0

    def new_value(self, key: str) -> str:
        self._n += 1
        return f"{key}#{self._n}"

    def put(self, key: str, value: Any) -> None:
        old = self.current.get(key)
        if old is not None:
            self.superseded.setdefault(key, set()).add(old)
        self.current[key] = value

    def invalidate(self, key: str) -> None:
        old = self.current.pop(key, None)
        if old is not None:
            self.superseded.setdefault(key, set()).add(old)
            self.invalidated.setdefault(key, set()).add(old)

    def check(self, key: str, got: Any) -> None:
        self.reads += 1
        if got is None:
            self.misses += 1
        elif got != self.current.get(key):
            where = self.served_invalidated if got in self.invalidated.get(key, ()) else self.served_older
            where.append((key, got, time.monotonic()))


@dataclass
class Load:
    """What the callers saw during a run."""

    errors: list[BaseException] = field(default_factory=list)
    get_seconds: list[float] = field(default_factory=list)
    ops = 0

    def percentile(self, q: float) -> float:
        if not self.get_seconds:
            return 0.0
        ordered = sorted(self.get_seconds)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        return (f"{self.ops} ops, {len(self.get_seconds)} gets: p50 {1000 * self.percentile(0.5):.2f} ms, "
                f"p99 {1000 * self.percentile(0.99):.2f} ms, max {1000 * self.percentile(1.0):.2f} ms")


async def worker(cache: MultiLevelCache, keys: list[str], oracle: Oracle, load: Load,
                 stop: asyncio.Event, *, seed: int, pause: float = 0.0,
                 mix: tuple[float, float] = (0.6, 0.85)) -> None:
    """get (from below L1: the key is dropped from L1 first) / put / invalidate until ``stop``."""
    rng = random.Random(seed)
    while not stop.is_set():
        key = rng.choice(keys)
        r = rng.random()
        load.ops += 1
        try:
            if r < mix[0]:
                cache.l1_cache.lru.delete(key)
                t0 = time.perf_counter()
                got = await cache.get(key)
                load.get_seconds.append(time.perf_counter() - t0)
                oracle.check(key, got)
            elif r < mix[1]:
                value = oracle.new_value(key)
                await cache.put(key, value)
                oracle.put(key, value)
            else:
                await cache.invalidate(key)
                oracle.invalidate(key)
        except Exception as exc:  # the test asserts there are none: fail-open
            load.errors.append(exc)
        await asyncio.sleep(pause)


async def run_load(cache: MultiLevelCache, oracle: Oracle, *, workers: int, keys_per_worker: int,
                   seconds: float, prefix: str = "k", pause: float = 0.0) -> Load:
    load = Load()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(worker(cache, [f"{prefix}{w}.{i}" for i in range(keys_per_worker)],
                                   oracle, load, stop, seed=w, pause=pause))
        for w in range(workers)
    ]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    return load


async def check_all(cache: MultiLevelCache, oracle: Oracle) -> None:
    """Read every key the oracle knows from below L1 and judge it."""
    for key in sorted(set(oracle.current) | set(oracle.superseded)):
        cache.l1_cache.lru.delete(key)
        oracle.check(key, await cache.get(key))


async def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> float:
    """Poll ``predicate`` (sync or async) until true; return the seconds it took."""
    t0 = time.monotonic()
    while True:
        ok = predicate()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(interval)


# --- the drivers' pools, seen from inside ---------------------------------------------------

def redis_pool(cache: MultiLevelCache) -> dict[str, int]:
    pool = cache.l2_cache.tier._client.connection_pool  # type: ignore[union-attr]
    conns = list(pool._available_connections) + list(pool._in_use_connections)
    return {"in_use": len(pool._in_use_connections), "objects": len(conns),
            "connected": sum(1 for c in conns if c.is_connected)}


def pg_pool(cache: MultiLevelCache) -> Optional[dict[str, int]]:
    pool = cache.l3_cache.tier._pool  # type: ignore[union-attr]
    if pool is None:
        return None
    tier = cache.l3_cache.tier  # type: ignore[union-attr]
    # The connection L3 keeps out of the pool for lone reads is idle whenever no read runs on it.
    solo_idle = int(tier._solo is not None and not tier._solo_busy)
    return {"size": pool.get_size(), "idle": pool.get_idle_size() + solo_idle, "max": pool.get_max_size()}
