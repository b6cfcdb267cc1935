"""The main job, ``mlcache bench``: a mixed workload through all three levels, then the
guide's Performance Dashboard.

With no URLs it starts throwaway ``redis-server`` and PostgreSQL servers (see
:mod:`mlcache.localservers`) and stops them afterwards.  The workload: ``keys`` keys live
in L3, the hottest fifth also in L2; callers read with Zipf-distributed popularity (a few
percent of reads ask for keys that exist nowhere) and write a share through all levels.
L1 is smaller than the key space, so every level answers some reads.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional

from .cache import MultiLevelCache

LEVELS = ("L1", "L2", "L3", "miss")


@dataclass
class BenchOptions:
    redis_url: Optional[str] = None
    postgres_url: Optional[str] = None
    duration: float = 5.0
    keys: int = 20_000
    concurrency: int = 32
    l1_capacity: int = 2_000
    value_size: int = 100
    zipf: float = 0.99
    read_ratio: float = 0.9
    miss_ratio: float = 0.03
    seed: int = 42
    json: bool = False


@dataclass
class Recorder:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in LEVELS + ("put",)})

    def summary(self, elapsed: float) -> dict[str, dict[str, float]]:
        out = {}
        for name, values in self.latencies.items():
            values.sort()
            n = len(values)
            out[name] = {
                "ops": n,
                "ops_per_s": n / elapsed if elapsed else 0.0,
                "p50_ms": 1000 * values[n // 2] if n else 0.0,
                "p99_ms": 1000 * values[min(n - 1, int(n * 0.99))] if n else 0.0,
                "mean_ms": 1000 * statistics.fmean(values) if n else 0.0,
            }
        return out


def zipf_indices(n: int, s: float, count: int, rng: random.Random) -> list[int]:
    """``count`` draws from a Zipf(s) law over ranks 0..n-1 (rank 0 the most popular)."""
    weights = [1.0 / (rank + 1) ** s for rank in range(n)]
    cum = list(itertools.accumulate(weights))
    return rng.choices(range(n), cum_weights=cum, k=count)


@contextlib.asynccontextmanager
async def servers(opts: BenchOptions) -> AsyncIterator[tuple[str, str, list[str]]]:
    """Yield (redis_url, postgres_url, notes), starting local throwaway servers where no URL was given."""
    from .localservers import PostgresServer, RedisServer

    started: list[Any] = []
    notes = []
    try:
        redis_url, postgres_url = opts.redis_url, opts.postgres_url
        if redis_url is None:
            rs = RedisServer()
            await asyncio.to_thread(rs.start)
            started.append(rs)
            redis_url = rs.url
            notes.append(f"L2: throwaway redis-server on 127.0.0.1:{rs.port}")
        else:
            notes.append("L2: the given Redis")
        if postgres_url is None:
            ps = PostgresServer()
            await asyncio.to_thread(ps.start)
            started.append(ps)
            postgres_url = ps.url
            notes.append(f"L3: throwaway PostgreSQL on 127.0.0.1:{ps.port}")
        else:
            notes.append("L3: the given PostgreSQL")
        yield redis_url, postgres_url, notes
    finally:
        for server in reversed(started):
            await asyncio.to_thread(server.stop)


async def _preload(cache: MultiLevelCache, opts: BenchOptions, value: bytes) -> None:
    """All keys into L3, the hottest fifth also into L2, without touching L1 or the stats."""
    serializer = cache._serializer
    l2, l3 = cache.l2_cache, cache.l3_cache
    sem = asyncio.Semaphore(opts.concurrency)

    async def load(i: int) -> None:
        key = f"bench:{i}"
        data = serializer.dumps(key, {"id": i, "payload": value})
        async with sem:
            await l3.tier.set(key, data, None)  # type: ignore[union-attr]
            if i < opts.keys // 5:
                await l2.tier.set(key, data, None)  # type: ignore[union-attr]

    await asyncio.gather(*(load(i) for i in range(opts.keys)))


async def run_workload(cache: MultiLevelCache, opts: BenchOptions, *, progress: bool = True) -> dict[str, Any]:
    rng = random.Random(opts.seed)
    value = bytes(rng.getrandbits(8) for _ in range(opts.value_size))
    plan_len = 200_000
    ranks = zipf_indices(opts.keys, opts.zipf, plan_len, rng)
    plan = [
        (
            "get" if rng.random() < opts.read_ratio else "put",
            f"bench:{r}" if rng.random() >= opts.miss_ratio else f"bench:absent:{rng.randrange(10**9)}",
        )
        for r in ranks
    ]
    rec = Recorder()
    cursor = itertools.count()
    deadline = time.perf_counter() + opts.duration
    perf = time.perf_counter

    async def caller() -> None:
        while perf() < deadline:
            op, key = plan[next(cursor) % plan_len]
            t0 = perf()
            if op == "get":
                _, level = await cache.lookup(key)
                rec.latencies[level or "miss"].append(perf() - t0)
            else:
                await cache.put(key, {"id": key, "payload": value}, ttl_seconds=600)
                rec.latencies["put"].append(perf() - t0)

    async def ticker() -> None:
        start = perf()
        while perf() < deadline:
            await asyncio.sleep(1.0)
            done = sum(len(v) for v in rec.latencies.values())
            print(f"  {perf() - start:4.0f} s  {done:>9,} ops", file=sys.stderr, flush=True)

    start = perf()
    tasks = [asyncio.create_task(caller()) for _ in range(opts.concurrency)]
    tick = asyncio.create_task(ticker()) if progress else None
    await asyncio.gather(*tasks)
    elapsed = perf() - start
    if tick is not None:
        tick.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tick
    stats = await cache.get_comprehensive_stats()
    return {"elapsed_s": elapsed, "latency": rec.summary(elapsed), "stats": stats}


async def bench(opts: BenchOptions) -> dict[str, Any]:
    async with servers(opts) as (redis_url, postgres_url, notes):
        config = {
            "l1": {"initial_capacity": opts.l1_capacity, "max_capacity": max(opts.l1_capacity, 10_000)},
            "l2": {"redis_url": redis_url, "key_prefix": f"mlcache-bench-{os.getpid()}"},
            "l3": {"database_url": postgres_url, "table": f"mlcache_bench_{os.getpid()}",
                   "connection_pool_size": {"min": 4, "max": opts.concurrency}},
            "strict": True,  # a benchmark must not quietly measure a failing level
        }
        async with MultiLevelCache(config) as cache:
            try:
                if not opts.json:
                    print(f"preloading {opts.keys:,} keys into L3 ({opts.keys // 5:,} also into L2) ...",
                          file=sys.stderr, flush=True)
                rng = random.Random(opts.seed)
                await _preload(cache, opts, bytes(rng.getrandbits(8) for _ in range(opts.value_size)))
                result = await run_workload(cache, opts, progress=not opts.json)
            finally:
                await cache.clear()
                table = cache.l3_cache.tier.table  # type: ignore[union-attr]
                await cache.l3_cache.tier.pool.execute(f'DROP TABLE IF EXISTS "{table}"')  # type: ignore[union-attr]
    result["servers"] = notes
    result["options"] = opts.__dict__
    return result


def render_dashboard(result: dict[str, Any]) -> str:
    opts, stats, lat = result["options"], result["stats"], result["latency"]
    lines = [
        "",
        f"mlcache bench: {result['elapsed_s']:.1f} s, {opts['concurrency']} concurrent callers, "
        f"{opts['keys']:,} keys (Zipf {opts['zipf']}), {opts['read_ratio']:.0%} reads, "
        f"{opts['value_size']}-byte values, L1 capacity {opts['l1_capacity']:,}",
        *("  " + n for n in result["servers"]),
        "",
        "Performance Dashboard",
        f"{'level':<8}{'lookups':>10}{'hits':>10}{'misses':>10}{'hit rate':>10}"
        f"{'p50 ms':>10}{'p99 ms':>10}{'served/s':>12}",
    ]
    for name, key in (("L1", "l1_cache"), ("L2", "l2_cache"), ("L3", "l3_cache")):
        s, l = stats[key], lat[name]
        lines.append(
            f"{name:<8}{s['hits'] + s['misses']:>10,}{s['hits']:>10,}{s['misses']:>10,}{s['hit_rate']:>9.1f}%"
            f"{l['p50_ms']:>10.3f}{l['p99_ms']:>10.3f}{l['ops_per_s']:>12,.0f}"
        )
    m, p = lat["miss"], lat["put"]
    lines.append(f"{'miss':<8}{m['ops']:>10,}{'':>30}{m['p50_ms']:>10.3f}{m['p99_ms']:>10.3f}{m['ops_per_s']:>12,.0f}")
    lines.append(f"{'put':<8}{p['ops']:>10,}{'':>30}{p['p50_ms']:>10.3f}{p['p99_ms']:>10.3f}{p['ops_per_s']:>12,.0f}")
    total = sum(v["ops"] for v in lat.values())
    lines += [
        "",
        "Performance Summary:",
        f"  Combined Hit Rate: {stats['combined_hit_rate']:.1f}%",
        f"  L1 Hit Rate: {stats['l1_cache']['hit_rate']:.1f}%",
        f"  L2 Hit Rate: {stats['l2_cache']['hit_rate']:.1f}%",
        f"  L3 Hit Rate: {stats['l3_cache']['hit_rate']:.1f}%",
        f"  Target Achieved: {stats['target_hit_rate_achieved']}",
        f"  Throughput: {total / result['elapsed_s']:,.0f} ops/s ({total:,} operations)",
        "",
        "Hit rate per level is the share of the lookups that reached that level; served/s counts",
        "the gets each level answered (misses: none did) and puts, per second of the run.",
    ]
    return "\n".join(lines)


def main(opts: BenchOptions) -> int:
    result = asyncio.run(bench(opts))
    if opts.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(render_dashboard(result))
    return 0
