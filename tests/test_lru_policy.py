"""The L1's policies, memory bound and ghost list, on both implementations.

``tests/test_lru.py`` covers the map behaviour under the default "lru" policy and drives both
implementations side by side against a model; this file covers what the policy choice, the
byte bound and the ghost list add.  No test asserts timing or a hit ratio from a real trace
(benchmarks/hit_ratio.py does that); the workloads here are small and seeded.
"""
from __future__ import annotations

import gc
import heapq
import random
import sys
import time
from typing import Any

import pytest
from lruhelpers import MutableKey

from mlcache.lru import ENTRY_OVERHEAD, NO_EXTENSIONS, POLICIES, PyLRU

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
        pytest.fail(f"the compiled mlcache._lru cannot be imported ({_IMPORT_ERROR!r}); build it first")
    return CLRU


@pytest.fixture(params=["py"] if NO_EXTENSIONS else ["py", "compiled"])
def LRU(request: pytest.FixtureRequest) -> Any:
    return PyLRU if request.param == "py" else _compiled()


@pytest.fixture(params=POLICIES)
def policy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _invariants(c: Any) -> None:
    keys = c.keys()
    assert len(keys) == len(c) == len(set(keys)) <= c.capacity
    if c.max_memory_bytes is not None:
        assert c.memory_bytes <= c.max_memory_bytes
    if len(c) == 0:
        assert c.memory_bytes == 0


# -- choosing a policy --------------------------------------------------------------------


def test_policy_defaults_to_lru_and_is_read_only(LRU: Any) -> None:
    assert LRU(3).policy == "lru"
    c = LRU(3, policy="tinylfu")
    assert c.policy == "tinylfu"
    assert c.stats()["policy"] == "tinylfu"
    assert "tinylfu" in repr(c)
    with pytest.raises(AttributeError):
        c.policy = "lru"


@pytest.mark.parametrize("bad", ["LRU", "lfu", "", "tiny-lfu", None, 1, b"lru"])
def test_unknown_policy_is_refused(LRU: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match="policy"):
        LRU(3, policy=bad)


def test_policy_and_bound_are_keyword_only(LRU: Any) -> None:
    with pytest.raises(TypeError):
        LRU(3, 10, "tinylfu")
    c = LRU(capacity=3, hit_rate_window=10, policy="tinylfu", max_memory_bytes=10_000)
    assert (c.capacity, c.hit_rate_window, c.policy, c.max_memory_bytes) == (3, 10, "tinylfu", 10_000)


# -- the map works the same under every policy ---------------------------------------------


def test_basic_operations_under_each_policy(LRU: Any, policy: str) -> None:
    c = LRU(4, policy=policy)
    assert c.get("a", MISSING) is MISSING
    c.set("a", 1)
    c.set("b", None)
    c.set("c", [3], ttl=60)
    assert c.get("a") == 1 and c.get("b", MISSING) is None and c.get("c") == [3]
    assert c.peek("a") == 1 and "b" in c and "zz" not in c
    assert c.ttl("a") is None and 59 < c.ttl("c") <= 60
    c.set("a", 10)
    assert c.get("a") == 10 and len(c) == 3
    assert c.pop("a") == 10 and c.pop("a", MISSING) is MISSING
    assert c.delete("b") is True and c.delete("b") is False
    assert sorted(map(str, c.keys())) == ["c"]
    assert c.hits == 4 and c.misses == 1
    with pytest.raises(TypeError):
        c.get([1])
    c.clear()
    assert len(c) == 0 and c.keys() == [] and c.memory_bytes == 0


def test_expiry_under_each_policy(LRU: Any, policy: str) -> None:
    c = LRU(8, policy=policy)
    for i in range(4):
        c.set(i, i, ttl=SHORT_TTL)
    c.set("keep", 1)
    time.sleep(SHORT_TTL + 0.02)
    assert c.get(0, MISSING) is MISSING and c.expirations == 1
    assert c.delete(1) is False and c.pop(2, MISSING) is MISSING
    assert c.expire() == 1
    assert c.keys() == ["keep"] and c.expirations == 4
    assert c.memory_bytes == sys.getsizeof("keep") + sys.getsizeof(1) + ENTRY_OVERHEAD


