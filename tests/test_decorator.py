"""cache_result: keys from name + arguments, stable across processes, single-flight."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from mlcache import MultiLevelCache, SerializationError, cache_result


async def test_caches_by_arguments(cache: MultiLevelCache) -> None:
    calls: list[tuple] = []

    @cache_result(cache, ttl_seconds=60, cache_level="L2")
    async def add(a: int, b: int = 2) -> int:
        calls.append((a, b))
        return a + b

    assert await add(1) == 3
    assert await add(1, 2) == 3       # defaults applied: the same key
    assert await add(a=1, b=2) == 3
    assert await add(2) == 4
    assert calls == [(1, 2), (2, 2)]
    assert add.__name__ == "add"


async def test_concurrent_calls_run_once(cache: MultiLevelCache) -> None:
    runs = 0

    @cache_result(cache, ttl_seconds=60)
    async def slow(x: str) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.1)
        return x.upper()

    results = await asyncio.gather(*(slow("a") for _ in range(50)), slow("b"))
    assert results == ["A"] * 50 + ["B"]
    assert runs == 2


async def test_exceptions_reach_every_waiter_and_are_not_cached(cache: MultiLevelCache) -> None:
    runs = 0

    @cache_result(cache, ttl_seconds=60)
    async def boom(x: int) -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        raise KeyError(x)

    results = await asyncio.gather(*(boom(1) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, KeyError) for r in results) and runs == 1
    with pytest.raises(KeyError):
        await boom(1)
    assert runs == 2


async def test_none_results_are_cached(cache: MultiLevelCache) -> None:
    runs = 0

    @cache_result(cache)
    async def nothing() -> None:
        nonlocal runs
        runs += 1

    assert await nothing() is None and await nothing() is None
    assert runs == 1


async def test_cancelled_waiter_does_not_cancel_the_others(cache: MultiLevelCache) -> None:
    @cache_result(cache, ttl_seconds=60)
    async def slow(x: int) -> int:
        await asyncio.sleep(0.2)
        return x

    first = asyncio.create_task(slow(7))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(slow(7))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await first == 7


async def test_unserializable_arguments_or_results(cache: MultiLevelCache) -> None:
    @cache_result(cache)
    async def f(x: object) -> object:
        return x

    with pytest.raises(SerializationError, match="key_builder"):
        await f(object())

    @cache_result(cache)
    async def returns_set() -> set[int]:
        return {1}

    with pytest.raises(SerializationError):
        await returns_set()

    @cache_result(cache, key_builder=lambda x: f"obj:{id(x)}")
    async def g(x: object) -> int:
        return 1

    assert await g(object()) == 1


def test_decorating_a_sync_function_is_refused(cache_config: dict) -> None:
    with pytest.raises(TypeError, match="async"):
        cache_result(MultiLevelCache({"redis_url": None, "postgres_url": None}))(lambda: 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [{"cache_level": "L9"}, {"ttl_seconds": 0}])
def test_bad_decorator_arguments(bad: dict) -> None:
    with pytest.raises(ValueError):
        cache_result(MultiLevelCache({"redis_url": None, "postgres_url": None}), **bad)


def test_key_is_stable_across_processes() -> None:
    code = textwrap.dedent(
        """
        import asyncio
        from mlcache import MultiLevelCache, cache_result
        cache = MultiLevelCache({"redis_url": None, "postgres_url": None})
        async def expensive_operation(param1, param2=None):
            return 1
        expensive_operation.__module__ = "app.module"
        wrapped = cache_result(cache, ttl_seconds=60)(expensive_operation)
        asyncio.run(wrapped("value1", param2={"b": [1, 2], "a": (3,)}))
        print(cache.l1_cache.lru.keys()[0])
        """
    )
    keys = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout.strip()
        for seed in (1, 2)
    }
    assert len(keys) == 1
    (key,) = keys
    assert key.startswith("mlcache.fn:app.module.expensive_operation:")


async def test_first_caller_cancelled_does_not_cancel_the_shared_call(cache: MultiLevelCache) -> None:
    # cache_result goes through get_or_set: the call runs in a task of its own.
    runs = 0

    @cache_result(cache, ttl_seconds=60)
    async def slow(x: int) -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.2)
        return x

    first = asyncio.create_task(slow(3))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(slow(3))
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await waiter == 3 and runs == 1


async def test_loading_options_apply_to_the_decorator(cache: MultiLevelCache) -> None:
    fail = False

    @cache_result(cache, ttl_seconds=0.1, max_stale=60)
    async def report(day: str) -> dict[str, str]:
        if fail:
            raise ConnectionError("database down")
        return {"day": day}

    assert await report("mon") == {"day": "mon"}
    await asyncio.sleep(0.15)
    fail = True
    assert await report("mon") == {"day": "mon"}             # stale, served by fail-safe
    assert cache.loading.stats()["stale_served"] == 1
    with pytest.raises(TypeError, match="unexpected option"):
        cache_result(cache, stale_for=1)
