"""The L1 LRU: the compiled ``mlcache._lru.LRU`` and its pure twin ``PyLRU`` must agree.

Every behavioural test runs against both classes.  The compiled one is required: if it
cannot be imported its tests fail (they do not skip), unless ``MLCACHE_NO_EXTENSIONS`` is
set (or the interpreter is not CPython), in which case only the pure one is tested.
No test asserts timing; the expiry tests sleep a few tens of milliseconds.
"""
from __future__ import annotations

import copy
import gc
import math
import pickle
import random
import sys
import time
import weakref
from collections import OrderedDict
from typing import Any

import pytest
from lruhelpers import MutableKey

from mlcache.lru import LRU as SelectedLRU
from mlcache.lru import ENTRY_OVERHEAD, NO_EXTENSIONS, PyLRU

try:
    from mlcache._lru import LRU as CLRU
except ImportError as exc:  # reported by the tests below, never silently skipped
    CLRU = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

MISSING = object()
SHORT_TTL = 0.05


def _compiled() -> Any:
    if CLRU is None:
        pytest.fail(
            f"the compiled mlcache._lru cannot be imported ({_IMPORT_ERROR!r}); build it with "
            "`python setup.py build_ext --inplace`, or set MLCACHE_NO_EXTENSIONS=1 to test only "
            "the pure-Python LRU"
        )
    return CLRU


def _compiled_is_missing(*args: Any, **kwargs: Any) -> Any:
    return _compiled()


@pytest.fixture(params=["py"] if NO_EXTENSIONS else ["py", "compiled"])
def LRU(request: pytest.FixtureRequest) -> Any:
    if request.param == "py":
        return PyLRU
    # Failing at construction, inside the test, makes a missing build show up as FAILED
    # tests rather than setup errors.
    return CLRU if CLRU is not None else _compiled_is_missing


def _consistent(c: Any) -> None:
    """The dict and the recency list hold the same entries."""
    keys = c.keys()
    assert len(keys) == len(c) == len(set(keys))
    assert len(c) <= c.capacity


# -- the switch -------------------------------------------------------------------------


def test_compiled_extension_is_selected() -> None:
    if NO_EXTENSIONS:
        assert SelectedLRU is PyLRU
    else:
        assert SelectedLRU is _compiled()
        assert SelectedLRU is not PyLRU


# -- basic map behaviour ----------------------------------------------------------------


def test_set_get_len_contains(LRU: Any) -> None:
    c = LRU(3)
    assert len(c) == 0 and c.keys() == []
    assert c.set("a", 1) is None
    c.set("b", [2])
    assert len(c) == 2
    assert c.get("a") == 1
    assert c.get("b") == [2]
    assert c.get("zzz") is None
    assert c.get("zzz", MISSING) is MISSING
    assert "a" in c and "zzz" not in c
    assert c.peek("b") == [2] and c.peek("zzz", 7) == 7
    # Any hashable key, not only str.
    c.set((1, "x"), "tuple")
    assert c.get((1, "x")) == "tuple"


def test_update_replaces_value_and_makes_mru(LRU: Any) -> None:
    c = LRU(3)
    c.set("a", 1)
    c.set("b", 2)
    c.set("c", 3)
    c.set("a", 10)
    assert len(c) == 3
    assert c.keys() == ["a", "c", "b"]
    assert c.peek("a") == 10
    c.set("d", 4)  # "b" is now the least recently used
    assert c.keys() == ["d", "a", "c"]
    assert c.evictions == 1


def test_delete_and_pop(LRU: Any) -> None:
    c = LRU(4)
    c.set("a", 1)
    c.set("b", 2)
    c.set("c", 3)
    assert c.delete("b") is True
    assert c.delete("b") is False
    assert c.keys() == ["c", "a"]
    assert c.pop("a") == 1
    assert c.pop("a") is None
    assert c.pop("a", MISSING) is MISSING
    assert c.keys() == ["c"]
    assert len(c) == 1
    # Removing entries is not a lookup.
    assert c.hits == c.misses == c.evictions == c.expirations == 0


