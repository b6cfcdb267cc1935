"""The L1 capacity controller: decide() on hand-made intervals, step() on a stand-in L1, and
simulations on the real LRU classes (seeded streams; each takes well under a few seconds)."""
from __future__ import annotations

import itertools
import math
import random
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import pytest

from mlcache.adaptive import CapacityController, Resize, Snapshot
from mlcache.config import L1Config
from mlcache.errors import ConfigError
from mlcache.lru import LRU as SelectedLRU
from mlcache.lru import NO_EXTENSIONS, PyLRU


def controller(**overrides: Any) -> CapacityController:
    settings: dict[str, Any] = dict(initial_capacity=1000, max_capacity=50_000,
                                    target_hit_rate=90.0)
    settings.update(overrides)
    return CapacityController(**settings)


class Meter:
    """Hand-made counters of an L1 over successive intervals, fed to ``decide()``.

    Each interval says what happened (lookups, hits, ghost hits, evictions); the meter builds
    the two snapshots, asks the controller, and applies its decision the way ``step()`` does
    (a shrink evicts into the ghost list).  By default misses fill free room first, then each
    evicts one entry.
    """

    def __init__(self, ctl: CapacityController, *, memory_bytes: int | None = None,
                 max_memory_bytes: int | None = None) -> None:
        self.ctl = ctl
        self.snap = Snapshot(hits=0, misses=0, ghost_hits=0, capacity=ctl.capacity,
                             entries=ctl.capacity, memory_bytes=memory_bytes,
                             max_memory_bytes=max_memory_bytes, taken_at=0.0, evictions=0,
                             ghost_capacity=ctl.ghost_capacity)

    def interval(self, lookups: int, hit_rate: float, ghost_hits: int = 0,
                 evictions: int | None = None, **changes: Any) -> Resize | None:
        prev = self.snap
        hits = round(lookups * hit_rate / 100)
        misses = lookups - hits
        room = prev.capacity - prev.entries
        if evictions is None:
            evictions = max(0, misses - room)
        changes.setdefault("entries", min(prev.capacity, prev.entries + misses))
        now = replace(prev, hits=prev.hits + hits, misses=prev.misses + misses,
                      ghost_hits=prev.ghost_hits + ghost_hits, taken_at=prev.taken_at + 300,
                      evictions=prev.evictions + evictions, **changes)
        resize = self.ctl.decide(prev, now)
        new = self.ctl.capacity
        shrunk = max(0, now.capacity - new)
        self.snap = replace(now, capacity=new, entries=min(now.entries, new),
                            evictions=now.evictions + shrunk,
                            ghost_capacity=self.ctl.ghost_capacity)
        return resize

    def warm(self, hit_rate: float = 91.0) -> None:
        """One on-target interval, so the ghost list counts as full from here on."""
        assert self.interval(10_000, hit_rate, ghost_hits=0, evictions=50_000) is None


# -- decide() on hand-made intervals ---------------------------------------------------------


def test_grows_on_ghost_hits_sized_to_reach_the_target() -> None:
    ctl = controller()
    meter = Meter(ctl)
    meter.warm()
    # 80% now; ghosts as large as the cache would add 10.5 points: exactly a doubling's worth.
    resize = meter.interval(5000, 80.0, ghost_hits=525)
    assert resize is not None and resize.action == "grow"
    assert resize.new_capacity == 2000
    assert resize.reason.startswith("grow: ghost hits 525/5000 lookups predict +10.5% hit rate")
    assert resize.gain_per_doubling == pytest.approx(10.5)
    # A quarter of a doubling's worth short of 90.5% asks for a quarter of a doubling.
    ctl = controller()
    meter = Meter(ctl)
    meter.warm()
    resize = meter.interval(8000, 90.5 - 10.5 / 4, ghost_hits=840)
    assert resize is not None and resize.new_capacity == 1000 + math.ceil(1000 * (2 ** 0.25 - 1))


def test_growth_never_exceeds_one_grow_factor_step() -> None:
    ctl = controller(grow_factor=0.5)
    meter = Meter(ctl)
    meter.warm()
    resize = meter.interval(5000, 50.0, ghost_hits=2000)
    assert resize is not None and resize.new_capacity == 1500
    assert ctl.ghost_capacity == 750  # the next step's worth of ghosts


