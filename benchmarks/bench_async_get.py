"""``await cache.get(key)`` answered by L1, against the bare asyncio floor and async peers.

Run::

    PYTHONPATH=src python -m pytest benchmarks/bench_async_get.py --benchmark-only -q

Every contestant holds the same 100k str keys and is read with the same Zipf(0.99) stream
of 10k keys, all hits.  A round is one coroutine, ``for k in keys: await get(k)`` with ``get``
bound to a local, run to completion on one event loop made for the module (the loop is not
built per round; ``run_until_complete`` adds about 10 us to a round of several ms).

* floor: ``async def get(k): return d.get(k)``, the least an awaited lookup can cost.
* ``MultiLevelCache``: L1 only (no Redis, no PostgreSQL), filled with ``put(..., level="L1")``
  and so with the configured default TTL, as an application fills it; and again with
  ``ttl_seconds=None``, to show what reading the clock on a hit costs.
* cashews ``mem://`` (its in-memory backend, sized to hold every key; the once-a-second
  expiry sweep is turned off, as it would otherwise run inside timed rounds).
* aiocache ``SimpleMemoryCache``: as constructed by default (its 5 s operation timeout wraps
  every call in ``asyncio.wait_for``) and with ``timeout=None``.

The summary at the end prints each figure beside the floor and beside cashews.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mlcache import MultiLevelCache


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module", autouse=True)
def _no_shared_levels() -> Iterator[None]:
    # An explicit None already turns a level off; unsetting the variables rules them out.
    saved = {name: os.environ.pop(name) for name in ("REDIS_URL", "POSTGRES_URL") if name in os.environ}
    yield
    os.environ.update(saved)


def _time(measure: Any, loop: asyncio.AbstractEventLoop, get: Callable[[str], Any], stream: list[str],
          contestant: str, role: str = "") -> None:
    async def round_() -> None:
        for k in stream:
            await get(k)

    measure(lambda: loop.run_until_complete(round_()), len(stream), contestant, role)


@pytest.mark.benchmark(group="await-get-hit")
def test_asyncio_floor(measure: Any, loop: asyncio.AbstractEventLoop, keys: list[str], zipf_keys: list[str]) -> None:
    lookup = {k: k for k in keys}.get

    async def get(k: str) -> Any:
        return lookup(k)

    _time(measure, loop, get, zipf_keys, "asyncio floor: await async-def dict.get", "floor")


@pytest.mark.benchmark(group="await-get-hit")
@pytest.mark.parametrize("ttl", ["default", None], ids=["default-ttl", "no-ttl"])
def test_mlcache(measure: Any, loop: asyncio.AbstractEventLoop, keys: list[str], zipf_keys: list[str],
                 ttl: Any) -> None:
    cache = MultiLevelCache({"redis_url": None, "postgres_url": None, "l1_capacity": len(keys),
                             "l1_max_capacity": len(keys)})

    async def fill() -> None:
        await cache.initialize()
        for k in keys:
            if ttl == "default":
                await cache.put(k, k, level="L1")
            else:
                await cache.put(k, k, ttl_seconds=ttl, level="L1")

    loop.run_until_complete(fill())
    label = "default TTL" if ttl == "default" else "ttl_seconds=None"
    _time(measure, loop, cache.get, zipf_keys, f"MultiLevelCache.get, L1 hit ({label})")
    l1 = cache.l1_cache.lru
    assert l1.misses == 0 and l1.hits > 0, "every read must be an L1 hit"
    loop.run_until_complete(cache.close())


@pytest.mark.benchmark(group="await-get-hit")
def test_cashews(measure: Any, loop: asyncio.AbstractEventLoop, keys: list[str], zipf_keys: list[str]) -> None:
    cashews = pytest.importorskip("cashews")
    cache = cashews.Cache()
    cache.setup(f"mem://?size={2 * len(keys)}&check_interval=0")

    async def fill() -> None:
        await cache.init()
        for k in keys:
            await cache.set(k, k, expire=3600)
        assert await cache.get(zipf_keys[0]) == zipf_keys[0]

    loop.run_until_complete(fill())
    _time(measure, loop, cache.get, zipf_keys, "cashews mem:// get", "reference")
    loop.run_until_complete(cache.close())


@pytest.mark.benchmark(group="await-get-hit")
@pytest.mark.parametrize("timeout", ["default", None], ids=["default-timeout", "no-timeout"])
def test_aiocache(measure: Any, loop: asyncio.AbstractEventLoop, keys: list[str], zipf_keys: list[str],
                  timeout: Any) -> None:
    aiocache = pytest.importorskip("aiocache")
    cache = aiocache.SimpleMemoryCache() if timeout == "default" else aiocache.SimpleMemoryCache(timeout=None)

    async def fill() -> None:
        for k in keys:
            await cache.set(k, k, ttl=3600)
        assert await cache.get(zipf_keys[0]) == zipf_keys[0]

    loop.run_until_complete(fill())
    label = "default timeout=5" if timeout == "default" else "timeout=None"
    _time(measure, loop, cache.get, zipf_keys, f"aiocache SimpleMemoryCache get ({label})")
    loop.run_until_complete(cache.close())