def test_none_value_is_not_a_miss(LRU: Any) -> None:
    c = LRU(2)
    c.set("n", None)
    assert c.get("n", MISSING) is None
    assert c.peek("n", MISSING) is None
    assert "n" in c
    assert c.hits == 1 and c.misses == 0
    assert c.pop("n", MISSING) is None
    assert c.get("n", MISSING) is MISSING
    assert c.misses == 1


def test_unhashable_key_raises(LRU: Any) -> None:
    c = LRU(2)
    # Not empty: dict.pop() on an empty dict returns the default without hashing the key.
    c.set("a", 1)
    for call in (
        lambda: c.get([1]),
        lambda: c.peek([1]),
        lambda: c.set([1], 1),
        lambda: c.delete([1]),
        lambda: c.pop([1]),
        lambda: [1] in c,
        lambda: c.ttl([1]),
    ):
        with pytest.raises(TypeError):
            call()
    assert c.keys() == ["a"] and c.hits == c.misses == 0


# -- recency and capacity ---------------------------------------------------------------


def test_get_moves_to_mru_and_peek_does_not(LRU: Any) -> None:
    c = LRU(5)
    for k in "abcde":
        c.set(k, k)
    assert c.keys() == ["e", "d", "c", "b", "a"]
    c.get("b")
    assert c.keys() == ["b", "e", "d", "c", "a"]
    c.get("a")
    assert c.keys() == ["a", "b", "e", "d", "c"]
    c.get("a")  # already the most recent
    assert c.keys() == ["a", "b", "e", "d", "c"]
    c.peek("c")
    assert "d" in c
    c.get("missing")
    assert c.keys() == ["a", "b", "e", "d", "c"]


def test_insert_beyond_capacity_evicts_lru(LRU: Any) -> None:
    c = LRU(3)
    for k in "abc":
        c.set(k, k)
    c.get("a")  # b is now the least recently used
    c.set("d", "d")
    assert c.keys() == ["d", "a", "c"]
    assert "b" not in c
    c.set("e", "e")
    assert c.keys() == ["e", "d", "a"]
    assert c.evictions == 2
    assert len(c) == 3


def test_capacity_one(LRU: Any) -> None:
    c = LRU(1)
    c.set("a", 1)
    c.set("b", 2)
    assert c.keys() == ["b"]
    c.set("b", 3)
    assert c.keys() == ["b"] and c.peek("b") == 3
    assert c.evictions == 1


def test_shrinking_capacity_evicts_lru_first(LRU: Any) -> None:
    c = LRU(6)
    for k in "abcdef":
        c.set(k, k)
    c.get("b")
    c.get("a")
    assert c.keys() == ["a", "b", "f", "e", "d", "c"]
    c.capacity = 4
    assert c.capacity == 4
    assert c.keys() == ["a", "b", "f", "e"]
    assert c.evictions == 2
    c.capacity = 1
    assert c.keys() == ["a"]
    assert c.evictions == 5
    assert c.peek("a") == "a"


def test_growing_capacity_keeps_entries(LRU: Any) -> None:
    c = LRU(2)
    c.set("a", 1)
    c.set("b", 2)
    c.capacity = 4
    c.set("c", 3)
    c.set("d", 4)
    assert c.keys() == ["d", "c", "b", "a"]
    assert c.evictions == 0
    c.set("e", 5)
    assert c.keys() == ["e", "d", "c", "b"]
    assert c.evictions == 1


def test_clear_keeps_stats(LRU: Any) -> None:
    c = LRU(2)
    c.set("a", 1)
    c.get("a")
    c.get("x")
    c.clear()
    assert len(c) == 0 and c.keys() == [] and "a" not in c
    assert c.hits == 1 and c.misses == 1 and c.hit_rate == 50.0
    c.set("b", 2)
    assert c.keys() == ["b"]


