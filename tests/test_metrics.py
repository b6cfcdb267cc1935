"""Prometheus metrics: the guide's names, labelled by level, served over HTTP."""
from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

from mlcache import MultiLevelCache


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def sample(text: str, name: str, level: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}{{level="{level}"}} '):
            return float(line.split()[-1])
    raise AssertionError(f"{name}{{level={level}}} not in metrics:\n{text}")


async def test_metrics_endpoint(cache_config: dict[str, Any]) -> None:
    config = {**cache_config, "prometheus_port": 0, "prometheus_addr": "127.0.0.1"}
    async with MultiLevelCache(config) as cache:
        await cache.put("a", 1)
        await cache.get("a")
        async with MultiLevelCache(config) as other:
            await other.get("a")       # L1 miss, L2 hit
            await other.get("nope")    # misses everywhere
            await other.metrics.refresh_now()
            text = await asyncio.to_thread(scrape, other.metrics.port)
    assert sample(text, "cache_hits_total", "L1") == 0
    assert sample(text, "cache_misses_total", "L1") == 2
    assert sample(text, "cache_hits_total", "L2") == 1
    assert sample(text, "cache_misses_total", "L2") == 1
    assert sample(text, "cache_misses_total", "L3") == 1
    assert sample(text, "cache_entries_total", "L2") == 1
    assert sample(text, "cache_entries_total", "L3") == 1
    assert sample(text, "cache_size_bytes", "L3") > 0
    assert sample(text, "cache_access_seconds_count", "L2") == 2
    assert 'cache_access_seconds_bucket{le="+Inf",level="L3"} 1.0' in text
    assert "key" not in text.replace("cache_", "")  # never labelled by key


async def test_busy_metrics_port_does_not_stop_the_cache(cache_config: dict[str, Any]) -> None:
    config = {**cache_config, "prometheus_port": 0, "prometheus_addr": "127.0.0.1"}
    async with MultiLevelCache(config) as first:
        busy = {**config, "prometheus_port": first.metrics.port}
        async with MultiLevelCache(busy) as second:
            assert second.metrics.port is None
            await second.put("k", 1)
            assert await second.get("k") == 1