def test_tinylfu_bounds_entries_and_resizes(LRU: Any) -> None:
    c = LRU(50, policy="tinylfu")
    rng = random.Random(5)
    for _ in range(3000):
        k = rng.randrange(400)
        if c.get(k) is None:
            c.set(k, k)
        _invariants(c)
    assert len(c) == 50 and c.evictions > 0
    c.capacity = 7
    _invariants(c)
    assert len(c) == 7
    for k in range(100):
        c.set(k, k)
    _invariants(c)
    c.capacity = 200
    for k in range(300):
        c.set(k, k)
    _invariants(c)
    assert len(c) == 200
    c.capacity = 1
    c.set("x", 1)
    assert c.keys() == ["x"]


def test_tinylfu_keys_order_is_protected_then_probation_then_window(LRU: Any) -> None:
    # capacity 100: a window of 10 entries, main 90 (protected up to 72).
    c = LRU(100, policy="tinylfu")
    for k in range(100):
        c.set(k, k)
    # The first 90 overflowed the window into probation while there was room (89 the most
    # recent there); 90..99 are the window.  Nothing is protected yet.
    window = list(range(99, 89, -1))
    assert c.keys() == [*range(89, -1, -1), *window]
    c.get(5)  # a probation hit: promoted to protected, which is listed first
    assert c.keys()[0] == 5
    c.get(95)  # a window hit: most recent in the window, still listed last
    assert c.keys()[-10:] == [95, *[k for k in window if k != 95]]
    assert c.keys()[1:90] == [k for k in range(89, -1, -1) if k != 5]


# -- what tinylfu is for ---------------------------------------------------------------------


def _hit_ratio(c: Any, trace: list[int]) -> float:
    before = c.hits
    for k in trace:
        if c.get(k) is None:
            c.set(k, k)
    return (c.hits - before) / len(trace)


def test_tinylfu_keeps_a_hot_set_through_a_scan(LRU: Any) -> None:
    hot = list(range(80))
    rng = random.Random(1)
    warm = [rng.choice(hot) for _ in range(4000)]
    scan = list(range(10_000, 12_000))
    after = rng.sample(hot, len(hot))  # each hot key once
    results = {}
    for policy in POLICIES:
        c = LRU(100, policy=policy)
        _hit_ratio(c, warm)
        _hit_ratio(c, scan)
        results[policy] = _hit_ratio(c, after)
    # LRU lost the whole hot set to the scan; tinylfu let the one-hit wonders pass through.
    assert results["lru"] == 0.0
    assert results["tinylfu"] > 0.9


def test_tinylfu_beats_lru_on_a_loop_and_matches_it_on_recency(LRU: Any) -> None:
    loop = list(range(150)) * 40  # a loop larger than the cache: LRU never hits
    c = LRU(100, policy="tinylfu")
    assert _hit_ratio(c, loop) > 0.55
    lru = LRU(100)
    assert _hit_ratio(lru, loop) == 0.0
    # Recency: every key is asked for twice, 2-100 requests apart, then never again (the
    # shape of the corda trace).  Frequency is useless; the window must grow to the reuse
    # distances, led by misses on keys it has just evicted.
    rng = random.Random(3)
    trace: list[int] = []
    pending: list[tuple[int, int]] = []
    for i in range(30_000):
        if pending and pending[0][0] <= i:
            trace.append(heapq.heappop(pending)[1])
        else:
            trace.append(100_000 + i)
            heapq.heappush(pending, (i + rng.randint(2, 100), 100_000 + i))
    ratios = {p: _hit_ratio(LRU(100, policy=p), trace) for p in POLICIES}
    assert ratios["lru"] > 0.49
    assert ratios["tinylfu"] > ratios["lru"] - 0.03


