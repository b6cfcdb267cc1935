"""Bulk calls and automatic batching return exactly what per-key calls would."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlcache import MultiLevelCache, SerializationError, TierError
from mlcache.batching import BatchLoader, Deadlines, WriteBatcher

MISSING = object()


async def populate(cache: MultiLevelCache, direct: Any) -> list[str]:
    """Keys living at different levels, plus an expired one and a stored None."""
    await cache.put("in-all", {"v": 1})
    await cache.put("only-l2", [2], level="L2")
    await cache.put("only-l3", "three")
    await direct.drop_redis("only-l3")
    await cache.put("none", None)
    await cache.put("short", 1, ttl_seconds=0.05)
    await asyncio.sleep(0.1)
    return ["in-all", "only-l2", "only-l3", "none", "short", "absent", "in-all"]


async def per_key(config: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    async with MultiLevelCache(config) as c:
        out = {}
        for k in keys:
            v = await c.get(k, MISSING)
            if v is not MISSING:
                out[k] = v
        return out


async def test_get_many_matches_per_key_gets(cache: MultiLevelCache, cache_config: dict, direct: Any) -> None:
    keys = await populate(cache, direct)
    expected = {"in-all": {"v": 1}, "only-l2": [2], "only-l3": "three", "none": None}
    async with MultiLevelCache(cache_config) as fresh:
        assert await fresh.get_many(keys) == expected
        # promoted: L3's hit is back in L2, and everything is in this process's L1 now
        assert await direct.in_redis("only-l3")
        assert {k: (await fresh.lookup(k))[1] for k in expected} == dict.fromkeys(expected, "L1")
        s = await fresh.get_comprehensive_stats()
        assert (s["l2_cache"]["hits"], s["l2_cache"]["misses"]) == (3, 3)
        assert (s["l3_cache"]["hits"], s["l3_cache"]["misses"]) == (1, 2)
    await direct.drop_redis("only-l3")
    assert await per_key(cache_config, keys) == expected
    assert await cache.get_many(keys) == expected  # the writer, from its own L1


async def test_get_many_promotes_with_remaining_lifetime(cache: MultiLevelCache, cache_config: dict,
                                                         direct: Any) -> None:
    await cache.put("p", 1, ttl_seconds=1.0)
    await direct.drop_redis("p")
    await asyncio.sleep(0.3)
    async with MultiLevelCache(cache_config) as fresh:
        assert await fresh.get_many(["p"]) == {"p": 1}
        assert 0 < await direct.redis_pttl("p") <= 750
        assert 0 < fresh.l1_cache.lru.ttl("p") <= 0.75


async def test_put_many_and_invalidate_many(cache: MultiLevelCache, cache_config: dict, direct: Any) -> None:
    data = {f"k{i}": {"i": i} for i in range(50)}
    await cache.put_many(data, ttl_seconds=60)
    assert len(await direct.redis_keys()) == 50 and await direct.rows() == 50
    assert 59_000 < await direct.redis_pttl("k7") <= 60_000
    async with MultiLevelCache(cache_config) as fresh:
        assert await fresh.get_many(list(data)) == data
    await cache.invalidate_many(["k1", "k2", "k2", "nope"])
    assert not await direct.in_redis("k1") and await direct.row("k2") is None
    assert await cache.get_many(["k1", "k2", "k3"]) == {"k3": {"i": 3}}


async def test_put_many_levels_and_no_expiry(cache: MultiLevelCache, direct: Any) -> None:
    await cache.put_many({"a": 1, "b": 2}, ttl_seconds=None, level="L2")
    assert await direct.redis_pttl("a") == -1 and await direct.rows() == 0
    await cache.put_many({"c": 3}, level="L1")
    assert not await direct.in_redis("c")


@pytest.mark.parametrize(
    "mapping,exc",
    [({"ok": 1, "": 2}, ValueError), ({"ok": 1, "bad": {1, 2}}, SerializationError), ({"ok": 1, 5: 2}, TypeError)],
)
async def test_put_many_checks_everything_first(cache: MultiLevelCache, direct: Any, mapping: dict, exc: type) -> None:
    with pytest.raises(exc):
        await cache.put_many(mapping)
    assert await direct.redis_keys() == [] and await direct.rows() == 0 and len(cache.l1_cache) == 0


async def test_bulk_bad_arguments(cache: MultiLevelCache) -> None:
    with pytest.raises(TypeError):
        await cache.get_many("abc")
    with pytest.raises(TypeError):
        await cache.put_many([("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl_seconds"):
        await cache.put_many({"a": 1}, ttl_seconds=-1)
    assert await cache.get_many([]) == {}


async def test_concurrent_gets_are_batched(cache: MultiLevelCache, cache_config: dict) -> None:
    data = {f"b{i}": i for i in range(200)}
    await cache.put_many(data)
    async with MultiLevelCache(cache_config) as fresh:
        keys = [f"b{i % 150}" for i in range(300)] + ["absent"] * 5
        results = await asyncio.gather(*(fresh.get(k, MISSING) for k in keys))
        assert results == [data.get(k, MISSING) for k in keys]
        loader = fresh.l2_cache.loader
        assert loader.keys_fetched == 151           # each distinct key once
        # 151 keys in as few round trips as max_batch allows (+1: the first caller may go alone)
        assert loader.batches <= -(-151 // loader.max_batch) + 1


async def test_a_batched_read_counts_every_caller_once(cache: MultiLevelCache, cache_config: dict) -> None:
    # Hits, misses and latency are counted per round trip, for every caller it served.
    await cache.put_many({f"c{i}": i for i in range(40)})
    async with MultiLevelCache({**cache_config, "postgres_url": None}) as fresh:
        keys = [f"c{i}" for i in range(40)] + [f"c{i}" for i in range(10)] + [f"none{i}" for i in range(14)]
        await asyncio.gather(*(fresh.get(k) for k in keys))
        level = fresh.l2_cache
        assert (level.hits, level.misses) == (50, 14)
        assert sum(level.latency_counts) == 64 and level.read_seconds > 0
        await fresh.get("c0")                    # an L1 hit now: L2 counts nothing
        assert (level.hits, level.misses, sum(level.latency_counts)) == (50, 14, 64)


async def test_lone_caller_takes_the_single_key_path(cache: MultiLevelCache, cache_config: dict) -> None:
    await cache.put("solo", 1)
    async with MultiLevelCache(cache_config) as fresh:
        assert await fresh.get("solo") == 1
        assert (fresh.l2_cache.loader.batches, fresh.l2_cache.loader.keys_fetched) == (1, 1)


async def test_invalidate_then_get_never_sees_old_value(cache: MultiLevelCache, cache_config: dict) -> None:
    await cache.put_many({f"r{i}": i for i in range(50)})
    async with MultiLevelCache(cache_config) as reader:
        for _ in range(5):
            readers = [asyncio.create_task(reader.get(f"r{i}")) for i in range(50)]
            await cache.invalidate_many([f"r{i}" for i in range(50)])
            await asyncio.gather(*readers)
            reader.l1_cache.lru.clear()
            after = await asyncio.gather(*(reader.get(f"r{i}", MISSING) for i in range(50)))
            assert all(v is MISSING for v in after)
            await cache.put_many({f"r{i}": i for i in range(50)})


# --- the loader on its own, with a fetcher we control ---------------------------------------

class Fetcher:
    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.fail, self.delay = fail, delay

    async def one(self, key: str) -> str:
        return (await self.many([key]))[0]

    async def many(self, keys: Any) -> list[str]:
        self.calls.append(list(keys))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise TierError("L2", "boom")
        return [k.upper() for k in keys]


async def test_loader_caps_batch_size() -> None:
    f = Fetcher()
    loader = BatchLoader(f.one, f.many, max_batch=4)
    assert await asyncio.gather(*(loader.load(f"k{i}") for i in range(10))) == [f"K{i}" for i in range(10)]
    # Two full batches leave as they fill; the batch begun with the first key takes the rest.
    assert sorted(len(c) for c in f.calls) == [2, 4, 4]
    assert sorted(k for c in f.calls for k in c) == sorted(f"k{i}" for i in range(10))


async def test_loader_errors_reach_every_waiter() -> None:
    f = Fetcher(fail=True, delay=0.01)
    loader = BatchLoader(f.one, f.many)
    results = await asyncio.gather(*(loader.load(k) for k in "abca"), return_exceptions=True)
    assert all(isinstance(r, TierError) for r in results) and f.calls == [["a", "b", "c"]]


class Observed:
    def __init__(self) -> None:
        self.calls: list[tuple[float, int, int]] = []

    def __call__(self, seconds: float, served: int, found: int) -> None:
        self.calls.append((seconds, served, found))

    def totals(self) -> tuple[int, int]:
        return sum(c[1] for c in self.calls), sum(c[2] for c in self.calls)


async def test_loader_observes_each_round_trip_once() -> None:
    class Sparse(Fetcher):
        async def many(self, keys: Any) -> list[Any]:
            return [None if k.startswith("x") else v for k, v in zip(keys, await super().many(keys))]

    f, seen = Sparse(delay=0.02), Observed()
    loader = BatchLoader(f.one, f.many, observe=seen)
    await asyncio.gather(*(loader.load(k) for k in ["a", "b", "a", "x1", "x2", "b", "a"]))
    # One round trip: 7 callers answered, 5 of them with a value, timed from the first request.
    assert len(seen.calls) == 1 and seen.totals() == (7, 5) and 0.02 <= seen.calls[0][0] < 1.0

    failing, seen = Fetcher(fail=True), Observed()
    loader = BatchLoader(failing.one, failing.many, observe=seen)
    await asyncio.gather(*(loader.load(k) for k in "abca"), return_exceptions=True)
    assert seen.totals() == (4, 0)          # every caller failed: counted, nothing found

    slow, seen = Fetcher(delay=0.3), Observed()
    loader = BatchLoader(slow.one, slow.many, timeout=0.05, observe=seen)
    await asyncio.gather(*(loader.load(k) for k in "abc"), return_exceptions=True)
    assert seen.calls == [(0.05, 3, 0)]     # left at the deadline, counted once, as the deadline
    await asyncio.wait(list(loader._tasks))
    assert seen.totals() == (3, 0)          # the late answer served nobody: not counted again

    direct, seen = Fetcher(delay=0.01), Observed()
    loader = BatchLoader(direct.one, direct.many, direct=True, observe=seen)
    assert await loader.load("a") == "A"
    assert seen.totals() == (1, 1)


async def test_deadlines_share_one_timer_and_expire_in_order() -> None:
    deadlines = Deadlines(0.05)
    expired: list[str] = []
    entries = {name: deadlines.add(expired.append, name) for name in "abc"}
    timer = deadlines._timer
    await asyncio.sleep(0.02)
    entries["d"] = deadlines.add(expired.append, "d")
    assert deadlines._timer is timer                  # one timer for all of them
    deadlines.done(entries["b"])                      # ended in time: never expires
    await asyncio.sleep(0.04)
    assert expired == ["a", "c"]                      # a and c at their deadline, d not yet
    await asyncio.sleep(0.03)
    assert expired == ["a", "c", "d"] and not deadlines._queue and deadlines._timer is None
    late = deadlines.add(expired.append, "e")         # an idle batcher arms it again
    deadlines.done(late)
    await asyncio.sleep(0.07)
    assert expired == ["a", "c", "d"] and deadlines._timer is None
    deadlines.add(expired.append, "f")
    deadlines.close()
    await asyncio.sleep(0.07)
    assert expired == ["a", "c", "d"]


def test_deadlines_follow_a_batcher_to_another_event_loop() -> None:
    deadlines = Deadlines(0.01)
    expired: list[str] = []

    async def add(name: str, wait: float) -> None:
        deadlines.add(expired.append, name)
        await asyncio.sleep(wait)

    asyncio.run(add("stranded", 0.0))      # its loop closes with the timer still armed
    asyncio.run(add("second", 0.05))
    assert expired == ["second"]           # ("stranded" went with its loop)


async def test_cancelled_waiter_leaves_the_batch_alone() -> None:
    f = Fetcher(delay=0.05)
    loader = BatchLoader(f.one, f.many)
    a = asyncio.create_task(loader.load("x"))
    b = asyncio.create_task(loader.load("x"))
    await asyncio.sleep(0.01)
    a.cancel()
    assert await b == "X"
    with pytest.raises(asyncio.CancelledError):
        await a
    assert f.calls == [["x"]]


async def test_direct_loader_runs_a_lone_call_in_the_callers_task() -> None:
    f = Fetcher(delay=0.01)
    seen: list[Any] = []

    async def one(key: str) -> str:
        seen.append(asyncio.current_task())
        return await f.one(key)

    loader = BatchLoader(one, f.many, direct=True)
    assert await loader.load("a") == "A"
    assert seen == [asyncio.current_task()] and (loader.batches, loader.keys_fetched) == (1, 1)
    # Callers arriving while it runs share its key, or batch the others among themselves.
    results = await asyncio.gather(*(loader.load(k) for k in ["b", "b", "c", "d", "c"]))
    assert results == ["B", "B", "C", "D", "C"]
    assert sorted(map(sorted, f.calls[1:])) == [["b"], ["c", "d"]]


async def test_direct_loader_hands_a_cancelled_call_to_the_callers_sharing_it() -> None:
    f = Fetcher(delay=0.05)
    loader = BatchLoader(f.one, f.many, direct=True)
    a = asyncio.create_task(loader.load("x"))
    await asyncio.sleep(0.01)            # a is the direct call, in flight
    b = asyncio.create_task(loader.load("x"))
    await asyncio.sleep(0.01)
    a.cancel()
    assert await b == "X"                # fetched again for b, not cancelled with a
    with pytest.raises(asyncio.CancelledError):
        await a
    assert f.calls == [["x"], ["x"]] and not loader._inflight and not loader._pending


async def test_direct_loader_timeout_is_the_callers_alone() -> None:
    f = Fetcher(delay=0.2)
    loader = BatchLoader(f.one, f.many, direct=True, timeout=0.1)
    a = asyncio.create_task(loader.load("x"))
    await asyncio.sleep(0.005)
    b = asyncio.create_task(loader.load("x"))
    f.delay = 0.01                       # the server recovers
    with pytest.raises(asyncio.TimeoutError):
        await a
    assert await b == "X"                # handed to a batch of its own
    f.fail = True                       # an error reaches the direct caller as itself
    with pytest.raises(TierError):
        await loader.load("y")


async def test_direct_loader_deadline_follows_each_call() -> None:
    # One timer bounds every direct call (no asyncio.timeout per call): armed for the first
    # call's deadline, it must re-arm for a later call rather than cut it short or miss it.
    f = Fetcher(delay=0.0)
    loader = BatchLoader(f.one, f.many, direct=True, timeout=0.1)
    assert await loader.load("a") == "A"      # arms the timer for a's deadline
    await asyncio.sleep(0.06)
    f.delay = 0.08                            # outlives a's deadline, not its own
    assert await loader.load("b") == "B"
    f.delay = 0.0
    assert await loader.load("e") == "E"      # the timer is armed for a deadline before c's
    await asyncio.sleep(0.03)
    f.delay = 1.0                             # outlives its own: cut at its deadline
    c = asyncio.create_task(loader.load("c"))
    done, _ = await asyncio.wait([c], timeout=0.5)
    assert c in done and isinstance(c.exception(), asyncio.TimeoutError)
    assert not loader._timed_out and asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await loader.aclose()


async def test_direct_loader_cancel_is_not_a_timeout() -> None:
    f = Fetcher(delay=1.0)
    loader = BatchLoader(f.one, f.many, direct=True, timeout=0.05)
    a = asyncio.create_task(loader.load("x"))
    await asyncio.sleep(0.01)
    a.cancel()                                # the caller's own cancel, before the deadline
    with pytest.raises(asyncio.CancelledError):
        await a
    # A cancel landing together with the deadline stays a cancel (asyncio.timeout's rule).
    b = asyncio.create_task(loader.load("y"))
    await asyncio.sleep(0.01)
    assert loader._deadlines is not None
    (entry,) = [e for e in loader._deadlines._queue if not e[1] and e[3][0] is b]
    entry[0] = 0.0                            # past its deadline: the next check expires it
    loader._deadlines._check()
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    assert not loader._timed_out
    await loader.aclose()


async def test_a_cancel_safe_batch_past_its_deadline_is_cancelled() -> None:
    # A driver that survives cancellation (direct=True) is stopped at the deadline instead of
    # holding its connection for nobody: L3's lone read has no driver timer of its own.
    f = Fetcher(delay=5.0)
    loader = BatchLoader(f.one, f.many, direct=True, timeout=0.05)
    loader._lone = False                  # as after a batch of several keys: no direct call
    t0 = asyncio.get_running_loop().time()
    callers = [asyncio.create_task(loader.load("a")) for _ in range(2)]
    await asyncio.sleep(0.01)
    (task,) = loader._tasks               # one batch for both callers
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, asyncio.TimeoutError) for r in results)
    done, _ = await asyncio.wait([task], timeout=1.0)
    assert task in done and task.cancelled() and f.calls == [["a"]]
    assert asyncio.get_running_loop().time() - t0 < 1.0 and not loader._inflight


async def test_concurrent_puts_are_batched_and_last_write_wins(cache: MultiLevelCache, cache_config: dict,
                                                              direct: Any) -> None:
    await asyncio.gather(*(cache.put(f"w{i % 40}", i, ttl_seconds=60) for i in range(120)))
    writer = cache.l2_cache.writer
    assert writer.items_written == 120 and writer.batches == 1  # (writes keep a cap of 256)
    async with MultiLevelCache(cache_config) as fresh:
        assert await fresh.get_many([f"w{i}" for i in range(40)]) == {f"w{i}": 80 + i for i in range(40)}
    assert await direct.rows() == 40


async def test_write_batcher_errors_reach_every_writer() -> None:
    async def fail(items: Any) -> None:
        raise TierError("L3", "down")

    batcher: WriteBatcher[int] = WriteBatcher(fail, fail, max_batch=3)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, TierError) for r in results)
    assert batcher.batches == 2


async def test_a_batch_past_its_deadline_releases_its_callers_and_finishes_anyway() -> None:
    f = Fetcher(delay=0.3)
    loader = BatchLoader(f.one, f.many, timeout=0.05)
    t0 = asyncio.get_running_loop().time()
    results = await asyncio.gather(*(loader.load(k) for k in "abc"), return_exceptions=True)
    waited = asyncio.get_running_loop().time() - t0
    assert all(isinstance(r, asyncio.TimeoutError) for r in results) and waited < 0.25
    (task,) = loader._tasks
    await task                            # the driver call was never cancelled
    assert f.calls == [["a", "b", "c"]] and not loader._inflight

    written: list[Any] = []

    async def slow_many(items: Any) -> None:
        await asyncio.sleep(0.3)
        written.extend(items)

    batcher: WriteBatcher[int] = WriteBatcher(slow_many, slow_many, timeout=0.05)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, asyncio.TimeoutError) for r in results)
    await asyncio.wait(list(batcher._tasks))
    assert written == [0, 1, 2]