def test_first_interval_weighs_ghost_hits_by_how_full_the_ghost_list_was() -> None:
    # The ghost list starts empty and fills with evictions: the same ghost hits are stronger
    # evidence when only half the interval had ghosts to hit.
    cold, warm = controller(), controller()
    Meter(warm).warm()
    a = Meter(cold).interval(5000, 80.0, ghost_hits=300, evictions=1000)
    b = Meter(warm).interval(5000, 80.0, ghost_hits=300, evictions=1000)
    assert a is not None and b is not None
    assert a.gain_per_doubling is not None and b.gain_per_doubling is not None
    assert a.gain_per_doubling > 1.5 * b.gain_per_doubling


def test_idle_interval_holds_whatever_the_figures() -> None:
    ctl = controller()
    meter = Meter(ctl)
    meter.warm()
    assert meter.interval(999, 10.0, ghost_hits=900) is None
    assert ctl.capacity == 1000
    assert ctl.last_decision is not None
    assert ctl.last_decision.reason == "hold: 999 lookups, need 1000"
    assert ctl.stats()["resizes"] == 0


def test_holds_while_the_last_growth_is_still_filling() -> None:
    ctl = controller()
    meter = Meter(ctl)
    meter.warm()
    assert meter.interval(5000, 80.0, ghost_hits=525) is not None
    meter.snap = replace(meter.snap, entries=1000)  # the new room is still empty
    # Its misses went into free room and the ghost list (restarted on growth) saw nothing.
    assert meter.interval(5000, 82.0, ghost_hits=0, evictions=0) is None
    assert ctl.last_decision is not None
    assert "capacity was not the limit" in ctl.last_decision.reason


def test_scan_does_not_grow() -> None:
    ctl = controller()
    meter = Meter(ctl)
    for _ in range(20):
        assert meter.interval(50_000, 0.0, ghost_hits=0) is None
    assert ctl.capacity == 1000
    assert ctl.last_decision is not None
    assert ctl.last_decision.reason.startswith("hold: growing would not pay: ghost hits 0/50000")


def test_uniform_over_a_huge_key_space_does_not_grow() -> None:
    ctl = controller()
    meter = Meter(ctl)
    meter.warm(0.01)
    # 10M keys: the cache holds 0.01% of them and twice the cache would hold 0.02%.
    for _ in range(20):
        assert meter.interval(50_000, 0.01, ghost_hits=5) is None
    assert ctl.capacity == 1000


def test_capped_at_max_capacity_then_holds() -> None:
    ctl = controller(max_capacity=1200)
    meter = Meter(ctl)
    meter.warm()
    resize = meter.interval(5000, 60.0, ghost_hits=1000)
    assert resize is not None and resize.new_capacity == 1200
    assert meter.interval(5000, 65.0, ghost_hits=400) is None
    assert ctl.last_decision is not None
    assert ctl.last_decision.reason.startswith("hold: at max_capacity")
    # At the ceiling the ghosts still cover one shrink step, to measure a shrink's cost.
    assert ctl.ghost_capacity == 120


def test_holds_at_the_memory_bound() -> None:
    ctl = controller()
    meter = Meter(ctl, memory_bytes=960_000, max_memory_bytes=1_000_000)
    meter.warm()
    assert meter.interval(5000, 60.0, ghost_hits=1000) is None
    assert ctl.last_decision is not None
    assert ctl.last_decision.reason.startswith("hold: memory bound")
    assert ctl.capacity == 1000


def test_growth_stops_where_the_memory_bound_would_be_reached() -> None:
    ctl = controller()
    # 1000 entries in 500 kB: 950 kB (95% of the bound) fits 1900 at today's size per entry.
    meter = Meter(ctl, memory_bytes=500_000, max_memory_bytes=1_000_000)
    meter.warm()
    resize = meter.interval(5000, 60.0, ghost_hits=1000)
    assert resize is not None and resize.new_capacity == 1900
    assert resize.reason.endswith("(memory bound)")


def test_shrinks_when_above_target_and_the_coldest_part_earns_nothing() -> None:
    ctl = controller(target_hit_rate=95.0)
    meter = Meter(ctl)
    meter.warm(96.0)
    resize = meter.interval(5000, 98.1, ghost_hits=0)
    assert resize is not None and resize.new_capacity == 900
    assert resize.reason == ("shrink: hit rate 98.1% above target 95% and the coldest 10%"
                             " earned no ghost hits")
    # The evicted tenth now sits in the ghost list, which will price the shrink.
    assert ctl.ghost_capacity >= 100


