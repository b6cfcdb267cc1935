"""The workload patterns, each through mlcache and through its peers on the same Redis.

Every contender finds the same data in Redis: the peers are single-level Redis caches holding
every key, and mlcache's L2 holds every key too, with its L1 (5 % of the keys) above and L3
(every key) below.  So the comparison is what mlcache adds to a Redis cache, L1 and batching,
on the very same Redis; its L3 is asked only for the keys stored nowhere and takes every
write.  (Reads that do reach L3 are the combined run's business: there L2 holds only the
hottest fifth.)  A fresh cache per run, so every run starts from a cold L1 and its warm-up
is what fills it.  All see the same plan.  The
order of the contenders rotates from one pattern to the next, so a drift in the machine's
load does not always land on the same one.
"""
from __future__ import annotations

from ..cache import MultiLevelCache
from . import peers
from .context import Context, hit_rates, level_failures, mlcache_op
from .workloads import ZipfSampler, chunks, key, patterns, plan

CONTENDERS = ("mlcache", "cashews", "aiocache", "redis-py")


def matrix(concurrency: int, high_concurrency: int) -> list[tuple[str, int]]:
    """(pattern, callers) rows: every pattern at the usual concurrency, Zipf at the high one."""
    return [("zipf", concurrency), ("uniform", concurrency), ("scan", concurrency),
            ("write", concurrency), ("zipf", high_concurrency)]


async def run_matrix(ctx: Context) -> None:
    o = ctx.opts
    n = o.keys
    assert n is not None
    await ctx.preload("mixed", n, l2_upto=n)
    contenders: dict[str, peers.Contender] = {}
    for name in CONTENDERS[1:]:
        peer, why = peers.make_peer(name, ctx.redis_url, ctx.namespace)
        if peer is None:
            ctx.notes.append(str(why))
            continue
        contenders[name] = peer
        if f"peer:{name}" in ctx.loaded:
            continue
        ctx.loaded.add(f"peer:{name}")
        bar = ctx.progress.counter(n, f"preloading {name}")
        for ids in chunks(0, n, 5_000):
            await peer.preload({key(i): ctx.value(i) for i in ids})
            bar.update(len(ids))
        bar.close()
    try:
        await _run_rows(ctx, contenders)
    finally:
        for peer in contenders.values():
            await peer.close()


async def _run_rows(ctx: Context, contenders: dict[str, peers.Contender]) -> None:
    o = ctx.opts
    n = o.keys
    assert n is not None
    pats = patterns(o.read_ratio, o.zipf)
    sampler = ZipfSampler(n, o.zipf)  # built once: the cumulative weights are the slow part
    value = ctx.value()
    names = ["mlcache", *contenders]
    for row, (pname, callers) in enumerate(matrix(o.concurrency, o.high_concurrency)):
        pattern = pats[pname]
        ops = plan(pattern, n, zipf=o.zipf, miss_ratio=o.miss_ratio, seed=o.seed, length=o.plan_length,
                   sampler=sampler)
        turn = row % len(names)
        for name in names[turn:] + names[:turn]:
            run_id = f"{pname}@{callers}:{name}"
            title = f"{pattern.title}, {callers} callers: {name}"
            if name == "mlcache":
                async with MultiLevelCache(ctx.config("mixed", l1=o.l1_for(n))) as cache:
                    run = await ctx.measure(run_id, title, name, mlcache_op(cache, value, peers.TTL), ops,
                                            callers, labelled=True)
                    run.info["failures"] = level_failures(cache)
                run.info["hit_rates"] = hit_rates({k: len(v) for k, v in run.latencies.items()})
            else:
                await ctx.measure(run_id, title, name, peers.workload_op(contenders[name], value), ops,
                                  callers, labelled=True)
            ctx.runs[-1].info.update(pattern=pname, pattern_title=pattern.title)