def test_tinylfu_window_adapts_to_each_phase(LRU: Any) -> None:
    # A loop (frequency wins) then a recency-only phase then the loop again.
    loop = list(range(150)) * 30
    rng = random.Random(9)
    recency: list[int] = []
    for i in range(6000):
        recency += [200_000 + i] if rng.random() < 0.5 else [200_000 + i, 200_000 + i]
    c = LRU(100, policy="tinylfu")
    assert _hit_ratio(c, loop) > 0.55
    assert _hit_ratio(c, recency) > 0.3  # LRU: 1/3
    assert _hit_ratio(c, loop) > 0.55


def _probe_window_resize(LRU: Any) -> tuple[Any, list[int]]:
    """capacity 20: window 2, main 18, climber ghost lists of 2 keys each."""
    c = LRU(20, policy="tinylfu")
    for k in range(20):  # 0-17 pass to probation while there is room; the sketch starts at 10
        c.set(k, k)
    return c, c.keys()


def test_tinylfu_window_shrink_sends_the_entry_to_probations_least_recent_end(LRU: Any) -> None:
    c, _ = _probe_window_resize(LRU)
    c.set(100, 100)
    c.get(100)
    c.get(100)
    c.set(101, 101)
    c.set(102, 102)  # 18, 19 and 100 beat 0, 1, 2 (never counted): main's ghosts hold 1, 2
    assert c.keys() == [100, *range(19, 2, -1), 102, 101]
    # 2 comes back: main one entry larger would have hit, so the window shrinks to 1 entry.
    # (101 first duels 3 and wins.)  The window's least recent entry, 102, goes to
    # probation's *least recent* end: the next victim, admitted by no duel.
    c.set(2, 2)
    assert c.keys() == [101, 100, *range(19, 3, -1), 102, 2]
    if LRU is PyLRU:
        assert c._win_max == 1 and c._probation.prev.key == 102


def test_tinylfu_window_grow_takes_mains_victim_as_the_next_candidate(LRU: Any) -> None:
    c, _ = _probe_window_resize(LRU)
    for k in range(100, 110):  # 18, 19, 100-106 beat 0-8; 107 ties with 9 and loses
        c.set(k, k)
    assert c.keys() == [*range(106, 99, -1), *range(19, 8, -1), 109, 108]
    # 107 comes back: a window one entry larger would have hit, so the window grows and takes
    # probation's least recent entry, 9, at its own least recent end (108 lost to 9 first).
    c.set(107, 107)
    assert c.keys() == [*range(106, 99, -1), *range(19, 9, -1), 107, 109, 9]
    if LRU is PyLRU:
        assert c._win_max == 3 and c._root.prev.key == 9 and c._root.prev.from_main
    # 9 is the next candidate and loses to 10: main would have evicted it, so main's ghost
    # list remembers it, not the window's (whose ghost hits would ask for still more window).
    c.set(200, 200)
    assert c.keys() == [*range(106, 99, -1), *range(19, 9, -1), 200, 107, 109]
    if LRU is PyLRU:
        assert list(c._main_ghosts.order) == [8, 9] and list(c._window_ghosts.order) == [108]
    c.set(9, 9)  # a main ghost hit: back to a 2-entry window
    if LRU is PyLRU:
        assert c._win_max == 2


def test_tinylfu_grown_entry_hit_in_the_window_is_the_windows_own(LRU: Any) -> None:
    c, _ = _probe_window_resize(LRU)
    for k in range(100, 110):
        c.set(k, k)
    c.set(107, 107)  # grows: 9 joins the window at its least recent end
    assert c.get(9) == 9  # now recent in its own right: evicted later, it is the window's
    assert c.keys() == [*range(106, 99, -1), *range(19, 9, -1), 9, 107, 109]
    if LRU is PyLRU:
        assert not c._root.next.from_main


