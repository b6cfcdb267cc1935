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

import asyncio
import contextlib
from typing import Any, AsyncIterator

import msgpack

from ..cache import MultiLevelCache
from ..tiers.postgres import PostgresTier
from . import peers
from .context import Context, failures_since, level_failures
from .workloads import key, key_batches, uniform_keys

BULK = 100          # keys per MGET / = ANY($1) / put_many
PG_POOL = 20        # raw asyncpg pool at many callers: mlcache's own L3 pool size


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
            title = f"mlcache get, L1 miss -> {level} hit"
            if callers == 1:
                # The target compares a lone caller with the driver alone: both take turns.
                async with _raw_one(ctx, cache, l2) as (run_id, raw_title, contender, op, plan):
                    run, _ = await ctx.measure_paired([
                        (f"{level}.get@1", title, "mlcache", cache.get, keys),
                        (run_id, raw_title, contender, op, plan),
                    ])
            else:
                run = await ctx.measure(f"{level}.get@{callers}", title, "mlcache", cache.get, keys, callers)
            hits, misses = tier.hits - hits, getattr(tier, "misses", 0) - misses
            run.info[f"{level}_hit_rate"] = 100.0 * hits / (hits + misses) if hits + misses else 0.0
            run.info["failures"] = failures_since(failed, level_failures(cache))
            if misses:
                ctx.notes.append(f"{run.id}: {level} missed {misses:,} of {hits + misses:,} gets (every key "
                                 f"is stored there): its figure is not a clean {level} hit path")


@contextlib.asynccontextmanager
async def _raw_one(ctx: Context, cache: MultiLevelCache, l2: bool) -> AsyncIterator[tuple[Any, ...]]:
    """The driver alone, one caller, reading what ``cache.get`` reads: redis-py GET, or an
    asyncpg prepared fetchrow on the very connection (so the same server backend) the L3
    tier reads with.  (Where the scheduler puts a PostgreSQL backend decides a lone round
    trip: on the client's vCPU 60-80 us here, on the other one ~146 us, pinned with
    taskset.  Two connections can differ by 2x for that alone, in either direction.)"""
    keys = uniform_keys(ctx.opts.level_keys, ctx.opts.seed + 1, ctx.opts.plan_length)
    if l2:
        prefix = ctx.redis_prefix("levels") + ":"
        async with peers.redis_client(ctx.redis_url) as client:
            yield "redis.get@1", "redis-py GET", "redis-py", client.get, [prefix + k for k in keys]
        return
    tier = getattr(cache.l3_cache, "tier", None)
    assert isinstance(tier, PostgresTier)
    await cache.get(keys[0])  # sets the read connection aside
    for _ in range(100):
        if tier.read_connection is not None:
            break
        await asyncio.sleep(0.01)
    con = tier.read_connection
    if con is None:
        raise RuntimeError("L3 set no connection aside for lone reads")
    stmt = await con.prepare(peers.SQL_ONE.format(t=ctx.table("levels")))
    yield ("pg.fetch@1", "asyncpg prepared fetchrow, same backend as mlcache's L3", "asyncpg", stmt.fetchrow,
           keys)


async def _redis(ctx: Context, keys: list[str], groups: list[list[str]], many: int) -> None:
    prefix = ctx.redis_prefix("levels") + ":"
    rkeys = [prefix + k for k in keys]
    rgroups = [[prefix + k for k in g] for g in groups]
    async with peers.redis_client(ctx.redis_url) as client:
        # (redis.get@1 is measured in turns with L2.get@1: see _shared.)
        await ctx.measure(f"redis.get@{many}", "redis-py GET", "redis-py", client.get, rkeys, many)
        for callers in (1, many):
            await ctx.measure(f"redis.mget{BULK}@{callers}", f"redis-py MGET x{BULK}", "redis-py",
                              client.mget, rgroups, callers, keys_per_op=BULK)


async def _postgres(ctx: Context, keys: list[str], groups: list[list[str]], many: int) -> None:
    table = ctx.table("levels")
    one, bulk = peers.SQL_ONE.format(t=table), peers.SQL_ANY.format(t=table)
    async with peers.pg_connection(ctx.postgres_url) as con:
        stmt, stmt_bulk = await con.prepare(one), await con.prepare(bulk)
        # The issue's own row ("asyncpg prepared fetch, one caller, sequential"): a
        # connection of its own, so a server backend of its own (see _raw_one).
        await ctx.measure("pg.fetch.own@1", "asyncpg prepared fetchrow, own connection", "asyncpg",
                          stmt.fetchrow, keys, 1)
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
