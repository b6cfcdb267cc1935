"""The user's guide's examples, run as written with ``mlcache`` in place of
``multilevel_cache_system`` (only the config values point at the test servers)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import mlcache


async def test_basic_usage(cache_config: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = cache_config
    from mlcache import MultiLevelCacheManager

    async def example_usage():
        # Initialize cache
        cache = MultiLevelCacheManager(config)
        await cache.initialize()

        # Store data
        await cache.put("user:123", {"name": "John", "role": "admin"})

        # Retrieve data (automatically checks L1 -> L2 -> L3)
        user_data = await cache.get("user:123")

        # Invalidate data from all levels
        await cache.invalidate("user:123")

        # Get performance statistics
        stats = await cache.get_comprehensive_stats()
        print(f"Combined hit rate: {stats['combined_hit_rate']:.1f}%")
        await cache.close()  # (not in the guide's snippet; a test must not leak connections)
        return user_data

    assert await example_usage() == {"name": "John", "role": "admin"}
    assert "Combined hit rate: 100.0%" in capsys.readouterr().out


async def test_initialize_step_3(redis_url: str, postgres_url: str, namespace: str) -> None:
    from mlcache import MultiLevelCacheManager

    # Configuration
    cache_config = {
        'l1_capacity': 50000,
        'l1_max_capacity': 200000,
        'redis_url': redis_url,
        'postgres_url': postgres_url,
        'prometheus_port': 8000  # Optional metrics server
    }
    cache_config["key_prefix"] = namespace  # keep the test's data apart
    cache_config["prometheus_addr"] = "127.0.0.1"  # tests listen on loopback only

    # Initialize
    cache_manager = MultiLevelCacheManager(cache_config)
    await cache_manager.initialize()
    assert cache_manager.l1_cache.capacity == 50000 and cache_manager.l1_cache.max_capacity == 200000
    await cache_manager.close()


async def test_cache_decorator(cache: mlcache.MultiLevelCache) -> None:
    from mlcache import cache_result

    computed = []

    def heavy_computation(param1, param2):
        computed.append((param1, param2))
        return f"{param1}+{param2}"

    @cache_result(cache, ttl_seconds=1800, cache_level="L2")
    async def expensive_operation(param1, param2):
        # Expensive computation
        result = heavy_computation(param1, param2)
        return result

    # First call - computes and caches result
    result1 = await expensive_operation("value1", "value2")

    # Second call - returns cached result
    result2 = await expensive_operation("value1", "value2")

    assert result1 == result2 == "value1+value2"
    assert computed == [("value1", "value2")]
    assert (await cache.l3_cache.get_stats())["entries"] == 0  # cache_level="L2": not in L3


async def test_performance_dashboard_and_debugging(cache: mlcache.MultiLevelCache, capsys) -> None:
    await cache.put("a", 1)
    await cache.get("a")

    # Get comprehensive statistics
    stats = await cache.get_comprehensive_stats()

    print(f"Performance Summary:")
    print(f"  Combined Hit Rate: {stats['combined_hit_rate']:.1f}%")
    print(f"  L1 Hit Rate: {stats['l1_cache']['hit_rate']:.1f}%")
    print(f"  L2 Hit Rate: {stats['l2_cache']['hit_rate']:.1f}%")
    print(f"  L3 Hit Rate: {stats['l3_cache']['hit_rate']:.1f}%")
    print(f"  Target Achieved: {stats['target_hit_rate_achieved']}")

    # Check cache configuration
    print(f"L1 Capacity Utilization: {stats['l1_cache']['capacity_utilization']:.1f}%")

    # Increase L1 capacity if needed
    cache.l1_cache.capacity = 100000
    cache.l1_cache.max_capacity = 500000

    # Monitor cache operations
    cache_stats = await cache.get_comprehensive_stats()
    print(json.dumps(cache_stats, indent=2))

    # Check individual cache level performance
    l1_stats = cache.l1_cache.get_stats()
    l2_stats = await cache.l2_cache.get_stats()
    l3_stats = await cache.l3_cache.get_stats()

    out = capsys.readouterr().out
    assert "Target Achieved: True" in out
    assert l1_stats["capacity"] == 100000 and l1_stats["max_capacity"] == 500000
    assert l2_stats["entries"] == 1 and l3_stats["entries"] == 1


async def test_ttl_strategy(cache: mlcache.MultiLevelCache) -> None:
    status, profile, settings, table = "online", {"bio": "x"}, {"theme": "dark"}, list(range(10))
    # Short TTL for frequently changing data
    await cache.put("user_status:123", status, ttl_seconds=300)  # 5 minutes
    # Medium TTL for moderately stable data
    await cache.put("user_profile:123", profile, ttl_seconds=3600)  # 1 hour
    # Long TTL for stable reference data
    await cache.put("config:app_settings", settings, ttl_seconds=86400)  # 1 day
    # No TTL for permanent cache
    await cache.put("static:lookup_table", table, ttl_seconds=None)
    assert await cache.get("static:lookup_table") == table


def test_health_check_snippet(monkeypatch: pytest.MonkeyPatch) -> None:
    # The guide's synchronous health check: asyncio.run(cache.get_comprehensive_stats())
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("POSTGRES_URL", raising=False)
    from mlcache import MultiLevelCacheManager

    config: dict[str, Any] = {}
    cache = MultiLevelCacheManager(config)
    stats = asyncio.run(cache.get_comprehensive_stats())
    assert stats["combined_hit_rate"] == 0.0