# -- memory bound ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    ["", "a", "key:000001", "x" * 1000, "é", "日本", "\U0001f600", b"", b"bytes" * 40, bytearray(10),
     0, 1, -1, 2**30, 2**62, 2**100, -(2**70), True, False, 1.5, None, (1, 2), [1, 2, 3], {"a": 1},
     frozenset({1}), object()],
    ids=repr,
)
def test_default_size_is_shallow_getsizeof(LRU: Any, obj: Any) -> None:
    c = LRU(2)
    c.set("k", obj)
    assert c.memory_bytes == sys.getsizeof("k") + sys.getsizeof(obj) + ENTRY_OVERHEAD
    if isinstance(obj, (str, bytes, int, float, tuple, frozenset)) or obj is None:
        keyed = LRU(2)
        keyed.set(obj, None)
        assert keyed.memory_bytes == sys.getsizeof(obj) + sys.getsizeof(None) + ENTRY_OVERHEAD


def test_str_with_a_cached_utf8_copy_is_sized_like_getsizeof(LRU: Any) -> None:
    s = "é" * 10
    s.encode("utf-8")  # may cache a UTF-8 copy inside the str, which getsizeof counts
    c = LRU(2)
    c.set(s, s)
    assert c.memory_bytes == 2 * sys.getsizeof(s) + ENTRY_OVERHEAD


def test_explicit_size_replaces_the_estimate(LRU: Any, policy: str) -> None:
    c = LRU(10, policy=policy)
    c.set("a", "x" * 10_000, size=5)
    c.set("b", 1, size=0)
    assert c.memory_bytes == 5 + 0 + 2 * ENTRY_OVERHEAD
    c.set("a", "y", size=50)  # an update re-counts the entry
    assert c.memory_bytes == 50 + 0 + 2 * ENTRY_OVERHEAD
    assert c.stats()["memory_bytes"] == c.memory_bytes
    c.delete("a")
    assert c.memory_bytes == ENTRY_OVERHEAD
    c.pop("b")
    assert c.memory_bytes == 0


@pytest.mark.parametrize(
    ("size", "error"),
    [(-1, ValueError), (2**48 + 1, ValueError), (2**80, ValueError), (-(2**80), ValueError),
     (1.0, TypeError), (True, TypeError), ("10", TypeError)],
)
def test_bad_size_is_refused_before_any_change(LRU: Any, size: Any, error: type[Exception]) -> None:
    c = LRU(3, max_memory_bytes=10_000)
    c.set("k", "old", size=1)
    with pytest.raises(error, match="size"):
        c.set("k", "new", size=size)
    with pytest.raises(error, match="size"):
        c.set("other", "new", size=size)
    assert c.keys() == ["k"] and c.peek("k") == "old" and c.memory_bytes == 1 + ENTRY_OVERHEAD