def test_does_not_shrink_when_the_ghosts_say_it_would_cost_the_target() -> None:
    ctl = controller(target_hit_rate=95.0)
    meter = Meter(ctl)
    meter.warm(96.0)
    # +10 points from doubling, so -1.5 from losing the coldest 10%: 96.7 - 1.5 < 95.5.
    assert meter.interval(5000, 96.7, ghost_hits=500) is None
    assert ctl.last_decision is not None
    assert "coldest 10% predicts -1.5%" in ctl.last_decision.reason
    # Clearly above target, the same evidence allows it.
    assert meter.interval(5000, 98.0, ghost_hits=500) is not None


def test_shrinks_empty_room_without_ghost_evidence() -> None:
    ctl = controller()
    meter = Meter(ctl)
    meter.snap = replace(meter.snap, entries=300)
    resize = meter.interval(5000, 99.0, ghost_hits=0, evictions=0)
    assert resize is not None and resize.new_capacity == 900
    assert resize.reason.endswith("the coldest 10% is empty")


def test_never_shrinks_below_min_capacity() -> None:
    ctl = controller(min_capacity=950)
    meter = Meter(ctl)
    meter.warm()
    resize = meter.interval(5000, 99.0)
    assert resize is not None and resize.new_capacity == 950
    assert meter.interval(5000, 99.0) is None
    assert ctl.capacity == 950


def test_undoes_a_bad_shrink_and_does_not_retry_it_at_once() -> None:
    ctl = controller(target_hit_rate=95.0)
    meter = Meter(ctl)
    meter.warm(96.0)
    shrink = meter.interval(5000, 97.0, ghost_hits=0)
    assert shrink is not None and shrink.new_capacity == 900
    # The hundred keys just evicted are ghosts now, and they are missed: 93% + 4 points.
    undo = meter.interval(5000, 93.0, ghost_hits=200)
    assert undo is not None and undo.action == "grow"
    assert undo.new_capacity >= 950
    assert undo.reason.startswith("grow: undo shrink, ghost hits 200/5000")
    # Back above target with cold ghosts: the overshoot is trimmed, but during the cool-down
    # never below 1000, where the bad shrink started.
    sizes = []
    for _ in range(ctl.cooldown):
        meter.interval(5000, 97.0, ghost_hits=0)
        sizes.append(ctl.capacity)
    assert min(sizes) >= 1000 and sizes[-3:] == [sizes[-1]] * 3
    assert ctl.last_decision is not None
    assert "floor left by an undone shrink" in ctl.last_decision.reason
    retry = meter.interval(5000, 97.0, ghost_hits=0)
    assert retry is not None and retry.new_capacity < 1000


def test_max_capacity_lowered_below_capacity_shrinks_to_it() -> None:
    ctl = controller(max_capacity=5000, initial_capacity=5000)
    meter = Meter(ctl)
    ctl.max_capacity = 3000
    resize = meter.interval(0, 0.0)
    assert resize is not None and resize.new_capacity == 3000


def test_counters_reset_holds_and_restarts() -> None:
    ctl = controller()
    meter = Meter(ctl)
    meter.warm()
    meter.snap = replace(meter.snap, hits=0, misses=0, ghost_hits=0, evictions=0)
    prev = replace(meter.snap, hits=50, misses=50)
    assert ctl.decide(prev, meter.snap) is None
    assert ctl.last_decision is not None and "went backwards" in ctl.last_decision.reason


def hit_rate_at(capacity: float) -> float:
    """A Zipf-like curve: 8 points per doubling, 90% at 24,000 entries, 99% at most."""
    return min(99.0, 90.0 + 8.0 * math.log2(capacity / 24_000))


def test_no_oscillation_under_a_stable_workload() -> None:
    ctl = controller()
    meter = Meter(ctl)
    noise = random.Random(7)
    history = []
    for _ in range(80):
        cap = ctl.capacity
        rate = hit_rate_at(cap) + noise.uniform(-0.3, 0.3)
        ghost_gain = hit_rate_at(cap + ctl.ghost_capacity) - hit_rate_at(cap)
        meter.interval(100_000, rate, ghost_hits=round(1000 * ghost_gain), evictions=10**6)
        history.append(ctl.capacity)
    reached = next(i for i, cap in enumerate(history) if hit_rate_at(cap) >= 90.0)
    assert reached <= 6
    settled = history[reached:]
    # At most a trim after arriving, then nothing: no grow/shrink cycle.
    assert len(set(settled)) <= 2
    assert settled[-40:] == [settled[-1]] * 40
    assert hit_rate_at(settled[-1]) >= 90.0
    assert settled[-1] <= 1.1 * 24_000


