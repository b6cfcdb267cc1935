"""MultiLevelCache end to end on real Redis and PostgreSQL: read path, promotion, expiry,
write levels, invalidation and stats."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlcache import MultiLevelCache

MISSING = object()


async def test_put_then_get_from_l1(cache: MultiLevelCache, direct: Any) -> None:
    await cache.put("user:123", {"name": "John", "role": "admin"}, ttl_seconds=300)
    assert await cache.get("user:123") == {"name": "John", "role": "admin"}
    assert await cache.lookup("user:123") == ({"name": "John", "role": "admin"}, "L1")
    assert await direct.in_redis("user:123")
    assert (await direct.row("user:123")) is not None
    stats = await cache.get_comprehensive_stats()
    assert stats["l1_cache"]["hits"] == 2
    assert stats["l2_cache"]["hits"] == stats["l2_cache"]["misses"] == 0


async def test_second_cache_reads_l2_then_own_l1_then_l3(
    cache: MultiLevelCache, other_cache: MultiLevelCache, direct: Any
) -> None:
    await cache.put("k", [1, 2, 3], ttl_seconds=300)

    assert await other_cache.lookup("k") == ([1, 2, 3], "L2")
    assert await other_cache.lookup("k") == ([1, 2, 3], "L1")
    s = await other_cache.get_comprehensive_stats()
    assert (s["l1_cache"]["hits"], s["l1_cache"]["misses"]) == (1, 1)
    assert (s["l2_cache"]["hits"], s["l2_cache"]["misses"]) == (1, 0)
    assert (s["l3_cache"]["hits"], s["l3_cache"]["misses"]) == (0, 0)

    # With Redis emptied, a third reader gets it from L3 and refills L2 and its L1.
    await direct.drop_redis("k")
    async with MultiLevelCache(other_cache.config) as third:
        assert await third.lookup("k") == ([1, 2, 3], "L3")
        assert await direct.in_redis("k")
        assert await third.lookup("k") == ([1, 2, 3], "L1")
        s = await third.get_comprehensive_stats()
        assert (s["l1_cache"]["hits"], s["l1_cache"]["misses"]) == (1, 1)
        assert (s["l2_cache"]["hits"], s["l2_cache"]["misses"]) == (0, 1)
        assert (s["l3_cache"]["hits"], s["l3_cache"]["misses"]) == (1, 0)
        assert s["combined_hit_rate"] == 100.0
    # and a fourth now finds it in L2 again
    async with MultiLevelCache(other_cache.config) as fourth:
        assert await fourth.lookup("k") == ([1, 2, 3], "L2")


async def test_miss_everywhere_returns_default_and_counts(cache: MultiLevelCache) -> None:
    assert await cache.get("nope") is None
    assert await cache.get("nope", default=MISSING) is MISSING
    s = await cache.get_comprehensive_stats()
    assert s["l1_cache"]["misses"] == s["l2_cache"]["misses"] == s["l3_cache"]["misses"] == 2
    assert s["combined_hit_rate"] == 0.0
    assert s["target_hit_rate_achieved"] is False


async def test_stored_none_is_not_a_miss(cache: MultiLevelCache, other_cache: MultiLevelCache) -> None:
    await cache.put("none", None)
    assert await cache.get("none", default=MISSING) is None
    assert await other_cache.get("none", default=MISSING) is None  # from L2
    assert await other_cache.get("absent", default=MISSING) is MISSING


@pytest.mark.parametrize("level", ["L1", "L2", "L3"])
async def test_expiry_at_each_level(cache_config: dict, direct: Any, level: str) -> None:
    async with MultiLevelCache(cache_config) as writer:
        await writer.put("e", "v", ttl_seconds=0.4, level=level)
        if level != "L1":
            assert 0 < await direct.redis_pttl("e") <= 400
        if level == "L3":
            await direct.drop_redis("e")  # so only L3 can answer a fresh reader
        async with MultiLevelCache(cache_config) as reader:
            expect = "v" if level != "L1" else None
            assert await reader.get("e") == expect
        await asyncio.sleep(0.5)
        assert await writer.get("e", MISSING) is MISSING  # L1 forgot it
        async with MultiLevelCache(cache_config) as reader:
            assert await reader.get("e", MISSING) is MISSING  # and so did L2 / L3
    if level == "L3":
        # The expired row may still be in the table until swept; it is never returned.
        assert await direct.rows() == 1
        async with MultiLevelCache(cache_config) as c:
            assert await c.l3_cache.tier.sweep() == 1
        assert await direct.rows() == 0


async def test_sweep_walks_the_whole_table_and_deletes_only_expired_rows(
    cache: MultiLevelCache, direct: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlcache.tiers import postgres

    # 2 pages a statement, so 600 rows take many TID ranges; expired and live rows interleave.
    monkeypatch.setattr(postgres, "SWEEP_PAGES", 2)
    await cache.put_many({f"old{i}": "x" * 100 for i in range(300)}, ttl_seconds=0.2)
    await cache.put_many({f"live{i}": "x" * 100 for i in range(300)}, ttl_seconds=60)
    await cache.put_many({f"more-old{i}": "x" * 100 for i in range(300)}, ttl_seconds=0.2)
    pages = await direct.pg.fetchval("SELECT pg_relation_size($1::regclass) / 8192", namespace)
    assert pages > 4 * postgres.SWEEP_PAGES
    await asyncio.sleep(0.4)
    assert await cache.l3_cache.tier.sweep() == 600
    assert await direct.rows() == 300
    assert await direct.pg.fetchval(f'SELECT count(*) FROM "{namespace}" WHERE key LIKE $1', "live%") == 300


async def test_no_index_on_expires_at_and_an_older_one_is_dropped(
    cache_config: dict[str, Any], direct: Any, namespace: str
) -> None:
    # Every write changes expires_at: an index on it taxes every upsert (see tiers/postgres.py).
    index = f"{namespace}_expires_at_idx"
    async with MultiLevelCache(cache_config):
        pass
    await direct.pg.execute(f'CREATE INDEX "{index}" ON "{namespace}" (expires_at)')  # as earlier builds did
    async with MultiLevelCache(cache_config):
        pass
    assert await direct.pg.fetchval("SELECT to_regclass($1)", index) is None


async def test_ttl_none_never_expires(cache: MultiLevelCache, direct: Any) -> None:
    await cache.put("forever", 1, ttl_seconds=None)
    assert await direct.redis_pttl("forever") == -1
    assert (await direct.row("forever"))["expires_at"] is None
    # L1 alone is capped (l1.max_ttl, 300 s by default): the last bound on a lost invalidation.
    assert 299 < cache.l1_cache.lru.ttl("forever") <= 300


async def test_l1_max_ttl_caps_l1_only_and_none_lifts_it(cache_config: dict, direct: Any) -> None:
    async with MultiLevelCache({**cache_config, "l1_max_ttl": 5}) as c:
        await c.put("a", 1, ttl_seconds=60)
        assert 4 < c.l1_cache.lru.ttl("a") <= 5
        assert 59_000 < await direct.redis_pttl("a") <= 60_000
    async with MultiLevelCache({**cache_config, "l1": {"max_ttl": None}}) as c:
        await c.put("b", 1, ttl_seconds=None)
        assert c.l1_cache.lru.ttl("b") is None


async def test_default_ttl_applies(cache_config: dict, direct: Any) -> None:
    async with MultiLevelCache({**cache_config, "default_ttl": 120}) as c:
        await c.put("d", 1)
        assert 119_000 < await direct.redis_pttl("d") <= 120_000
        assert 119 < c.l1_cache.lru.ttl("d") <= 120


async def test_promotion_carries_remaining_lifetime(cache_config: dict, direct: Any) -> None:
    async with MultiLevelCache(cache_config) as writer:
        await writer.put("p", "v", ttl_seconds=1.0)
    await asyncio.sleep(0.3)
    await direct.drop_redis("p")
    async with MultiLevelCache(cache_config) as reader:
        assert await reader.lookup("p") == ("v", "L3")
        # L2 and L1 got what L3 had left (~0.7 s), not a fresh second.
        assert 0 < await direct.redis_pttl("p") <= 750
        assert 0 < reader.l1_cache.lru.ttl("p") <= 0.75
        async with MultiLevelCache(cache_config) as third:
            assert await third.lookup("p") == ("v", "L2")
            assert 0 < third.l1_cache.lru.ttl("p") <= 0.75
            await asyncio.sleep(0.8)
            assert await reader.get("p", MISSING) is MISSING
            assert await third.get("p", MISSING) is MISSING
            assert not await direct.in_redis("p")


async def test_invalidate_removes_every_level(
    cache: MultiLevelCache, other_cache: MultiLevelCache, direct: Any
) -> None:
    await cache.put("gone", {"a": 1})
    assert await other_cache.get("gone") == {"a": 1}
    assert await cache.invalidate("gone") is True
    assert not await direct.in_redis("gone")
    assert await direct.row("gone") is None
    assert "gone" not in cache.l1_cache.lru
    assert await cache.get("gone", MISSING) is MISSING
    assert await cache.invalidate("gone") is False


async def test_level_l1_writes_nothing_below(cache: MultiLevelCache, direct: Any) -> None:
    await cache.put("only-l1", 1, level="L1")
    assert await cache.get("only-l1") == 1
    assert await direct.redis_keys() == []
    assert await direct.rows() == 0


async def test_level_l2_writes_nothing_to_l3(cache: MultiLevelCache, direct: Any) -> None:
    await cache.put("to-l2", 1, level="L2")
    assert await direct.in_redis("to-l2")
    assert await direct.rows() == 0


@pytest.mark.parametrize(
    "key",
    ["a'; DROP TABLE x; --", "*", "user:[0-9]?", "line\nbreak", "100%_done", "ünïcødé ✓", "\\", " "],
)
async def test_odd_keys_are_just_keys(cache: MultiLevelCache, other_cache: MultiLevelCache, key: str) -> None:
    await cache.put(key, key)
    await cache.put(key + "-other", "x")
    assert await other_cache.get(key) == key
    assert await cache.invalidate(key)
    assert await other_cache.get(key + "-other") == "x"


async def test_corrupt_bytes_are_a_miss_and_deleted(cache: MultiLevelCache, direct: Any) -> None:
    await direct.redis.set(f"{direct.ns}:bad", b"not an envelope")
    assert await cache.get("bad", MISSING) is MISSING
    assert not await direct.in_redis("bad")
    assert (await cache.l2_cache.get_stats())["corrupt_entries"] == 1
    # bytes stored under another key are refused too
    await cache.put("a", 1, level="L2")
    raw = await direct.redis.get(f"{direct.ns}:a")
    await direct.redis.set(f"{direct.ns}:b", raw)
    assert await cache.get("b", MISSING) is MISSING
    assert (await cache.l2_cache.get_stats())["corrupt_entries"] == 2


async def test_comprehensive_stats_contract(cache: MultiLevelCache) -> None:
    await cache.put("s1", 1)
    for _ in range(9):
        await cache.get("s1")
    await cache.get("missing")
    s = await cache.get_comprehensive_stats()
    assert s["combined_hit_rate"] == pytest.approx(90.0)
    assert s["target_hit_rate_achieved"] is True
    for level in ("l1_cache", "l2_cache", "l3_cache"):
        for field in ("hits", "misses", "hit_rate", "entries"):
            assert field in s[level]
    assert s["l1_cache"]["entries"] == 1 and s["l2_cache"]["entries"] == 1 and s["l3_cache"]["entries"] == 1
    for field in ("capacity", "max_capacity", "capacity_utilization"):
        assert field in s["l1_cache"]
    assert cache.l1_cache.get_stats()["hits"] == 9
    assert (await cache.l2_cache.get_stats())["misses"] == 1


async def test_l1_capacity_settable_and_bounded(cache: MultiLevelCache) -> None:
    from mlcache import ConfigError

    cache.l1_cache.max_capacity = 500
    cache.l1_cache.capacity = 3
    for i in range(5):
        await cache.put(f"c{i}", i, level="L1")
    assert cache.l1_cache.lru.keys() == ["c4", "c3", "c2"]
    with pytest.raises(ConfigError, match="capacity"):
        cache.l1_cache.capacity = 501
    cache.l1_cache.max_capacity = 2  # lowering the ceiling shrinks the LRU
    assert cache.l1_cache.capacity == 2 and len(cache.l1_cache) == 2


async def test_clear_empties_the_namespace(cache: MultiLevelCache, direct: Any) -> None:
    for i in range(20):
        await cache.put(f"k{i}", i)
    await cache.clear()
    assert await direct.redis_keys() == []
    assert await direct.rows() == 0
    assert len(cache.l1_cache) == 0


async def test_l1_only_cache_needs_no_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("POSTGRES_URL", raising=False)
    cache = MultiLevelCache({"l1_capacity": 10})
    await cache.put("a", 1)
    assert await cache.get("a") == 1
    s = await cache.get_comprehensive_stats()
    assert s["l2_cache"]["enabled"] is False and s["l3_cache"]["enabled"] is False
    assert await cache.l2_cache.get_stats() == s["l2_cache"]


async def test_use_before_initialize_is_a_clear_error(cache_config: dict) -> None:
    cache = MultiLevelCache(cache_config)
    with pytest.raises(RuntimeError, match="initialize"):
        await cache.get("x")
    await cache.close()


async def test_schema_creation_is_safe_when_processes_start_at_once(cache_config: dict, direct: Any) -> None:
    caches = [MultiLevelCache(cache_config) for _ in range(6)]
    await asyncio.gather(*(c.initialize() for c in caches))
    await caches[0].put("x", 1)
    assert await caches[5].get("x") == 1
    await asyncio.gather(*(c.close() for c in caches))
    assert await direct.rows() == 1


async def test_lone_l3_reads_take_the_protocol_path_or_fetchrow_alike(cache_config: dict[str, Any]) -> None:
    # A lone L3 read runs asyncpg's protocol call under fetchrow (tiers/postgres.py); an
    # asyncpg without it gets fetchrow itself.  Both must answer hits, misses and expired
    # rows alike, and the prepared statement must outlive a collection: asyncpg closes a
    # statement neither its cache nor any PreparedStatement object holds.
    import functools
    import gc

    from mlcache.tiers import postgres

    config = {**cache_config, "redis_url": None, "l1": {"initial_capacity": 1, "max_capacity": 1}}
    async with MultiLevelCache(config) as cache:
        await cache.put_many({f"k{i}": i for i in range(20)}, ttl_seconds=300)
        await cache.put("short", "x", ttl_seconds=0.2)
        tier = cache.l3_cache.tier
        for _ in range(100):
            await cache.get("k0")
            if tier._solo_read is not None:
                break
            await asyncio.sleep(0.01)
        assert isinstance(tier._solo_read, functools.partial)  # the protocol path was taken

        await asyncio.sleep(0.25)  # "short" expires

        async def reads_through(read: Any) -> None:
            tier._solo_read = read
            await tier._solo.reload_schema_state()  # empties the connection's statement cache
            gc.collect()
            await tier._solo.fetchval("SELECT 1")  # sends the closes of unheld statements
            assert [await cache.get(f"k{i}") for i in range(20)] == list(range(20))
            assert await cache.get("nope", MISSING) is MISSING
            assert await cache.get("short", MISSING) is MISSING
            assert tier._solo_read is read and cache.l3_cache.errors == 0  # nothing failed

        await reads_through(tier._solo_read)

        class OnlyFetchrow:  # a statement whose asyncpg internals are not the ones expected
            def __init__(self, stmt: Any) -> None:
                self.fetchrow = stmt.fetchrow

        fallback = await postgres._protocol_read(OnlyFetchrow(tier._solo_stmt))  # type: ignore[arg-type]
        assert not isinstance(fallback, functools.partial)
        await reads_through(fallback)
        assert cache.l3_cache.errors == 0