# -- expiry -----------------------------------------------------------------------------


def test_entry_expires(LRU: Any) -> None:
    c = LRU(4)
    c.set("short", 1, ttl=SHORT_TTL)
    c.set("long", 2, ttl=60)
    c.set("forever", 3)
    assert c.get("short") == 1
    remaining = c.ttl("short")
    assert remaining is not None and 0 < remaining <= SHORT_TTL
    long_left = c.ttl("long")
    assert long_left is not None and 59 < long_left <= 60
    assert c.ttl("forever") is None
    time.sleep(SHORT_TTL + 0.02)
    # Expired but not yet collected: still stored, invisible to reads.
    assert len(c) == 3
    assert "short" in c.keys()
    assert "short" not in c
    assert c.peek("short", MISSING) is MISSING
    with pytest.raises(KeyError):
        c.ttl("short")
    assert c.expirations == 0 and len(c) == 3
    # get() collects it and counts a miss.
    assert c.get("short", MISSING) is MISSING
    assert len(c) == 2 and "short" not in c.keys()
    assert c.expirations == 1
    assert c.hits == 1 and c.misses == 1
    assert c.get("long") == 2 and c.get("forever") == 3


def test_ttl_of_absent_key_raises(LRU: Any) -> None:
    c = LRU(2)
    with pytest.raises(KeyError):
        c.ttl("nope")
    assert c.hits == c.misses == 0


def test_expire_sweeps_only_expired(LRU: Any) -> None:
    c = LRU(10)
    for i in range(4):
        c.set(f"s{i}", i, ttl=SHORT_TTL)
    c.set("keep", 1, ttl=60)
    c.set("keep2", 2)
    assert c.expire() == 0
    time.sleep(SHORT_TTL + 0.02)
    assert c.expire() == 4
    assert c.keys() == ["keep2", "keep"]
    assert c.expirations == 4
    assert c.expire() == 0


def test_delete_and_pop_of_expired_entry(LRU: Any) -> None:
    c = LRU(4)
    c.set("d", 1, ttl=SHORT_TTL)
    c.set("p", 2, ttl=SHORT_TTL)
    time.sleep(SHORT_TTL + 0.02)
    assert c.delete("d") is False
    assert c.pop("p", MISSING) is MISSING
    assert len(c) == 0
    assert c.expirations == 2
    assert c.hits == c.misses == 0


def test_update_resets_or_removes_expiry(LRU: Any) -> None:
    c = LRU(4)
    c.set("a", 1, ttl=SHORT_TTL)
    c.set("a", 2)  # no ttl: never expires any more
    c.set("b", 1, ttl=SHORT_TTL)
    c.set("b", 2, ttl=60)
    c.set("c", 1)
    c.set("c", 2, ttl=SHORT_TTL)
    time.sleep(SHORT_TTL + 0.02)
    assert c.get("a") == 2 and c.ttl("a") is None
    assert c.get("b") == 2
    assert c.get("c", MISSING) is MISSING
    assert c.expirations == 1


def test_set_over_expired_entry_revives_it(LRU: Any) -> None:
    c = LRU(2)
    c.set("a", 1, ttl=SHORT_TTL)
    time.sleep(SHORT_TTL + 0.02)
    c.set("a", 2)
    assert c.get("a") == 2
    # Overwritten, not collected: not an expiration.
    assert c.expirations == 0


def test_capacity_eviction_of_expired_entry_counts_as_eviction(LRU: Any) -> None:
    c = LRU(2)
    c.set("old", 1, ttl=SHORT_TTL)
    c.set("b", 2)
    time.sleep(SHORT_TTL + 0.02)
    c.set("c", 3)
    assert c.keys() == ["c", "b"]
    assert c.evictions == 1 and c.expirations == 0


# -- statistics -------------------------------------------------------------------------