def test_a_workload_that_punishes_shrinking_is_not_shrunk_over_and_over() -> None:
    # Above 2,000 entries nothing more is gained; below it the hit rate falls off a cliff, so
    # every shrink is wrong.  Back-off makes the retries ever rarer.
    ctl = controller(initial_capacity=2000, target_hit_rate=95.0)
    meter = Meter(ctl)
    too_small = []
    for i in range(100):
        if ctl.capacity < 2000:
            too_small.append(i)
        rate, ghosts = (98.0, 0) if ctl.capacity >= 2000 else (80.0, 900)
        meter.interval(5000, rate, ghost_hits=ghosts)
    # Each mistake costs one interval, and the wait before the next try doubles.
    assert len(too_small) <= 4
    gaps = [b - a for a, b in itertools.pairwise(too_small)]
    assert gaps == sorted(gaps) and gaps[0] > ctl.cooldown
    assert ctl.capacity >= 2000


def test_decisions_are_deterministic() -> None:
    runs = []
    for _ in range(2):
        ctl = controller()
        meter = Meter(ctl)
        for rate, ghosts in [(50, 900), (60, 700), (70, 600), (85, 300), (93, 0), (94, 0)]:
            meter.interval(10_000, rate, ghost_hits=ghosts)
        runs.append((ctl.stats(), ctl.last_decision))
    assert runs[0] == runs[1]


def test_stats_show_capacity_and_the_last_resize_and_why() -> None:
    ctl = controller()
    assert ctl.stats()["last_resize"] is None
    meter = Meter(ctl)
    meter.warm()
    resize = meter.interval(5000, 80.0, ghost_hits=525)
    meter.interval(5000, 91.0)
    stats = ctl.stats()
    assert stats["capacity"] == 2000
    assert stats["min_capacity"] == 100 and stats["max_capacity"] == 50_000
    assert stats["target_hit_rate"] == 90.0
    assert stats["resizes"] == 1 and stats["decisions"] == 3
    assert resize is not None and stats["last_resize"]["reason"] == resize.reason
    assert stats["last_resize"]["old_capacity"] == 1000
    assert stats["last_reason"].startswith("hold: hit rate 91.0% meets target")


@pytest.mark.parametrize("bad", [
    dict(initial_capacity=0),
    dict(initial_capacity=60_000),
    dict(target_hit_rate=101.0),
    dict(target_hit_rate=0),
    dict(shrink_factor=1.0),
    dict(grow_factor=-1.0),
    dict(min_capacity=2000),
    dict(max_capacity=True),
    dict(margin=-0.5),
])
def test_bad_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        controller(**bad)


def test_from_config_takes_the_guides_l1_settings() -> None:
    ctl = CapacityController.from_config(
        L1Config(initial_capacity=10_000, max_capacity=100_000, target_hit_rate=95.0), margin=0.25)
    assert (ctl.capacity, ctl.max_capacity, ctl.target_hit_rate) == (10_000, 100_000, 95.0)
    assert ctl.min_capacity == 1000 and ctl.margin == 0.25


def test_snapshot_reads_the_real_l1() -> None:
    lru = PyLRU(2, max_memory_bytes=10_000)
    lru.ghost_capacity = 4
    for key in "abc":
        lru.set(key, key)  # "a" is evicted, and remembered
    assert lru.get("a") is None and lru.get("b") == "b"
    snap = Snapshot.of(lru, now=5.0)
    assert snap == Snapshot(hits=1, misses=1, ghost_hits=1, capacity=2, entries=2,
                            memory_bytes=lru.memory_bytes, max_memory_bytes=10_000, taken_at=5.0,
                            evictions=1, ghost_capacity=4)


# -- step() on a stand-in L1 ---------------------------------------------------------------


class StandIn:
    """Only the counters and sizes ``step()`` reads and writes; settings are logged."""

    def __init__(self, capacity: int, ghosts: bool = True) -> None:
        self.capacity = capacity
        self.entries = capacity
        self.hits = self.misses = self.evictions = 0
        self.writes: list[tuple[str, int]] = []
        if ghosts:
            self.ghost_hits = 0
            self._ghost_capacity = 0

    def __len__(self) -> int:
        return self.entries

    @property
    def ghost_capacity(self) -> int:
        return self._ghost_capacity

    @ghost_capacity.setter
    def ghost_capacity(self, value: int) -> None:
        self.writes.append(("ghost_capacity", value))
        self._ghost_capacity = value

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "capacity" and "capacity" in self.__dict__:
            self.writes.append(("capacity", value))
            self.evictions += max(0, self.entries - value)
            self.entries = min(self.entries, value)
        object.__setattr__(self, name, value)