def test_size_accepts_int_subclasses_and_the_maximum(LRU: Any) -> None:
    import enum

    class Size(enum.IntEnum):
        SMALL = 7

    c = LRU(3)
    c.set("a", 1, size=Size.SMALL)
    c.set("b", 1, size=2**48)
    assert c.memory_bytes == 7 + 2**48 + 2 * ENTRY_OVERHEAD


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-5, ValueError), (2**80, ValueError), (1.5, TypeError), (True, TypeError), ("1", TypeError)],
)
def test_bad_max_memory_bytes_is_refused(LRU: Any, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_memory_bytes"):
        LRU(3, max_memory_bytes=value)
    c = LRU(3, max_memory_bytes=5000)
    c.set("a", 1)
    with pytest.raises(error, match="max_memory_bytes"):
        c.max_memory_bytes = value
    assert c.max_memory_bytes == 5000 and c.keys() == ["a"]


def test_memory_bound_evicts_by_policy(LRU: Any, policy: str) -> None:
    unit = 100 + ENTRY_OVERHEAD
    c = LRU(1000, policy=policy, max_memory_bytes=5 * unit)
    for k in range(5):
        c.set(k, k, size=100)
    assert len(c) == 5 and c.memory_bytes == 5 * unit and c.evictions == 0
    c.set(5, 5, size=100)
    assert len(c) == 5 and c.memory_bytes == 5 * unit and c.evictions == 1
    # One big entry makes room for itself, and is kept.
    c.set("big", "v", size=3 * unit - ENTRY_OVERHEAD)
    assert "big" in c and c.memory_bytes <= 5 * unit and len(c) == 3
    _invariants(c)
    if policy == "lru":
        assert c.keys() == ["big", 5, 4]


def test_both_bounds_apply(LRU: Any, policy: str) -> None:
    c = LRU(3, policy=policy, max_memory_bytes=10 * (10 + ENTRY_OVERHEAD))
    for k in range(10):
        c.set(k, k, size=10)
    assert len(c) == 3  # the entry count binds
    c.capacity = 100
    for k in range(10, 30):
        c.set(k, k, size=10)
    assert len(c) == 10  # now the bytes do
    _invariants(c)


def test_lowering_max_memory_bytes_evicts_at_once_and_none_unbounds(LRU: Any, policy: str) -> None:
    unit = 50 + ENTRY_OVERHEAD
    c = LRU(100, policy=policy)
    for k in range(20):
        c.set(k, k, size=50)
    assert c.max_memory_bytes is None and c.memory_bytes == 20 * unit
    c.max_memory_bytes = 8 * unit
    assert len(c) == 8 and c.memory_bytes == 8 * unit and c.evictions == 12
    if policy == "lru":
        assert c.keys() == list(range(19, 11, -1))
    c.max_memory_bytes = None
    for k in range(20, 40):
        c.set(k, k, size=50)
    assert len(c) == 28 and c.stats()["max_memory_bytes"] is None


def test_update_that_grows_never_evicts_the_updated_entry(LRU: Any, policy: str) -> None:
    unit = 100 + ENTRY_OVERHEAD
    c = LRU(10, policy=policy, max_memory_bytes=4 * unit)
    for k in "abcd":
        c.set(k, k, size=100)
    for k in "abcd":
        c.get(k)
    c.set("a", "A", size=3 * unit - ENTRY_OVERHEAD)
    assert c.peek("a") == "A" and len(c) == 2 and c.evictions == 2
    _invariants(c)


def test_entry_larger_than_the_bound_is_rejected(LRU: Any, policy: str) -> None:
    c = LRU(10, policy=policy, max_memory_bytes=1000)
    c.set("small", 1, size=10)
    c.set("huge", 1, size=1000)  # 1000 + ENTRY_OVERHEAD > 1000
    assert "huge" not in c and c.rejected == 1 and c.evictions == 0
    assert c.keys() == ["small"]
    # An older value of the key is dropped rather than left stale.
    c.set("small", 2, size=5000)
    assert "small" not in c and c.rejected == 2 and c.memory_bytes == 0
    assert c.stats()["rejected"] == 2
    c.reset_stats()
    assert c.rejected == 0
    # Exactly the bound fits.
    c.set("exact", 1, size=1000 - ENTRY_OVERHEAD)
    assert "exact" in c and c.memory_bytes == 1000


def test_expired_entries_count_until_collected(LRU: Any) -> None:
    c = LRU(10, max_memory_bytes=3 * (10 + ENTRY_OVERHEAD))
    c.set("old", 1, ttl=SHORT_TTL, size=10)
    time.sleep(SHORT_TTL + 0.02)
    assert c.memory_bytes == 10 + ENTRY_OVERHEAD
    c.set("a", 1, size=10)
    c.set("b", 1, size=10)
    c.set("c", 1, size=10)  # pushes the expired entry out: an eviction, not an expiration
    assert "old" not in c.keys() and c.evictions == 1 and c.expirations == 0


# -- ghost list -----------------------------------------------------------------------------


def test_ghosts_are_off_by_default(LRU: Any, policy: str) -> None:
    c = LRU(2, policy=policy)
    assert c.ghost_capacity == 0
    for k in range(10):
        c.set(k, k)
    for k in range(10):
        c.get(k)
    assert c.ghost_hits == 0


def test_ghost_hits_count_misses_on_recently_evicted_keys(LRU: Any) -> None:
    c = LRU(2)
    c.ghost_capacity = 3
    for k in "abcdef":  # evicts a, b, c, d in that order; the ghosts keep b, c, d
        c.set(k, k)
    assert c.get("a") is None and c.ghost_hits == 0  # forgotten: only the last 3 are kept
    assert c.get("b") is None and c.ghost_hits == 1
    assert c.get("b") is None and c.ghost_hits == 1  # a ghost hit forgets the key
    assert c.get("zzz") is None and c.ghost_hits == 1
    assert c.stats()["ghost_hits"] == 1
    c.reset_stats()
    assert c.ghost_hits == 0
    assert c.get("d") is None and c.ghost_hits == 1


def test_only_evictions_for_room_become_ghosts(LRU: Any, policy: str) -> None:
    c = LRU(5, policy=policy)
    c.ghost_capacity = 100
    c.set("deleted", 1)
    c.set("popped", 1)
    c.set("expired", 1, ttl=SHORT_TTL)
    c.set("swept", 1, ttl=SHORT_TTL)
    c.set("cleared", 1)
    c.delete("deleted")
    c.pop("popped")
    time.sleep(SHORT_TTL + 0.02)
    c.get("expired")
    c.expire()
    c.clear()
    for k in ("deleted", "popped", "expired", "swept", "cleared"):
        assert c.get(k) is None
    assert c.ghost_hits == 0
    # Shrinking the capacity or the byte bound evicts for room.
    for k in range(5):
        c.set(k, k, size=10)
    c.capacity = 3
    c.max_memory_bytes = 2 * (10 + ENTRY_OVERHEAD)
    assert c.evictions == 3
    assert sum(c.get(k) is None for k in range(5)) == 3 and c.ghost_hits == 3


def test_setting_a_key_again_forgets_its_ghost(LRU: Any) -> None:
    c = LRU(1)
    c.ghost_capacity = 10
    c.set("a", 1)
    c.set("b", 1)  # a is a ghost
    c.set("a", 2)  # set again: stored, no longer a ghost; b becomes one
    c.set("c", 1)  # a is evicted again: a ghost again
    assert c.get("b") is None and c.get("a") is None
    assert c.ghost_hits == 2
    # A rejected set also forgets.
    c2 = LRU(1, max_memory_bytes=1000)
    c2.ghost_capacity = 10
    c2.set("a", 1, size=1)
    c2.set("b", 1, size=1)
    c2.set("a", 1, size=10_000)
    assert c2.rejected == 1 and c2.get("a") is None and c2.ghost_hits == 0


def test_ghost_list_keeps_the_most_recent_evictions_when_resized(LRU: Any) -> None:
    c = LRU(1)
    c.ghost_capacity = 10
    for k in range(11):  # evicts 0..9
        c.set(k, k)
    c.get(5)  # a ghost hit: 5 leaves the list
    assert c.ghost_hits == 1
    c.ghost_capacity = 4  # keeps 6, 7, 8, 9 (the newest), not 5 (gone) nor 0..4
    assert c.ghost_capacity == 4
    c.get(0)
    c.get(4)
    assert c.ghost_hits == 1
    for k in (6, 9):
        c.get(k)
    assert c.ghost_hits == 3
    c.ghost_capacity = 0
    c.get(7)
    assert c.ghost_hits == 3
    with pytest.raises(ValueError, match="ghost_capacity"):
        c.ghost_capacity = -1
    with pytest.raises(TypeError, match="ghost_capacity"):
        c.ghost_capacity = 2.0


def test_a_full_ghost_list_drops_its_oldest(LRU: Any) -> None:
    c = LRU(1)
    c.ghost_capacity = 2
    for k in range(4):  # evicts 0, 1, 2: 0 is dropped from the ghosts
        c.set(k, k)
    assert [c.get(k) is None for k in (0, 1, 2)] == [True] * 3
    assert c.ghost_hits == 2


# -- robustness under tinylfu -----------------------------------------------------------------


class _CallsBack:
    """A value whose finalizer uses the cache that held it, in one of several ways."""

    def __init__(self, cache: Any, tag: int, how: float) -> None:
        self.cache = cache
        self.tag = tag
        self.how = how

    def __del__(self) -> None:
        c, tag, how = self.cache, self.tag, self.how
        if how < 0.3:
            c.set(("from-del", tag), tag, size=tag % 70)
        elif how < 0.45:
            c.get(("from-del", tag - 1))
        elif how < 0.55:
            c.delete(("from-del", tag - 2))
        elif how < 0.6:
            c.capacity = max(1, c.capacity - 1) if tag % 2 else c.capacity + 2
        elif how < 0.62:
            c.clear()
        elif how < 0.64:
            c.max_memory_bytes = None if tag % 3 else 40 * (30 + ENTRY_OVERHEAD)
        elif how < 0.66:
            c.ghost_capacity = tag % 7
        elif how < 0.7:
            c.expire()
        c.keys()
        c.peek(("from-del", tag))


@pytest.mark.parametrize("seed", range(6))
def test_finalizers_calling_back_in_keep_the_cache_consistent(LRU: Any, policy: str, seed: int) -> None:
    """Releasing a value (evicted, replaced, popped, cleared) may run code that calls back in.

    The compiled class links nodes with borrowed pointers, so a mistake here is a crash, not
    a wrong answer; the invariants must hold after every operation, whatever the callbacks did.
    """
    rng = random.Random(seed)
    c = LRU(rng.randint(1, 30), policy=policy, max_memory_bytes=rng.choice([None, rng.randint(300, 8000)]))
    c.ghost_capacity = rng.randint(0, 10)
    for tag in range(1500):
        k = rng.randrange(60)
        op = rng.random()
        if op < 0.6:
            if c.get(k) is None:
                c.set(k, _CallsBack(c, tag, rng.random()), ttl=rng.choice([None, 1e-6, 60]), size=rng.randrange(100))
        elif op < 0.8:
            c.set(k, _CallsBack(c, tag, rng.random()), size=rng.randrange(300))
        elif op < 0.85:
            c.pop(k)
        elif op < 0.9:
            c.capacity = rng.randint(1, 30)
        elif op < 0.93:
            c.max_memory_bytes = rng.choice([None, rng.randint(300, 8000)])
        elif op < 0.95:
            c.expire()
        elif op < 0.96:
            c.clear()
        _invariants(c)
    # Drop the values' references back to the cache so the test leaves no cycles behind.
    for k in c.keys():
        c.set(k, None)
    gc.collect()
    _invariants(c)


def test_key_whose_hash_changed_is_still_evicted_under_tinylfu(LRU: Any) -> None:
    c = LRU(3, policy="tinylfu")
    k = MutableKey(1)
    c.set(k, "v")
    c.get(k)
    k.h = 12345  # breaks the hash contract: the dict can no longer find k by itself
    for i in range(20):
        c.set(i, i)
        _invariants(c)
    # However the duels went, shrinking to one entry must evict k without looping or crashing.
    c.capacity = 1
    c.set("x", 1)
    assert c.keys() == ["x"]
    assert k not in c and c.get(k, MISSING) is MISSING
    _invariants(c)


# -- the two implementations agree on tinylfu at a size where all of it runs ------------------


@pytest.mark.skipif(NO_EXTENSIONS, reason="only the pure LRU exists without extensions")
@pytest.mark.parametrize("seed", [11, 12])
def test_twins_agree_on_a_skewed_workload(seed: int) -> None:
    """Sketch aging, the doorkeeper, window adaptation and region transfers, step by step."""
    rng = random.Random(seed)
    bound = 120 * (20 + ENTRY_OVERHEAD) if seed % 2 else None
    twins = [PyLRU(150, 50, policy="tinylfu", max_memory_bytes=bound),
             _compiled()(150, 50, policy="tinylfu", max_memory_bytes=bound)]
    for c in twins:
        c.ghost_capacity = 40
    weights = [1.0 / (i + 1) ** 0.9 for i in range(3000)]
    phase_keys = list(range(3000))
    for step in range(25_000):
        if step == 12_000:  # a scan, then a different hot set
            for k in range(50_000, 50_400):
                for c in twins:
                    if c.get(k) is None:
                        c.set(k, k, size=20)
            phase_keys = list(range(3000, 6000))
        k = rng.choices(phase_keys, weights)[0]
        results = [c.get(k) for c in twins]
        assert results[0] == results[1]
        if results[0] is None:
            size = rng.randrange(40)
            for c in twins:
                c.set(k, k, size=size)
        if step % 5000 == 0:
            for c in twins:
                c.capacity = 150 + step // 100
        if step % 97 == 0:
            assert twins[0].keys() == twins[1].keys(), step
            assert twins[0].stats() == twins[1].stats(), step
    assert twins[0].keys() == twins[1].keys()
    assert twins[0].stats() == twins[1].stats()
    assert twins[0].evictions > 10_000 and twins[0].ghost_hits > 0


@pytest.mark.skipif(NO_EXTENSIONS, reason="only the pure LRU exists without extensions")
def test_twins_agree_when_hot_entries_are_removed_and_come_back() -> None:
    """A protected entry's hits are counted late (when it leaves protected): removals too."""
    rng = random.Random(5)
    twins = [PyLRU(100, policy="tinylfu"), _compiled()(100, policy="tinylfu")]
    weights = [1.0 / (i + 1) for i in range(1000)]
    keys = list(range(1000))
    for step in range(30_000):
        k = rng.choices(keys, weights)[0]
        if step % 7 == 0:
            assert len({c.pop(k, None) for c in twins}) == 1
            continue
        results = [c.get(k) for c in twins]
        assert results[0] == results[1]
        if results[0] is None:
            for c in twins:
                c.set(k, k)
        if step % 101 == 0:
            assert twins[0].keys() == twins[1].keys(), step
    assert twins[0].stats() == twins[1].stats()


def test_twins_share_their_constants() -> None:
    import mlcache._lru_py as pure

    assert (ENTRY_OVERHEAD, POLICIES) == (pure.ENTRY_OVERHEAD, pure.POLICIES) == (80, ("lru", "tinylfu"))
    if not NO_EXTENSIONS:
        import mlcache._lru as compiled

        assert (compiled.ENTRY_OVERHEAD, compiled.MAX_ENTRY_SIZE, compiled.POLICIES) == (
            pure.ENTRY_OVERHEAD, pure.MAX_ENTRY_SIZE, pure.POLICIES)


@pytest.mark.skipif(NO_EXTENSIONS, reason="only the pure LRU exists without extensions")
@pytest.mark.parametrize("entries", [1_000, 12_000, 40_000])
def test_entry_overhead_covers_what_the_compiled_table_spends(entries: int) -> None:
    """ENTRY_OVERHEAD is charged per entry; the compiled table must not spend more."""
    import tracemalloc

    keys = [f"k{i}" for i in range(entries)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        c = _compiled()(entries)
        for k in keys:
            c.set(k, k)
        spent = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(c) == entries
    assert spent / entries <= ENTRY_OVERHEAD