def test_hit_rate_over_window(LRU: Any) -> None:
    c = LRU(10, hit_rate_window=4)
    assert c.hit_rate == 0.0
    assert c.hit_rate_window == 4
    c.set("k", 1)
    c.get("k")  # hit
    assert c.hit_rate == 100.0
    c.get("x")  # miss
    assert c.hit_rate == 50.0
    c.get("k")  # hit
    c.get("k")  # hit
    assert c.hit_rate == 75.0
    c.get("x")  # miss; the first hit drops out of the window: miss, hit, hit, miss
    assert c.hit_rate == 50.0
    c.get("x")
    c.get("x")
    c.get("x")
    assert c.hit_rate == 0.0
    # Cumulative counters are not windowed.
    assert c.hits == 3 and c.misses == 5


def test_peek_contains_ttl_are_not_counted(LRU: Any) -> None:
    c = LRU(2, hit_rate_window=3)
    c.set("a", 1, ttl=60)
    c.peek("a")
    c.peek("b")
    assert "a" in c
    assert "b" not in c
    c.ttl("a")
    assert c.hits == c.misses == 0 and c.hit_rate == 0.0


def test_hit_rate_window_of_one(LRU: Any) -> None:
    c = LRU(2, hit_rate_window=1)
    c.set("a", 1)
    c.get("a")
    assert c.hit_rate == 100.0
    c.get("b")
    assert c.hit_rate == 0.0
    c.get("a")
    assert c.hit_rate == 100.0


def test_stats_and_reset(LRU: Any) -> None:
    c = LRU(2, hit_rate_window=10)
    c.set("a", 1, size=10)
    c.set("b", 2, size=10)
    c.set("c", 3, size=10)
    c.get("c")
    c.get("a")
    c.set("e", 1, ttl=SHORT_TTL, size=10)
    time.sleep(SHORT_TTL + 0.02)
    c.get("e")
    assert c.stats() == {
        "capacity": 2,
        "entries": 1,
        "hits": 1,
        "misses": 2,
        "evictions": 2,
        "expirations": 1,
        "hit_rate": 100.0 / 3,
        "hit_rate_window": 10,
        "ghost_hits": 0,
        "memory_bytes": 10 + ENTRY_OVERHEAD,
        "max_memory_bytes": None,
        "policy": "lru",
        "rejected": 0,
    }
    c.reset_stats()
    assert c.stats() == {
        "capacity": 2,
        "entries": 1,
        "hits": 0,
        "misses": 0,
        "evictions": 0,
        "expirations": 0,
        "hit_rate": 0.0,
        "hit_rate_window": 10,
        "ghost_hits": 0,
        "memory_bytes": 10 + ENTRY_OVERHEAD,
        "max_memory_bytes": None,
        "policy": "lru",
        "rejected": 0,
    }
    c.get("c")
    assert c.hit_rate == 100.0
    assert all(type(c.stats()[k]) is int for k in ("capacity", "entries", "hits", "misses", "memory_bytes"))


def test_counters_are_read_only(LRU: Any) -> None:
    c = LRU(2)
    for name in ("hits", "misses", "evictions", "expirations", "hit_rate", "hit_rate_window",
                 "ghost_hits", "rejected", "memory_bytes", "policy"):
        with pytest.raises(AttributeError):
            setattr(c, name, 5)


# -- argument checking ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-3, ValueError), (2**80, ValueError), (1.0, TypeError), (True, TypeError),
     ("3", TypeError), (None, TypeError)],
)
def test_bad_sizes_are_refused(LRU: Any, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="capacity"):
        LRU(value)
    with pytest.raises(error, match="hit_rate_window"):
        LRU(2, hit_rate_window=value)
    c = LRU(3)
    c.set("a", 1)
    with pytest.raises(error, match="capacity"):
        c.capacity = value
    assert c.capacity == 3 and c.keys() == ["a"]


