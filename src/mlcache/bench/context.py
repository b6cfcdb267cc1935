"""What every part of the suite shares: options, servers, namespace, progress, and the runs.

Each data set lives under the bench's own namespace (Redis keys ``mlcb{pid}-{set}:...``, L3
table ``mlcb{pid}_{set}``), so a run against given servers touches nothing else and can be
removed whole afterwards.
"""
from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Sequence

from ..cache import MultiLevelCache
from . import peers
from .measure import Run, drive, drive_paired
from .options import BenchOptions
from .progress import Progress
from .workloads import chunks, key, value_for

PRELOAD_TTL = 3600  # seconds: far longer than any run, so nothing preloaded expires mid-run
PRELOAD_CHUNK = 5_000
PRELOAD_IN_FLIGHT = 4
L3_POOL = 20  # mlcache's default L3 pool size


@dataclass
class Context:
    opts: BenchOptions
    redis_url: str
    postgres_url: str
    namespace: str
    progress: Progress
    payload: str
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)  # data sets already preloaded (see rounds)

    def table(self, dataset: str) -> str:
        name = f"{self.namespace}_{dataset}"
        if name not in self.tables:
            self.tables.append(name)
        return name

    def redis_prefix(self, dataset: str) -> str:
        """mlcache's Redis keys for ``dataset`` are this plus ``:key`` (see the README)."""
        return f"{self.namespace}-{dataset}"

    def config(self, dataset: str, *, l1: int, l2: bool = True, l3: bool = True, pool_min: int = L3_POOL
               ) -> dict[str, Any]:
        """A cache over ``dataset`` with a fixed L1 of ``l1`` entries (max = initial, so
        adaptive sizing cannot move it mid-run) and the chosen shared levels.  Its L3 pool is
        opened in full at start: opening a PostgreSQL connection takes milliseconds, which
        would otherwise land inside the first timed runs instead of the steady state."""
        return {
            "l1": {"initial_capacity": l1, "max_capacity": l1},
            "redis_url": self.redis_url if l2 else None,
            "postgres_url": self.postgres_url if l3 else None,
            "key_prefix": self.redis_prefix(dataset),
            "l3": {"table": self.table(dataset), "connection_pool_size": {"min": pool_min, "max": L3_POOL}},
        }

    def value(self, i: int = 0) -> dict[str, Any]:
        return value_for(i, self.payload)

    async def preload(self, dataset: str, n: int, *, l2_upto: int) -> None:
        """Keys k0..k{n-1} into L3 and k0..k{l2_upto-1} also into L2, through ``put_many`` in
        chunks, by caches that lack the other shared level (so each level gets exactly its
        share) and have a one-entry L1 (so nothing is left warm for the measured caches).
        Once per data set: later rounds find it loaded (reads never change it; writes only
        rewrite the same keys with the same kind of value)."""
        if dataset in self.loaded:
            return
        self.loaded.add(dataset)
        bar = self.progress.counter(n + l2_upto, f"preloading {dataset}")
        for upto, l2, l3 in ((n, False, True), (l2_upto, True, False)):
            async with MultiLevelCache(self.config(dataset, l1=1, l2=l2, l3=l3, pool_min=1)) as loader:
                sem = asyncio.Semaphore(PRELOAD_IN_FLIGHT)

                async def load(ids: range) -> None:
                    async with sem:
                        await loader.put_many({key(i): self.value(i) for i in ids}, ttl_seconds=PRELOAD_TTL)
                        bar.update(len(ids))

                await asyncio.gather(*(load(ids) for ids in chunks(0, upto, PRELOAD_CHUNK)))
        bar.close()
        await self.settle(dataset)

    async def reset_l2(self, dataset: str, n: int, *, l2_upto: int) -> None:
        """Put the data set's L2 back as preloaded (keys k0..k{l2_upto-1}) before an mlcache
        run.  Every mlcache run promotes what it reads from L3 into Redis and writes its puts
        there, and those keys stay: without this each run started with a warmer L2 than the
        one before, in whatever order the runs happened to go, and from the second round on L3
        served nothing but keys stored nowhere (the combined run's L3 hit rate read 0 %)."""
        prefix = self.redis_prefix(dataset) + ":"
        async with peers.redis_client(self.redis_url) as client:
            for ids in chunks(l2_upto, n, 10_000):
                await client.unlink(*[prefix + key(i) for i in ids])

    async def settle(self, dataset: str) -> None:
        """VACUUM ANALYZE a freshly loaded L3 table.  Left alone, PostgreSQL's autovacuum
        takes up a table after that many inserts a little later, on the same two cores, in
        the middle of whichever run comes next (the combined run measured 18.6K ops/s after
        the other runs' loads, 62.5K alone).  A production table is long past this."""
        import asyncpg

        con = await asyncpg.connect(self.postgres_url)
        try:
            # The name is made by the bench from its own lower-case namespace.
            await con.execute(f'VACUUM (ANALYZE) "{self.table(dataset)}"')
        finally:
            await con.close()

    async def measure(
        self, run_id: str, title: str, contender: str, op: Callable[[Any], Awaitable[Any]],
        plan: Sequence[Any], callers: int, *, keys_per_op: int = 1, labelled: bool = False,
        label: str = "get", timeline: bool = False, duration: Optional[float] = None,
    ) -> Run:
        o = self.opts
        seconds = duration if duration is not None else o.duration
        assert seconds is not None
        # The collector is off while timing, as timeit does it: a full collection over the
        # latency lists would land on whichever contender happened to be running.
        gc.collect()
        gc.disable()
        try:
            async with self.progress.timed(o.warmup + seconds, title):
                ops, elapsed, lat, tl = await drive(op, plan, callers=callers, duration=seconds,
                                                    warmup=o.warmup, labelled=labelled, label=label,
                                                    timeline=timeline)
        finally:
            gc.enable()
        run = Run(run_id, title, contender, callers, ops, keys_per_op, elapsed, lat, tl, o.warmup)
        self.runs.append(run)
        self.progress.step(title)
        return run

    async def measure_paired(
        self, contenders: Sequence[tuple[str, str, str, Callable[[Any], Awaitable[Any]], Sequence[Any]]],
        *, label: str = "get",
    ) -> list[Run]:
        """One caller, the contenders ``(run id, title, contender, op, plan)`` taking turns
        (see ``drive_paired``); a Run for each, as ``measure`` makes."""
        o = self.opts
        assert o.duration is not None
        titles = " / ".join(c[1] for c in contenders)
        gc.collect()
        gc.disable()
        try:
            async with self.progress.timed(len(contenders) * (o.warmup + o.duration), titles):
                results = await drive_paired([(c[3], c[4]) for c in contenders], duration=o.duration,
                                             warmup=o.warmup, label=label)
        finally:
            gc.enable()
        runs = []
        for (run_id, title, contender, _, _), (ops, elapsed, lat) in zip(contenders, results):
            run = Run(run_id, title, contender, 1, ops, 1, elapsed, lat, None, o.warmup)
            run.info["paired_with"] = [c[0] for c in contenders if c[0] != run_id]
            self.runs.append(run)
            runs.append(run)
        self.progress.step(titles)
        return runs


