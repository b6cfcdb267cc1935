"""No stale write-back: tombstones and SET NX fills in L2, and a randomized racing history.

docs/consistency.md has the design these tests hold it to.
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from faultproxy import FaultProxy

from mlcache import MultiLevelCache
from mlcache.tiers.redis import TOMBSTONE, TOMBSTONE_TTL_MS

MISSING = object()


async def test_invalidation_leaves_a_tombstone_that_fills_cannot_overwrite(
        cache: MultiLevelCache, direct: Any) -> None:
    tier = cache.l2_cache.tier
    await cache.put("k", "v1")
    assert await cache.invalidate("k") is True
    assert await direct.redis.get(f"{direct.ns}:k") == TOMBSTONE
    assert 0 < await direct.redis_pttl("k") <= TOMBSTONE_TTL_MS
    envelope = cache._serializer.dumps("k", "v1")
    await tier.fill("k", envelope, 60.0)                     # a promotion of the old value
    await tier.fill_many([("k", envelope, 60.0)])
    assert await tier.get("k") is None and await tier.get_many(["k"]) == [None]
    assert await cache.invalidate("k") is False              # a tombstone holds no value
    await cache.put("k", "v2")                                # a newer put replaces it
    assert await direct.in_redis("k")
    await tier.fill("k", envelope, 60.0)                     # and no fill overwrites that
    cache.l1_cache.lru.clear()
    assert await cache.get("k") == "v2"


async def test_a_promotion_never_overwrites_a_newer_put(cache: MultiLevelCache, other_cache: MultiLevelCache,
                                                        direct: Any) -> None:
    await cache.put("k", "old")
    await direct.drop_redis("k")
    entry = await other_cache.l3_cache.fetch("k")            # other read L3 ("old")...
    assert entry is not None
    await cache.put("k", "new")                              # ...then a newer put landed...
    await other_cache.l2_cache.fill("k", entry.data, entry.ttl)   # ...then other promotes
    cache.l1_cache.lru.clear()
    other_cache.l1_cache.lru.clear()
    assert await cache.get("k") == "new" and await other_cache.get("k") == "new"


async def test_randomized_racing_history_never_writes_back_a_stale_value(cache_config: dict) -> None:
    """Several caches (separate L1s and backplane subscriptions, as separate processes would
    have) race get / get_many / put / invalidate.  Each key has one writer, so its writes
    are a sequence; reads come from everyone.  A read that began ``bound`` seconds after a
    write of its key completed must not return anything older than that write.  After the
    run, every cache agrees with each key's last write."""
    n_caches, n_keys, ops_total, bound = 4, 16, 100_000, 0.2
    # Half the caches reach Redis through a proxy adding 3 ms each way (their backplane goes
    # direct): their reads are then still in flight when another cache's invalidation has
    # landed and been announced, the race this is about.
    proxy = await FaultProxy.in_front_of(cache_config["redis_url"])
    proxy.latency(0.003)
    slow = {**cache_config, "redis_url": f"redis://127.0.0.1:{proxy.port}/0",
            "l2": {**cache_config["l2"], "backplane_url": cache_config["redis_url"]}}
    caches = [MultiLevelCache(cache_config if i % 2 == 0 else slow) for i in range(n_caches)]
    for c in caches:
        await c.initialize()
    keys = [f"r{i}" for i in range(n_keys)]
    # Per key: completed writes in order, as (completed_at, value or None); value = [key, n].
    done: dict[str, list[tuple[float, Any]]] = {k: [] for k in keys}
    invalidating_since: dict[str, float] = {}
    violations: list[str] = []
    counts = {"reads": 0, "writes": 0}

    def check(key: str, got: Any, started: float, ended: float) -> None:
        writes = done[key]
        j = sum(1 for t, _ in writes if t <= started - bound) - 1   # last write the read must see
        if j < 0:
            return
        if got is None:
            # A miss is current if that write or a later one was an invalidation (begun by now).
            later_invalidation = any(v is None for _, v in writes[j:]) or \
                invalidating_since.get(key, float("inf")) <= ended
            if not later_invalidation:
                violations.append(f"{key}: miss at {started:.3f}; by then {writes[j][1]} was written")
            return
        # A value is current if it is that write or a later one.
        i = next(x for x, (_, v) in enumerate(writes) if v is not None and v[1] == got[1]) \
            if any(v is not None and v[1] == got[1] for _, v in writes) else len(writes)
        if i < j:
            violations.append(f"{key}: read {got} at {started:.3f}; by then write #{j} {writes[j][1]} "
                              f"had replaced it")

    async def reader(w: int) -> None:
        c, rng = caches[w % n_caches], random.Random(w)
        for _ in range(ops_total // 48):
            key = rng.choice(keys)
            started = time.monotonic()
            got = await c.get(key) if rng.random() < 0.8 else (await c.get_many([key])).get(key)
            check(key, got, started, time.monotonic())
            counts["reads"] += 1

    async def writer(w: int) -> None:
        c, rng, n = caches[w % n_caches], random.Random(100 + w), 0
        mine = keys[w::8]
        for _ in range(ops_total // 48):
            key = rng.choice(mine)
            if rng.random() < 0.75:
                n += 1
                await c.put(key, [key, n], ttl_seconds=60)
                done[key].append((time.monotonic(), [key, n]))
            else:
                invalidating_since[key] = time.monotonic()
                await c.invalidate(key)
                done[key].append((time.monotonic(), None))
                invalidating_since.pop(key, None)
            counts["writes"] += 1

    t0 = time.monotonic()
    try:
        await asyncio.gather(*(reader(w) for w in range(40)), *(writer(w) for w in range(8)))
        elapsed = time.monotonic() - t0
        await asyncio.sleep(bound)
        for key in keys:
            last = done[key][-1][1] if done[key] else None
            for c in caches:
                assert await c.get(key) == last, (key, last)
        delays = sorted(d for c in caches if c.backplane for d in c.backplane.delays)
        if delays:
            print(f"backplane delays: p50 {1000 * delays[len(delays) // 2]:.1f} ms, "
                  f"p99 {1000 * delays[int(len(delays) * 0.99)]:.1f} ms, max {1000 * delays[-1]:.1f} ms")
        print(f"racing history: {counts['reads'] + counts['writes']:,} operations ({counts['writes']:,} writes) "
              f"over {n_caches} caches in {elapsed:.1f} s; {len(violations)} reads staler than {1000 * bound:.0f} ms")
        assert not violations, violations[:5]
    finally:
        for c in caches:
            await c.close()
        await proxy.close()


async def test_a_load_overtaken_by_an_invalidation_is_returned_but_not_stored(
        cache: MultiLevelCache, other_cache: MultiLevelCache, direct: Any) -> None:
    started = asyncio.Event()

    async def slow_loader() -> str:
        started.set()
        await asyncio.sleep(0.2)
        return "loaded from the old source"

    pending = asyncio.create_task(cache.get_or_set("k", slow_loader, ttl_seconds=60))
    await started.wait()
    await other_cache.invalidate("k")          # another process: heard over the backplane
    await asyncio.sleep(0.05)
    assert await pending == "loaded from the old source"
    assert not await direct.in_redis("k") and await direct.row("k") is None
    assert cache.l1_cache.lru.peek("k") is None
    assert (await cache.get_comprehensive_stats())["loading"]["not_stored_changed"] == 1


async def _slow_reader(cache_config: dict, proxy: FaultProxy) -> MultiLevelCache:
    """A cache whose L2 reads take 100 ms more (its backplane goes direct), L2 only."""
    proxy.latency(0.05)
    return MultiLevelCache({**cache_config, "postgres_url": None,
                            "redis_url": f"redis://127.0.0.1:{proxy.port}/0",
                            "l2": {**cache_config["l2"], "backplane_url": cache_config["redis_url"]}})


async def test_a_prefix_invalidated_during_reads_is_not_written_back(cache: MultiLevelCache,
                                                                      cache_config: dict) -> None:
    await cache.put_many({f"p:{i}": i for i in range(20)} | {"q:0": "other"}, level="L2")
    proxy = await FaultProxy.in_front_of(cache_config["redis_url"])
    try:
        async with await _slow_reader(cache_config, proxy) as reader:
            reads = [asyncio.create_task(reader.get(k)) for k in [f"p:{i}" for i in range(20)] + ["q:0"]]
            await asyncio.sleep(0.07)  # the reads have reached Redis; their replies are on the way
            await cache.invalidate_prefix("p:")  # another process: heard over the backplane
            got = await asyncio.gather(*reads)
            # Begun before the invalidation, they may return what they read; none is kept.
            assert got[-1] == "other"
            assert all(reader.l1_cache.lru.peek(f"p:{i}") is None for i in range(20))
            assert reader.l1_cache.lru.peek("q:0") == "other"  # another prefix is promoted
            assert [await reader.get(f"p:{i}", MISSING) for i in range(20)] == [MISSING] * 20
            # No read in flight: the change log is empty again.
            assert not reader._changed_at and not reader._prefixes_changed
    finally:
        await proxy.close()


async def test_the_change_log_is_bounded_while_reads_never_pause(cache: MultiLevelCache, cache_config: dict,
                                                                 monkeypatch: Any) -> None:
    import mlcache.cache

    monkeypatch.setattr(mlcache.cache, "CHANGE_LOG_LIMIT", 8)
    await cache.put("slow", "old", level="L2")
    proxy = await FaultProxy.in_front_of(cache_config["redis_url"])
    try:
        async with await _slow_reader(cache_config, proxy) as reader:
            read = asyncio.create_task(reader.get("slow"))
            await asyncio.sleep(0.01)
            for i in range(20):  # other keys: logged while the read is in flight, up to the limit
                reader._mutated([f"x{i}"])
                assert len(reader._changed_at) <= 8
            assert await read == "old"
            # Past the limit every key counts as changed: the read in flight kept nothing.
            assert reader.l1_cache.lru.peek("slow") is None
            assert await reader.get("slow") == "old"  # a fresh read is promoted as usual
            assert reader.l1_cache.lru.peek("slow") == "old"
    finally:
        await proxy.close()


@pytest.mark.parametrize("then", ["invalidate", "put"])
async def test_a_write_landing_after_its_deadline_never_outlives_what_came_next(cache_config: dict,
                                                                               then: str) -> None:
    # A write whose caller gave up at the deadline goes on.  The pending delete that stands
    # for it must land after it, or the late write would leave a value the cache was told
    # to forget (a real Redis; only the timing of one SET is stretched).
    config = {**cache_config, "postgres_url": None, "l2": {**cache_config["l2"], "write_timeout": 0.05}}
    async with MultiLevelCache(config) as cache, MultiLevelCache(config) as reader:
        tier = cache.l2_cache.tier
        real_set = tier.set
        landed = asyncio.Event()

        async def late_set(key: str, data: bytes, ttl: Any) -> None:
            await asyncio.sleep(0.4)                      # the 50 ms deadline passes long before
            await real_set(key, data, ttl)
            landed.set()

        tier.set = late_set  # type: ignore[method-assign]
        await cache.put("k", "old")                       # L2's write misses its deadline
        tier.set = real_set  # type: ignore[method-assign]
        assert cache.l2_cache.writer.late == 1 and cache.l2_cache.pending.keys
        if then == "invalidate":
            await cache.invalidate("k")
        else:
            await cache.put("k", "new")                   # lands, but must not clear the pending key
            assert cache.l2_cache.pending.keys
        await landed.wait()                               # the old SET landed after that
        await asyncio.sleep(0.6)                          # the pending delete's retries
        assert cache.l2_cache.writer.late == 0 and not cache.l2_cache.pending.keys
        # Whatever L2 holds now, it is not the late "old" (a miss is always safe).
        assert await reader.get("k", MISSING) in (MISSING, "new")