def test_step_takes_a_baseline_then_applies_decisions() -> None:
    ctl = controller()
    lru = StandIn(1000)
    assert ctl.step(lru, now=0.0) is None
    assert lru.writes == [("ghost_capacity", 1000)]
    lru.hits, lru.misses, lru.evictions, lru.ghost_hits = 8000, 2000, 10_000, 1000
    resize = ctl.step(lru, now=300.0)
    assert resize is not None and resize.at == 300.0 and resize.new_capacity == lru.capacity
    # Growth restarts the ghost list, so it measures only above the new capacity.
    assert lru.writes[1:] == [("ghost_capacity", 0), ("ghost_capacity", resize.new_capacity),
                              ("capacity", resize.new_capacity)]


def test_step_sizes_the_ghost_list_before_shrinking() -> None:
    ctl = controller()
    lru = StandIn(1000)
    ctl.step(lru, now=0.0)
    lru.hits, lru.misses, lru.evictions = 9900, 100, 50_000
    resize = ctl.step(lru, now=300.0)
    assert resize is not None and resize.new_capacity == 900
    assert lru.writes[1:] == [("ghost_capacity", 900), ("capacity", 900)]
    # The hundred evictions the shrink made are not the next interval's.
    lru.hits, lru.misses = 19_800, 200
    ctl.step(lru, now=600.0)
    assert ctl.last_decision is not None and ctl.last_decision.lookups == 10_000


def test_step_on_an_l1_without_ghosts_never_grows() -> None:
    ctl = controller()
    lru = StandIn(1000, ghosts=False)
    ctl.step(lru, now=0.0)
    lru.hits, lru.misses, lru.evictions = 5000, 5000, 5000
    assert ctl.step(lru, now=300.0) is None
    assert ctl.last_decision is not None and "no ghost evidence" in ctl.last_decision.reason
    assert lru.writes == []


# -- simulations on the real L1 ------------------------------------------------------------
#
# Streams are seeded and precomputed; step() runs every INTERVAL lookups instead of on a clock.
# The fixed-size references are a textbook LRU on an OrderedDict: independent of the classes
# under test (it scores the same hits as either twin) and fast with or without the extension.

INTERVAL = 100_000


@pytest.fixture(params=["py"] if NO_EXTENSIONS else ["py", "compiled"])
def L1(request: pytest.FixtureRequest) -> Any:
    if request.param == "py":
        return PyLRU
    if not hasattr(SelectedLRU(1), "ghost_capacity"):
        pytest.skip("the compiled mlcache._lru has no ghost_capacity yet: rebuild it with "
                    "`python setup.py build_ext --inplace` once _lru.pyx has ghosts")
    return SelectedLRU


def zipf_stream(keys: int, length: int, seed: int, s: float = 0.99) -> list[int]:
    weights = itertools.accumulate(1 / (rank + 1) ** s for rank in range(keys))
    return random.Random(seed).choices(range(keys), cum_weights=list(weights), k=length)


def run_controlled(cls: Any, stream: list[int], ctl: CapacityController) -> list[tuple[int, float]]:
    """Serve ``stream`` read-through; (capacity, interval hit rate %) after each step()."""
    lru = cls(ctl.initial_capacity)
    ctl.step(lru, now=0.0)
    out = []
    for start in range(0, len(stream), INTERVAL):
        hits = lru.hits
        for key in stream[start:start + INTERVAL]:
            if lru.get(key) is None:
                lru.set(key, key)
        ctl.step(lru, now=float(start + INTERVAL))
        out.append((lru.capacity, 100.0 * (lru.hits - hits) / INTERVAL))
    return out