def test_keyword_arguments(LRU: Any) -> None:
    c = LRU(capacity=3, hit_rate_window=7)
    assert c.capacity == 3 and c.hit_rate_window == 7
    c.set(key="k", value="v", ttl=5.5, size=3)
    assert c.get(key="k", default=None) == "v"
    assert c.peek("zz", default=1) == 1
    assert c.pop("zz", default=2) == 2


@pytest.mark.parametrize(
    ("ttl", "error"),
    [(0, ValueError), (-1, ValueError), (0.0, ValueError), (math.nan, ValueError),
     ("1", TypeError), (True, TypeError), ([1], TypeError)],
)
def test_bad_ttl_is_refused(LRU: Any, ttl: Any, error: type[Exception]) -> None:
    c = LRU(2)
    c.set("k", "old")
    with pytest.raises(error, match="ttl"):
        c.set("k", "new", ttl=ttl)
    with pytest.raises(error, match="ttl"):
        c.set("other", "new", ttl=ttl)
    assert c.keys() == ["k"] and c.peek("k") == "old"


def test_int_and_float_ttl_accepted(LRU: Any) -> None:
    c = LRU(3)
    c.set("i", 1, ttl=30)
    c.set("f", 1, ttl=0.5)
    c.set("inf", 1, ttl=math.inf)
    assert c.get("i") == 1 and c.get("f") == 1 and c.get("inf") == 1


def test_not_picklable_nor_subclassable(LRU: Any) -> None:
    c = LRU(2)
    with pytest.raises(TypeError):
        pickle.dumps(c)
    with pytest.raises(TypeError):
        copy.copy(c)
    with pytest.raises(TypeError):
        type("Sub", (LRU,), {})


# -- robustness: code that runs while the cache is being changed ---------------------------


class _CallsBack:
    """A value whose finalizer uses the cache that held it."""

    def __init__(self, cache: Any, tag: int) -> None:
        self.cache = cache
        self.tag = tag

    def __del__(self) -> None:
        c = self.cache
        c.get(("from-del", self.tag - 1))
        c.set(("from-del", self.tag), self.tag)
        c.keys()
        c.peek(("from-del", self.tag))


def test_finalizers_calling_back_in_keep_the_cache_consistent(LRU: Any) -> None:
    c = LRU(3)
    tag = 0
    for round_ in range(50):
        for k in range(5):
            tag += 1
            c.set(k, _CallsBack(c, tag))  # overwrites and evictions release old values
        tag += 1
        c.set(0, _CallsBack(c, tag), ttl=60)  # update path
        c.pop(1)
        c.delete(2)
        if round_ % 10 == 0:
            c.capacity = 1
            c.capacity = 3
            c.clear()
        _consistent(c)
    # Drop the values' references back to the cache so the test leaves no cycles behind.
    for k in c.keys():
        c.set(k, None)
    gc.collect()
    _consistent(c)


def test_key_whose_hash_changed_is_still_evicted(LRU: Any) -> None:
    c = LRU(2)
    k = MutableKey(1)
    c.set(k, "v")
    c.set("a", 1)
    k.h = 12345  # breaks the hash contract: the dict can no longer find k by itself
    c.set("b", 2)  # must evict k (the tail) without looping or crashing
    assert c.keys() == ["b", "a"]
    assert len(c) == 2 and c.evictions == 1
    assert k not in c and c.get(k, MISSING) is MISSING
    c.set("c", 3)
    assert c.keys() == ["c", "b"]
    _consistent(c)


