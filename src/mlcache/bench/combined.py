"""The headline: multi-level coordination on a large key space (1M keys in the full run).

L3 holds every key, L2 the hottest fifth, L1 5 % of them (the guide's ``l1_capacity``
50,000 for 1M keys); Zipf reads with a few percent of keys stored nowhere, and writes through
every level.  This is the old ``mlcache bench`` workload, scaled up.  The cache starts cold,
and the hit-rate-over-time plot shows L1 filling; the warm-up is left out of the figures.
"""
from __future__ import annotations

from typing import Any

from ..cache import MultiLevelCache
from . import peers
from .context import Context, hit_rates, level_failures, mlcache_op
from .measure import Run
from .workloads import l2_share, patterns, plan


async def run_combined(ctx: Context) -> tuple[Run, dict[str, Any]]:
    o = ctx.opts
    n = o.combined_keys
    assert n is not None
    await ctx.preload("combined", n, l2_upto=l2_share(n))
    await ctx.reset_l2("combined", n, l2_upto=l2_share(n))
    pattern = patterns(o.read_ratio, o.zipf)["zipf"]
    ops = plan(pattern, n, zipf=o.zipf, miss_ratio=o.miss_ratio, seed=o.seed, length=o.combined_plan_length)
    title = f"combined: Zipf({o.zipf:g}) over {n:,} keys, {o.read_ratio:.0%} reads, {o.concurrency} callers"
    async with MultiLevelCache(ctx.config("combined", l1=o.l1_for(n))) as cache:
        run = await ctx.measure(f"combined@{o.concurrency}", title, "mlcache",
                                mlcache_op(cache, ctx.value(), peers.TTL), ops, o.concurrency,
                                labelled=True, timeline=True, duration=o.combined_duration)
        # The guide's dashboard: the cache's own counters, warm-up included.
        stats = await cache.get_comprehensive_stats()
        run.info["failures"] = level_failures(cache)
    run.info["hit_rates"] = hit_rates({k: len(v) for k, v in run.latencies.items()})
    run.info["keys"] = n
    run.info["l1_capacity"] = o.l1_for(n)
    return run, stats