class FixedLRUs:
    """Hit rates of fixed-size LRUs over the last ``measured`` lookups of ``stream`` (warmed
    on as many before), remembered per capacity: the stream is shared by the twins' tests."""

    def __init__(self, stream: list[int], measured: int) -> None:
        self.stream, self.measured = stream, measured
        self.rates: dict[int, float] = {}

    def hit_rate(self, capacity: int) -> float:
        if capacity not in self.rates:
            lru: OrderedDict[int, None] = OrderedDict()
            hits = 0
            for i, key in enumerate(self.stream[-2 * self.measured:]):
                if key in lru:
                    lru.move_to_end(key)
                    hits += i >= self.measured
                else:
                    lru[key] = None
                    if len(lru) > capacity:
                        lru.popitem(last=False)
            self.rates[capacity] = 100.0 * hits / self.measured
        return self.rates[capacity]

    def capacity_for(self, rate: float, hi: int) -> int:
        """The smallest capacity reaching ``rate``, to 0.5%: an LRU's hit rate never falls as
        its capacity grows, so a binary search finds it."""
        lo = 1
        while hi - lo > max(1, hi // 200):
            mid = (lo + hi) // 2
            if self.hit_rate(mid) >= rate:
                hi = mid
            else:
                lo = mid
        return hi


TAIL = 3  # intervals at the end of the Zipf run over which the final size is judged


@pytest.fixture(scope="module")
def zipf() -> FixedLRUs:
    return FixedLRUs(zipf_stream(50_000, 12 * INTERVAL, seed=20240611), TAIL * INTERVAL)


def test_simulation_zipf_reaches_the_target_with_no_more_than_a_fixed_lru_needs(
        L1: Any, zipf: FixedLRUs) -> None:
    ctl = CapacityController(initial_capacity=1000, max_capacity=50_000, target_hit_rate=90.0)
    history = run_controlled(L1, zipf.stream, ctl)
    steps_to_target = next(i + 1 for i, (_, rate) in enumerate(history) if rate >= 90.0)
    final = history[-1][0]
    assert all(cap == final for cap, _ in history[-TAIL:]), history
    achieved = sum(rate for _, rate in history[-TAIL:]) / TAIL
    fixed_same = zipf.capacity_for(achieved, hi=50_000)
    fixed_target = zipf.capacity_for(90.0, hi=50_000)
    print(f"\nzipf {L1.__module__}: target reached after {steps_to_target} steps; final capacity"
          f" {final} at {achieved:.2f}%; a fixed LRU needs {fixed_same} for {achieved:.2f}%"
          f" ({final / fixed_same:.3f}x) and {fixed_target} for 90% ({final / fixed_target:.3f}x)"
          f"; {ctl.stats()['resizes']} resizes; (capacity, hit rate) per step"
          f" {[(cap, round(rate, 1)) for cap, rate in history]}")
    # 1,000 to ~24,000 entries at most doubling per step is five steps, plus fills.
    assert steps_to_target <= 9
    assert achieved >= 90.0
    assert final <= 1.1 * fixed_same
    assert final <= 1.2 * fixed_target


@pytest.mark.parametrize("trace", ["loop", "uniform"])
def test_simulation_scan_heavy_trace_does_not_grow(L1: Any, trace: str) -> None:
    length = 4 * INTERVAL
    if trace == "loop":  # a cyclic scan over three times max_capacity: LRU never hits
        stream = [i % 150_000 for i in range(length)]
    else:  # uniform over ten million keys: twice the cache would hit 0.01% more
        rng = random.Random(5)
        stream = [rng.randrange(10_000_000) for _ in range(length)]
    ctl = CapacityController(initial_capacity=1000, max_capacity=50_000, target_hit_rate=90.0)
    history = run_controlled(L1, stream, ctl)
    assert max(cap for cap, _ in history) <= 2 * 1000, history
    assert ctl.last_decision is not None
    assert ctl.last_decision.reason.startswith("hold: growing would not pay")


def test_simulation_memory_bound_stops_growth_short_of_the_target(L1: Any, zipf: FixedLRUs) -> None:
    probe = L1(10)
    probe.set(1, 1)
    per_entry = probe.memory_bytes
    ctl = CapacityController(initial_capacity=1000, max_capacity=50_000, target_hit_rate=90.0)
    lru = L1(1000, max_memory_bytes=6000 * per_entry)
    ctl.step(lru, now=0.0)
    for start in range(0, 5 * INTERVAL, INTERVAL):
        for key in zipf.stream[start:start + INTERVAL]:
            if lru.get(key) is None:
                lru.set(key, key)
        ctl.step(lru, now=float(start + INTERVAL))
        assert lru.capacity <= 6000
    # Growth stopped at the headroom below the bound, which the ghosts would have passed.
    assert lru.capacity == 5700
    assert ctl.last_decision is not None
    assert ctl.last_decision.reason.startswith("hold: memory bound")