class _SameHash:
    """Keys that all share one hash: every lookup walks one probe run and calls __eq__."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SameHash) and other.n == self.n


def test_colliding_keys_survive_inserts_evictions_and_deletes(LRU: Any) -> None:
    # One long probe run, cut into by evictions and deletions from every position: a wrong
    # backward shift loses a key or finds a removed one.
    rng = random.Random(5)
    c = LRU(40)
    model: OrderedDict[int, int] = OrderedDict()
    for step in range(3000):
        n = rng.randrange(80)
        op = rng.random()
        if op < 0.5:
            c.set(_SameHash(n), step)
            model[n] = step
            model.move_to_end(n, last=False)
            while len(model) > 40:
                model.popitem()
        elif op < 0.8:
            got = c.get(_SameHash(n), MISSING)
            assert got == model.get(n, MISSING)
            if n in model:
                model.move_to_end(n, last=False)
        else:
            assert c.delete(_SameHash(n)) == (model.pop(n, MISSING) is not MISSING)
    assert [k.n for k in c.keys()] == list(model)


class _EqChangesCache:
    """A key whose __eq__ stores other keys in the cache being searched."""

    cache: Any = None

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        return 11

    def __eq__(self, other: object) -> bool:
        if self.cache is not None:
            for i in range(5):
                self.cache.set(("noise", self.n, i), i)
        return isinstance(other, _EqChangesCache) and other.n == self.n


def test_eq_that_changes_the_cache_mid_lookup(LRU: Any) -> None:
    # Keys that call back in are unsupported, but must never crash nor corrupt the cache.
    c = LRU(8)
    for n in range(3):
        c.set(_EqChangesCache(n), n)
    _EqChangesCache.cache = c
    try:
        for n in range(3):
            c.get(_EqChangesCache(n))
            c.set(_EqChangesCache(n + 10), n)
    finally:
        _EqChangesCache.cache = None
    _consistent(c)
    assert len(c) == 8


def test_cycles_through_stored_values_are_collected(LRU: Any) -> None:
    class Holder:
        pass

    gc.collect()
    c = LRU(4)
    h = Holder()
    h.cache = c  # type: ignore[attr-defined]
    c.set("me", h)
    c.set(Holder(), "key side too")
    alive = weakref.ref(h)
    del c, h
    gc.collect()
    assert alive() is None


# -- differential test ------------------------------------------------------------------


class _Model:
    """An independent, obviously-correct model of the "lru" policy (no real clock).

    Entries are either "live" or "dead" (set with a ttl that has certainly passed).  It also
    models the memory bound (explicit charges), rejected entries and the ghost list (by key:
    the test's keys have distinct hashes).
    """

    def __init__(self, capacity: int, window: int, max_mem: int | None) -> None:
        self.capacity = capacity
        self.window = window
        self.max_mem = max_mem
        self.od: OrderedDict[Any, tuple[Any, bool, int]] = OrderedDict()  # MRU first
        self.hits = self.misses = self.evictions = self.expirations = 0
        self.rejected = self.ghost_hits = 0
        self.ghost_cap = 0
        self.ghosts: OrderedDict[Any, None] = OrderedDict()  # oldest first
        self.outcomes: list[int] = []

    def _record(self, hit: int) -> None:
        self.outcomes.append(hit)
        del self.outcomes[: -self.window]

    @property
    def hit_rate(self) -> float:
        return 100.0 * sum(self.outcomes) / len(self.outcomes) if self.outcomes else 0.0

    @property
    def mem(self) -> int:
        return sum(charge for _, _, charge in self.od.values())

    def _over(self) -> bool:
        return len(self.od) > self.capacity or (self.max_mem is not None and self.mem > self.max_mem)

    def evict(self, pinned: Any = MISSING) -> None:
        while self._over():
            tail = next(reversed(self.od))
            if tail == pinned:
                break
            del self.od[tail]
            self.evictions += 1
            self.remember(tail)

    def remember(self, k: Any) -> None:
        if self.ghost_cap:
            self.ghosts.pop(k, None)
            self.ghosts[k] = None
            self.trim_ghosts()

    def trim_ghosts(self) -> None:
        while len(self.ghosts) > self.ghost_cap:
            self.ghosts.popitem(last=False)

    def get(self, k: Any, default: Any) -> Any:
        if k not in self.od:
            self.misses += 1
            self._record(0)
            if self.ghosts.pop(k, MISSING) is not MISSING:
                self.ghost_hits += 1
            return default
        v, dead, _ = self.od[k]
        if dead:
            del self.od[k]
            self.expirations += 1
            self.misses += 1
            self._record(0)
            return default
        self.od.move_to_end(k, last=False)
        self.hits += 1
        self._record(1)
        return v

    def peek(self, k: Any, default: Any) -> Any:
        v, dead, _ = self.od.get(k, (default, True, 0))
        return default if dead else v

    def contains(self, k: Any) -> bool:
        return k in self.od and not self.od[k][1]

    def set(self, k: Any, v: Any, dead: bool, charge: int) -> None:
        self.ghosts.pop(k, None)
        if self.max_mem is not None and charge > self.max_mem:
            self.rejected += 1
            self.od.pop(k, None)
            return
        self.od[k] = (v, dead, charge)
        self.od.move_to_end(k, last=False)
        self.evict(pinned=k)

    def pop(self, k: Any, default: Any) -> Any:
        if k not in self.od:
            return default
        v, dead, _ = self.od.pop(k)
        if dead:
            self.expirations += 1
            return default
        return v

    def keys(self) -> list[Any]:
        return list(self.od)

    def expire(self) -> int:
        dead = [k for k, (_, d, _) in self.od.items() if d]
        for k in dead:
            del self.od[k]
        self.expirations += len(dead)
        return len(dead)

    def stats(self, policy: str) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "entries": len(self.od),
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "expirations": self.expirations,
            "hit_rate": self.hit_rate,
            "hit_rate_window": self.window,
            "ghost_hits": self.ghost_hits,
            "memory_bytes": self.mem,
            "max_memory_bytes": self.max_mem,
            "policy": policy,
            "rejected": self.rejected,
        }


def _wait_past(t: float, seconds: float) -> None:
    # Spinning, not sleeping: only microseconds are needed, and the clock reads of both
    # implementations happened before ``t``, so afterwards every "instant" entry is dead.
    while time.monotonic() - t <= seconds:
        pass


@pytest.mark.skipif(NO_EXTENSIONS, reason="only the pure LRU exists without extensions")
@pytest.mark.parametrize("bounded", [False, True], ids=["entries", "entries+bytes"])
@pytest.mark.parametrize("policy", ["lru", "tinylfu"])
@pytest.mark.parametrize("seed", [7, 2024])
def test_differential_against_each_other_and_a_model(seed: int, policy: str, bounded: bool) -> None:
    """Both implementations give the same answers, order and counters, step by step.

    Under "lru" they must also match the model above.  Under "tinylfu" which entries stay is
    the policy's choice, so the model only supplies what must hold anyway: a value returned
    is the last one set and still live, and memory_bytes is the sum of the stored charges.
    """
    compiled = _compiled()
    rng = random.Random(seed)
    capacity, window = rng.randint(3, 8), rng.randint(1, 9)
    max_mem = rng.randint(600, 1500) if bounded else None
    impls = [
        PyLRU(capacity, window, policy=policy, max_memory_bytes=max_mem),
        compiled(capacity, window, policy=policy, max_memory_bytes=max_mem),
    ]
    exact = policy == "lru"
    # Under tinylfu the model never evicts by itself: it is pruned to the policy's choices.
    model = _Model(capacity, window, max_mem) if exact else _Model(10**9, window, None)
    instant = 1e-6
    key_space = [*range(14), "a", "b", None, (1, 2), 2.5]
    charges: dict[Any, int] = {}  # the charge of each key's last set()

    for step in range(6_000):
        op = rng.random()
        k = rng.choice(key_space)
        ctx = f"seed={seed} policy={policy} step={step}"
        if op < 0.30:
            default = rng.choice([None, MISSING])
            expected = model.get(k, default)
            results = [c.get(k, default) for c in impls]
            assert results[0] is results[1], ctx
            if exact:
                assert results[0] is expected, ctx
            elif results[0] is not default:
                assert results[0] is model.peek(k, MISSING), ctx
        elif op < 0.58:
            v = rng.randrange(1000)
            kind = rng.random()
            ttl = None if kind < 0.6 else (1000.0 if kind < 0.8 else instant)
            size = rng.choice([None, rng.randrange(300), rng.randrange(1200)])
            for c in impls:
                c.set(k, v, ttl, size)
            charge = (sys.getsizeof(k) + sys.getsizeof(v) if size is None else size) + ENTRY_OVERHEAD
            charges[k] = charge
            model.set(k, v, ttl == instant, charge)
            if ttl == instant:
                _wait_past(time.monotonic(), 10 * instant)
        elif op < 0.64:
            results = [c.peek(k, MISSING) for c in impls]
            assert results[0] is results[1], ctx
            if exact:
                assert results[0] is model.peek(k, MISSING), ctx
        elif op < 0.70:
            results = [k in c for c in impls]
            assert results[0] is results[1], ctx
            if exact:
                assert results[0] is model.contains(k), ctx
        elif op < 0.75:
            results = [c.pop(k, MISSING) for c in impls]
            expected = model.pop(k, MISSING)
            assert results[0] is results[1], ctx
            if exact:
                assert results[0] is expected, ctx
        elif op < 0.80:
            results = [c.delete(k) for c in impls]
            expected_present = model.pop(k, MISSING) is not MISSING
            assert results[0] is results[1], ctx
            if exact:
                assert results[0] is expected_present, ctx
        elif op < 0.84:
            results = []
            for c in impls:
                try:
                    results.append(c.ttl(k))
                except KeyError:
                    results.append(KeyError)
            if results[0] in (None, KeyError):
                assert results == [results[0]] * 2, ctx
            else:
                assert all(isinstance(r, float) and 0 < r <= 1000.0 for r in results), ctx
        elif op < 0.87:
            new_capacity = rng.randint(1, 10)
            if exact:
                model.capacity = new_capacity
                model.evict()
            for c in impls:
                c.capacity = new_capacity
        elif op < 0.89:
            new_max = rng.choice([None, rng.randint(100, 2000)]) if bounded else None
            if exact:
                model.max_mem = new_max
                model.evict()
            for c in impls:
                c.max_memory_bytes = new_max
        elif op < 0.91:
            model.ghost_cap = rng.randint(0, 6)
            model.trim_ghosts()
            for c in impls:
                c.ghost_capacity = model.ghost_cap
        elif op < 0.94:
            results = [c.expire() for c in impls]
            expected = model.expire()
            assert results[0] == results[1], ctx
            if exact:
                assert results[0] == expected, ctx
        elif op < 0.97:
            assert len({len(c) for c in impls}) == 1
        elif op < 0.99:
            model.hits = model.misses = model.evictions = model.expirations = 0
            model.rejected = model.ghost_hits = 0
            model.outcomes.clear()
            for c in impls:
                c.reset_stats()
        else:
            model.od.clear()
            for c in impls:
                c.clear()

        keys = impls[0].keys()
        stats = impls[0].stats()
        assert impls[1].keys() == keys, ctx
        assert impls[1].stats() == stats, ctx
        assert len(keys) == len(set(keys)) == len(impls[0]) == len(impls[1]) <= impls[0].capacity, ctx
        assert stats["memory_bytes"] == sum(charges[key] for key in keys), ctx
        if stats["max_memory_bytes"] is not None:
            assert stats["memory_bytes"] <= stats["max_memory_bytes"], ctx
        if exact:
            assert keys == model.keys(), ctx
            assert stats == model.stats(policy), ctx
        else:
            # Keep the model's view of what is stored in step with the policy's choices.
            for key in [key for key in model.od if key not in keys]:
                del model.od[key]
