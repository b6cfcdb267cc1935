"""L1 inside the cache: adaptive sizing runs in the background, memory bound, policy choice."""
from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from mlcache import ConfigError, MultiLevelCache


def l1_only(**l1: Any) -> MultiLevelCache:
    return MultiLevelCache({"redis_url": None, "postgres_url": None, "l1": l1})


def zipf_keys(n_keys: int, count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    weights = [1.0 / (r + 1) ** 0.99 for r in range(n_keys)]
    return [f"z{r}" for r in rng.choices(range(n_keys), weights=weights, k=count)]


async def drive(cache: MultiLevelCache, keys: list[str]) -> None:
    for i, key in enumerate(keys):
        if await cache.get(key) is None:
            await cache.put(key, i, level="L1")
        if i % 2000 == 0:
            await asyncio.sleep(0)  # let the resizer run between bursts


async def test_controller_grows_l1_toward_the_target() -> None:
    cache = l1_only(initial_capacity=200, max_capacity=20_000, target_hit_rate=80.0, resize_interval=0.02)
    async with cache:
        for _ in range(6):
            await drive(cache, zipf_keys(20_000, 20_000))
            await asyncio.sleep(0.03)
        stats = cache.l1_cache.get_stats()
    adaptive = stats["adaptive"]
    assert stats["capacity"] > 200 and adaptive["resizes"] >= 1
    assert adaptive["last_resize"]["reason"].startswith("grow")
    assert stats["capacity"] <= 20_000


async def test_controller_does_not_grow_on_a_scan() -> None:
    cache = l1_only(initial_capacity=200, max_capacity=20_000, target_hit_rate=80.0, resize_interval=0.02)
    async with cache:
        for round_ in range(6):
            await drive(cache, [f"s{round_}:{i}" for i in range(20_000)])
            await asyncio.sleep(0.03)
        adaptive = cache.l1_cache.get_stats()["adaptive"]
        assert cache.l1_cache.capacity == 200
        assert adaptive["decisions"] >= 3 and adaptive["resizes"] == 0


async def test_adaptive_off_keeps_capacity() -> None:
    cache = l1_only(initial_capacity=200, max_capacity=20_000, adaptive=False, resize_interval=0.02)
    async with cache:
        await drive(cache, zipf_keys(20_000, 20_000))
        await asyncio.sleep(0.05)
        assert cache.l1_cache.capacity == 200 and cache.l1_cache.get_stats()["adaptive"] is None


async def test_memory_bound_uses_serialized_size() -> None:
    cache = l1_only(initial_capacity=10_000, max_memory_bytes=200_000)
    for i in range(1000):
        await cache.put(f"m{i}", "x" * 1000, level="L1")
    stats = cache.l1_cache.get_stats()
    assert stats["memory_bytes"] <= 200_000
    assert 100 < stats["entries"] < 200
    assert stats["bytes_per_entry"] >= 1000


@pytest.mark.parametrize("policy", ["lru", "tinylfu"])
async def test_policy_choice(policy: str) -> None:
    cache = l1_only(initial_capacity=100, policy=policy)
    await cache.put("a", 1, level="L1")
    assert await cache.get("a") == 1
    assert cache.l1_cache.get_stats()["policy"] == policy


def test_bad_l1_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match="l1.policy"):
        l1_only(policy="fifo")
    with pytest.raises(ConfigError, match="max_memory_bytes"):
        l1_only(max_memory_bytes=0)