def hit_rates(counts: dict[str, int]) -> dict[str, float]:
    """Per-level hit rates as the cache's stats define them (percent of the lookups that
    reached the level), from how many gets each level answered (``miss``: none did)."""
    l1, l2, l3, miss = (counts.get(k, 0) for k in ("L1", "L2", "L3", "miss"))
    gets = l1 + l2 + l3 + miss

    def pct(part: int, whole: int) -> float:
        return 100.0 * part / whole if whole else 0.0

    return {"combined": pct(l1 + l2 + l3, gets), "L1": pct(l1, gets), "L2": pct(l2, gets - l1),
            "L3": pct(l3, gets - l1 - l2)}


def level_failures(cache: MultiLevelCache) -> dict[str, int]:
    """Failed and skipped L2/L3 calls so far, by kind.  The cache fails open (a failed read
    is a miss, a failed write is dropped) and a circuit breaker may skip a level altogether,
    all of which is faster than a real answer: a benchmark must count them, not hide them."""
    out: dict[str, int] = {}
    for level in (cache.l2_cache, cache.l3_cache):
        for attr in ("errors", "skipped", "skipped_writes"):
            n = int(getattr(level, attr, 0))
            if n:
                out[f"{level.name} {attr.replace('_', ' ')}"] = n
    return out


def failures_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def mlcache_op(cache: MultiLevelCache, value: Any, ttl: float) -> Callable[[tuple[bool, str]], Awaitable[str]]:
    """The workloads' operation for mlcache: ``lookup`` (labelled by the level that answered)
    or ``put`` through every level."""
    lookup, put = cache.lookup, cache.put

    async def op(item: tuple[bool, str]) -> str:
        is_read, k = item
        if is_read:
            return (await lookup(k))[1] or "miss"
        await put(k, value, ttl_seconds=ttl)
        return "put"

    return op
