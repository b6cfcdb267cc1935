"""Each level alone, beside the raw driver under it, and the bulk write through all levels.

How "L2 only" is made measurable: a cache with L2 and a one-entry L1 but no L3.  Every get
misses L1, hits L2 and is promoted into L1 (evicting the previous key), which is exactly the
path of a key that misses L1 and hits L2, promotion included.  "L3 only" is the same with L3
and no L2.  Reads are uniform over the data set, so no key is hot enough to be coalesced with
itself (the cache fetches a key in flight only once, which would flatter the figure).

Raw baselines read the very rows and Redis keys mlcache wrote (its envelopes), so they move
the same bytes; they just skip everything mlcache adds: PTTL / expiry, decoding, promotion.
"""
from __future__ import annotations

import time
from typing import Any

import msgpack

from ..cache import MultiLevelCache
from . import peers
from .context import Context, failures_since, level_failures
from .workloads import key, key_batches, uniform_keys

BULK = 100          # keys per MGET / = ANY($1) / put_many
PG_POOL = 20        # raw asyncpg pool at many callers: mlcache's own L3 pool size
# Client work added to each raw asyncpg read of the reference run (microseconds): see _postgres.
BUSY_US = 5


async def run_levels(ctx: Context) -> None:
    o = ctx.opts
    n, many = o.level_keys, o.concurrency
    await ctx.preload("levels", n, l2_upto=n)
    keys = uniform_keys(n, o.seed, o.plan_length)
    groups = key_batches(n, BULK, o.seed, o.plan_length // BULK)

    await _l1(ctx, n, keys)
    await _shared(ctx, "L2", keys, many)
    await _redis(ctx, keys, groups, many)
    await _shared(ctx, "L3", keys, many)
    await _postgres(ctx, keys, groups, many)
    await _writes(ctx, n, groups)


async def _l1(ctx: Context, n: int, keys: list[str]) -> None:
    # One caller only: an L1 hit never suspends, so 64 callers would just take turns.
    config = {"redis_url": None, "postgres_url": None, "l1": {"initial_capacity": n, "max_capacity": n}}
    async with MultiLevelCache(config) as cache:
        await cache.put_many({key(i): ctx.value(i) for i in range(n)}, level="L1")
        await ctx.measure("L1.get@1", "mlcache get, L1 hit", "mlcache", cache.get, keys, 1)
    table = {key(i): ctx.value(i) for i in range(n)}
    lookup = table.get

    async def floor(k: str) -> Any:
        return lookup(k)

    await ctx.measure("floor.get@1", "asyncio floor: await of dict.get", "asyncio", floor, keys, 1)


async def _shared(ctx: Context, level: str, keys: list[str], many: int) -> None:
    l2 = level == "L2"
    async with MultiLevelCache(ctx.config("levels", l1=1, l2=l2, l3=not l2)) as cache:
        tier = cache.l2_cache if l2 else cache.l3_cache
        for callers in (1, many):
            hits, misses, failed = tier.hits, getattr(tier, "misses", 0), level_failures(cache)
            run = await ctx.measure(f"{level}.get@{callers}", f"mlcache get, L1 miss -> {level} hit",
                                    "mlcache", cache.get, keys, callers)
            hits, misses = tier.hits - hits, getattr(tier, "misses", 0) - misses
            run.info[f"{level}_hit_rate"] = 100.0 * hits / (hits + misses) if hits + misses else 0.0
            run.info["failures"] = failures_since(failed, level_failures(cache))
            if misses:
                ctx.notes.append(f"{run.id}: {level} missed {misses:,} of {hits + misses:,} gets (every key "
                                 f"is stored there): its figure is not a clean {level} hit path")


async def _redis(ctx: Context, keys: list[str], groups: list[list[str]], many: int) -> None:
    prefix = ctx.redis_prefix("levels") + ":"
    rkeys = [prefix + k for k in keys]
    rgroups = [[prefix + k for k in g] for g in groups]
    async with peers.redis_client(ctx.redis_url) as client:
        for callers in (1, many):
            await ctx.measure(f"redis.get@{callers}", "redis-py GET", "redis-py", client.get, rkeys, callers)
        for callers in (1, many):
            await ctx.measure(f"redis.mget{BULK}@{callers}", f"redis-py MGET x{BULK}", "redis-py",
                              client.mget, rgroups, callers, keys_per_op=BULK)


async def _postgres(ctx: Context, keys: list[str], groups: list[list[str]], many: int) -> None:
    table = ctx.table("levels")
    one, bulk = peers.SQL_ONE.format(t=table), peers.SQL_ANY.format(t=table)
    async with peers.pg_connection(ctx.postgres_url) as con:
        stmt, stmt_bulk = await con.prepare(one), await con.prepare(bulk)
        await ctx.measure("pg.fetch@1", "asyncpg prepared fetchrow", "asyncpg", stmt.fetchrow, keys, 1)
        # A reference, not a contender: the same reads with BUSY_US of client CPU after each.
        # On this kind of machine (a VM whose idle vCPUs halt) a reply the client answers a
        # few microseconds later finds the server's backend asleep, and waking it costs far
        # more than the work: it shows what any layer over the driver pays, mlcache included.
        fetchrow, clock = stmt.fetchrow, time.perf_counter

        async def busy_fetch(k: str) -> Any:
            row = await fetchrow(k)
            until = clock() + BUSY_US / 1e6
            while clock() < until:
                pass
            return row

        await ctx.measure("pg.fetch+busy@1", f"asyncpg prepared fetchrow + {BUSY_US} us of client work (reference)",
                          "asyncpg", busy_fetch, keys, 1)
        await ctx.measure(f"pg.any{BULK}@1", f"asyncpg prepared = ANY($1) x{BULK}", "asyncpg",
                          stmt_bulk.fetch, groups, 1, keys_per_op=BULK)
    async with peers.pg_pool(ctx.postgres_url, min(PG_POOL, many)) as pool:
        # pool.fetchrow reuses each connection's cached prepared statement.
        async def fetch(k: str) -> Any:
            return await pool.fetchrow(one, k)

        async def fetch_bulk(ks: list[str]) -> Any:
            return await pool.fetch(bulk, ks)

        await ctx.measure(f"pg.fetch@{many}", f"asyncpg pool fetchrow (pool of {min(PG_POOL, many)})",
                          "asyncpg", fetch, keys, many)
        await ctx.measure(f"pg.any{BULK}@{many}", f"asyncpg pool = ANY($1) x{BULK}", "asyncpg",
                          fetch_bulk, groups, many, keys_per_op=BULK)


async def _writes(ctx: Context, n: int, groups: list[list[str]]) -> None:
    value = ctx.value()
    mappings = [dict.fromkeys(g, value) for g in groups]
    async with MultiLevelCache(ctx.config("levels", l1=ctx.opts.l1_for(n))) as cache:
        put_many = cache.put_many
        await ctx.measure(f"put_many{BULK}@1", f"mlcache put_many x{BULK}, all levels", "mlcache",
                          put_many, mappings, 1, keys_per_op=BULK, label="put")
        ctx.runs[-1].info["failures"] = level_failures(cache)
    blob = msgpack.packb(value)
    async with peers.redis_client(ctx.redis_url) as client, peers.pg_pool(ctx.postgres_url, 2) as pool:
        op = await peers.raw_write_op(client, pool, ctx.table("raw"), ctx.redis_prefix("raw") + ":", blob)
        await ctx.measure(f"raw.write{BULK}@1", f"raw: redis-py MSET x{BULK} + asyncpg unnest upsert x{BULK}",
                          "redis-py+asyncpg", op, groups, 1, keys_per_op=BULK, label="put")
