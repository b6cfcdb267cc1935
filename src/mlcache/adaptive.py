"""L1 adaptive sizing: grow the LRU only when growing would pay, shrink what earns nothing.

The guide promises an L1 that "automatically adjusts capacity based on hit rate performance".
The hit rate alone cannot say whether more room would help (a scan misses as much at any
size), so the controller measures the gain itself, once per resize interval and never on the
lookup path.  ``step(lru)`` is all a caller needs::

    controller = CapacityController.from_config(config.l1)
    controller.step(lru)    # every resize_interval; the first call only takes a baseline
    controller.stats()      # capacity, last resize and why

Why the rules below are right:

* **Evidence, not guesses.**  The L1 remembers the last ``G`` keys it evicted for room (its
  ghost list; the controller sets ``G`` to the next growth step).  LRU is a stack algorithm:
  an LRU of capacity ``C + G`` holds exactly this one's entries plus those ghosts, so a
  ``get()`` miss on a ghost is a hit ``C + G`` entries would have scored.  Ghost hits over an
  interval, as a share of its lookups, *are* the hit-rate gain of growing by ``G``.  (Under
  the ``tinylfu`` policy, not a stack algorithm, they are an estimate; every rule below
  re-measures after acting, so an estimate is enough to steer by.)  Hit rates come from the
  interval's counters rather than ``hit_rate``, so both figures cover the same lookups.
* **Sized by that evidence.**  Between measured points the gain is read off a logarithmic
  curve, ``gain(x) = a * log2(1 + x / C)`` (``a``: points per doubling, fitted to the ghost
  hits): under Zipf-like popularity LRU's hit rate grows with the log of its size, so one
  measurement sizes the step to the target (plus ``margin``) in one go.  On flatter curves it
  under-reaches and the next interval measures again; a step is at most ``grow_factor * C``.
* **Only when it pays.**  ``a`` below ``min_gain`` (scans, uniform keys over a huge space)
  means more memory buys nothing: hold.  Growth also needs the capacity to have been the limit
  over the interval (evictions, and at most ``max_fill_share`` of the misses filling free
  room); otherwise the misses are cold ones or a previous growth not yet used, and growing
  again would overshoot.  A growth restarts the ghost list, whose keys now fit in the cache.
* **Bounded.**  Never above ``max_capacity`` nor past what ``max_memory_bytes`` fits at the
  current bytes per entry; with memory in use near the bound, the reason is "memory bound".
* **Shrinks are experiments that undo themselves.**  Above ``target + margin + hysteresis``,
  capacity drops by ``shrink_factor`` if the predicted loss (zero when those slots are empty
  or the ghosts earn nothing) keeps the hit rate at ``target + margin``.  The evicted keys
  become ghosts, so a wrong shrink shows next interval as ghost hits and the growth rule takes
  it back.  The capacity the wrong shrink started from is then a floor for ``cooldown``
  intervals, twice as long after each further mistake, so the two rules cannot chase each
  other, while a changed workload still gets its chance once the floor expires.
* **Quiet intervals decide nothing**: fewer than ``min_lookups`` lookups is noise, not data.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from .config import L1Config
from .errors import ConfigError

__all__ = ["CapacityController", "Resize", "Snapshot"]


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class Snapshot:
    """The L1's counters at one moment; the controller only ever compares two of them."""

    hits: int
    misses: int
    ghost_hits: int
    capacity: int
    entries: int
    memory_bytes: int | None
    max_memory_bytes: int | None
    taken_at: float
    evictions: int = 0
    ghost_capacity: int = 0

    @classmethod
    def of(cls, lru: Any, now: float | None = None) -> Snapshot:
        """Read ``lru``; attributes an older L1 lacks read as "no ghosts, no memory bound"."""
        return cls(
            hits=int(lru.hits),
            misses=int(lru.misses),
            ghost_hits=int(getattr(lru, "ghost_hits", 0)),
            capacity=int(lru.capacity),
            entries=len(lru),
            memory_bytes=_optional_int(getattr(lru, "memory_bytes", None)),
            max_memory_bytes=_optional_int(getattr(lru, "max_memory_bytes", None)),
            taken_at=time.monotonic() if now is None else now,
            evictions=int(getattr(lru, "evictions", 0)),
            ghost_capacity=int(getattr(lru, "ghost_capacity", 0)),
        )


@dataclass(frozen=True)
class Resize:
    """One decision and the figures behind it; ``new_capacity == old_capacity`` is a hold."""

    at: float
    old_capacity: int
    new_capacity: int
    reason: str
    lookups: int = 0
    hit_rate: float | None = None  # percent over the interval
    ghost_hits: int = 0
    ghost_coverage: int = 0  # ghost entries the interval's ghost hits were measured over
    gain_per_doubling: float | None = None  # fitted ``a``, percentage points
    ghost_capacity: int = 0  # ghost list size to apply with this decision

    @property
    def action(self) -> str:
        """``"grow"``, ``"shrink"`` or ``"hold"``."""
        if self.new_capacity > self.old_capacity:
            return "grow"
        return "shrink" if self.new_capacity < self.old_capacity else "hold"


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"l1 {name!r} must be a number > 0")
    if integer and not isinstance(value, int):
        raise ConfigError(f"l1 {name!r} must be an int")


def _slope(gain: float, cap: int, cov_start: int, ghost_cap: int, filled: int,
           evictions: int) -> float | None:
    """Points of hit rate per doubling of ``cap`` that explain ``gain`` from the ghosts.

    The ghost list was not the same size all interval: it stood at ``cov_start`` while the
    ``filled`` misses went into free room, then grew by one per eviction up to ``ghost_cap``.
    The gain of ``c`` ghosts is ``a * log2(1 + c / cap)``, so ``a`` is ``gain`` over the mean
    of that log across the interval's misses (taken as evenly spread over its lookups).
    """
    misses = filled + evictions
    if misses == 0:
        return None
    samples = 32
    total = 0.0
    for i in range(samples):
        m = (i + 0.5) * misses / samples - filled
        coverage = min(ghost_cap, cov_start + max(0.0, m))
        total += math.log2(1 + coverage / cap)
    mean = total / samples
    # A ghost list of about a tenth of an entry on average has measured nothing.
    return gain / mean if mean > 0.1 / cap else None


class CapacityController:
    """Decides the L1's capacity from interval counters; see the module docstring.

    Rates are percent.  Growth aims ``margin`` points above ``target_hit_rate``; a shrink needs
    the hit rate ``hysteresis`` points above that aim; growing must promise ``min_gain`` points
    per doubling.  ``grow_factor`` (share of capacity) bounds one growth step and sizes the
    ghost list; ``shrink_factor`` is one shrink step.  An interval with fewer than
    ``min_lookups`` lookups holds.  Growth fills at most ``memory_headroom`` of
    ``max_memory_bytes``.  ``max_fill_share`` and ``cooldown``: see the module docstring.
    """

    def __init__(
        self,
        *,
        initial_capacity: int,
        max_capacity: int,
        target_hit_rate: float,
        min_capacity: int | None = None,
        grow_factor: float = 1.0,
        shrink_factor: float = 0.1,
        min_lookups: int = 1000,
        min_gain: float = 2.0,
        margin: float = 0.5,
        hysteresis: float = 1.0,
        memory_headroom: float = 0.95,
        max_fill_share: float = 0.2,
        cooldown: int = 10,
    ) -> None:
        if min_capacity is None:
            # Room to shed what a quiet workload leaves unused, while a burst after it still
            # finds a useful cache instead of starting from nothing.
            min_capacity = max(1, initial_capacity // 10)
        for name, value in (("initial_capacity", initial_capacity), ("max_capacity", max_capacity),
                            ("min_capacity", min_capacity), ("min_lookups", min_lookups),
                            ("cooldown", cooldown)):
            _positive(name, value, integer=True)
        for name, fvalue in (("target_hit_rate", target_hit_rate), ("grow_factor", grow_factor),
                             ("shrink_factor", shrink_factor), ("min_gain", min_gain),
                             ("memory_headroom", memory_headroom),
                             ("max_fill_share", max_fill_share)):
            _positive(name, fvalue)
        if not min_capacity <= initial_capacity <= max_capacity:
            raise ConfigError("l1 needs min_capacity <= 'initial_capacity' <= 'max_capacity'")
        if target_hit_rate > 100 or shrink_factor >= 1 or memory_headroom > 1 or max_fill_share > 1:
            raise ConfigError("l1 'target_hit_rate' <= 100 and shrink_factor < 1, memory_headroom"
                              " <= 1, max_fill_share <= 1 are required")
        if isinstance(margin, bool) or isinstance(hysteresis, bool) or margin < 0 or hysteresis < 0:
            raise ConfigError("l1 adaptive 'margin' and 'hysteresis' must be >= 0")
        self.initial_capacity = initial_capacity
        self.max_capacity = max_capacity
        self.min_capacity = min_capacity
        self.target_hit_rate = float(target_hit_rate)
        self.grow_factor = float(grow_factor)
        self.shrink_factor = float(shrink_factor)
        self.min_lookups = min_lookups
        self.min_gain = float(min_gain)
        self.margin = float(margin)
        self.hysteresis = float(hysteresis)
        self.memory_headroom = float(memory_headroom)
        self.max_fill_share = float(max_fill_share)
        self.cooldown = cooldown
        # The small state decide() carries from one interval to the next.
        self.capacity = initial_capacity
        self.ghost_capacity = self._ghost_size(initial_capacity)
        self._coverage = 0  # estimated ghost entries at the last snapshot
        self._decisions = 0
        self._resizes = 0
        self._floor = 0  # capacity an undone shrink started from: no shrinking below it...
        self._floor_until = 0  # ...until this decision number
        self._backoff = cooldown  # how long the next floor lasts, in decisions
        self._shrunk_at = -3  # decision number of the latest shrink
        self.last_decision: Resize | None = None
        self.last_resize: Resize | None = None
        self._prev: Snapshot | None = None

    @classmethod
    def from_config(cls, config: L1Config, **tuning: Any) -> CapacityController:
        """A controller for the guide's L1 settings (``resize_interval`` is the caller's)."""
        return cls(initial_capacity=config.initial_capacity, max_capacity=config.max_capacity,
                   target_hit_rate=config.target_hit_rate, **tuning)

    def _ghost_size(self, capacity: int) -> int:
        # Ghosts measure the next growth step; at the ceiling they still cover one shrink
        # step, which is what a shrink's loss is predicted from and undone by.
        step = math.ceil(self.grow_factor * capacity)
        probe = math.ceil(self.shrink_factor * capacity)
        return max(1, min(step, max(self.max_capacity - capacity, probe)))

    def _ceiling(self, now: Snapshot) -> tuple[int, bool]:
        """Largest capacity allowed now, and whether the memory bound is what sets it."""
        limit = self.max_capacity
        bound, used = now.max_memory_bytes, now.memory_bytes
        if bound is None or used is None:
            return limit, False
        allowed = self.memory_headroom * bound
        if used >= allowed:
            return min(limit, now.capacity), True
        if used > 0 and now.entries > 0:
            fits = int(now.entries * allowed / used)  # at today's bytes per entry
            if fits < limit:
                return max(fits, now.capacity), True
        return limit, False

    def decide(self, prev: Snapshot, now: Snapshot) -> Resize | None:
        """The decision for the interval from ``prev`` to ``now``; None unless capacity changes.

        Holds are decisions too: every call records one in ``last_decision`` (with its reason
        and figures).  Deterministic given the calls made so far: call once per interval.
        """
        self._decisions += 1
        cap = now.capacity
        lookups = (now.hits - prev.hits) + (now.misses - prev.misses)
        ghost_hits = now.ghost_hits - prev.ghost_hits
        evictions = now.evictions - prev.evictions
        if lookups < 0 or ghost_hits < 0 or evictions < 0:
            self._coverage = 0
            return self._record(now, cap, "hold: counters went backwards (stats reset?)")
        misses = now.misses - prev.misses
        # Misses that evicted nothing went into free room (a fill after growing), and came
        # first; the rest each pushed one key onto the ghost list, up to its size.
        filled = max(0, misses - evictions)
        ghost_cap = now.ghost_capacity
        cov_start = min(self._coverage, ghost_cap)
        cov_end = min(ghost_cap, cov_start + evictions)
        self._coverage = cov_end
        if cap > self.max_capacity:
            return self._record(now, self.max_capacity, "shrink: above max_capacity")
        if lookups < self.min_lookups:
            return self._record(now, cap, f"hold: {lookups} lookups, need {self.min_lookups}")
        rate = 100.0 * (now.hits - prev.hits) / lookups
        gain = 100.0 * ghost_hits / lookups
        slope = _slope(gain, cap, cov_start, ghost_cap, filled, evictions)
        figures: dict[str, Any] = dict(lookups=lookups, hit_rate=rate, ghost_hits=ghost_hits,
                                       ghost_coverage=cov_end, gain_per_doubling=slope)
        evidence = f"ghost hits {ghost_hits}/{lookups} lookups"
        target = self.target_hit_rate
        aim = target + self.margin
        limit, by_memory = self._ceiling(now)

        if rate < target:
            # Misses into free room are cold ones and understate the hit rate this size will
            # reach once full; growing on them would overshoot.
            if evictions == 0 or filled > self.max_fill_share * misses:
                return self._record(now, cap, f"hold: hit rate {rate:.1f}% below target {target:g}%"
                                    " but capacity was not the limit (filling, or no evictions)",
                                    **figures)
            if limit <= cap:
                what = "memory bound" if by_memory else "at max_capacity"
                return self._record(now, cap, f"hold: {what}; hit rate {rate:.1f}%, {evidence}",
                                    **figures)
            if slope is None or slope < self.min_gain:
                per = "no ghost evidence yet" if slope is None else f"+{slope:.2f}% per doubling"
                return self._record(now, cap, f"hold: growing would not pay: {evidence},"
                                    f" {per}", **figures)
            # Never extrapolate the curve past twice the stretch the ghosts actually covered.
            step = min(cap * (2 ** ((aim - rate) / slope) - 1), 2 * cov_end,
                       self.grow_factor * cap)
            new = min(cap + max(1, math.ceil(step)), limit)
            last = self.last_resize
            # Growing within two intervals of a shrink means the shrink was wrong.
            recent = self._decisions - self._shrunk_at <= 2
            undo = last is not None and last.action == "shrink" and recent
            if undo and last is not None:
                # The capacity the shrink started from is the floor for a while: twice as long
                # each time, so the two rules cannot chase each other, yet it expires, because
                # workloads change.
                self._floor = last.old_capacity
                self._floor_until = self._decisions + self._backoff
                self._backoff = min(2 * self._backoff, 16 * self.cooldown)
            capped = " (memory bound)" if by_memory and new == limit else ""
            why = "undo shrink, " if undo else ""
            return self._record(now, new, f"grow: {why}{evidence} predict +{gain:.1f}% hit rate"
                                f" from {cov_end} more entries ({rate:.1f}% < target"
                                f" {target:g}%){capped}", **figures)

        if rate < aim + self.hysteresis:
            return self._record(now, cap, f"hold: hit rate {rate:.1f}% meets target {target:g}%",
                                **figures)
        floor, what = self.min_capacity, "min_capacity"
        if self._decisions <= self._floor_until and self._floor > floor:
            floor, what = self._floor, "the floor left by an undone shrink,"
        new = max(cap - max(1, int(self.shrink_factor * cap)), floor)
        if (cap - new) * 2 < self.shrink_factor * cap:  # not worth a resize
            return self._record(now, cap, f"hold: hit rate {rate:.1f}% above target at"
                                f" {what} {floor}", **figures)
        if now.entries <= new:
            loss, part = 0.0, "is empty"
        elif slope is not None:
            loss = slope * math.log2(cap / new)
            part = "earned no ghost hits" if ghost_hits == 0 else f"predicts -{loss:.1f}%"
        else:
            return self._record(now, cap, f"hold: hit rate {rate:.1f}% above target, no ghost"
                                " evidence to shrink on", **figures)
        pct = round(100 * (cap - new) / cap)
        if rate - loss < aim:
            return self._record(now, cap, f"hold: hit rate {rate:.1f}% above target but the"
                                f" coldest {pct}% predicts -{loss:.1f}%", **figures)
        last = self.last_resize
        if last is not None and last.action == "shrink" and last.new_capacity < self._floor:
            self._backoff = self.cooldown  # a shrink below the old floor held: things changed
        self._shrunk_at = self._decisions
        return self._record(now, new, f"shrink: hit rate {rate:.1f}% above target {target:g}%"
                            f" and the coldest {pct}% {part}", **figures)

    def _record(self, now: Snapshot, new: int, reason: str, **figures: Any) -> Resize | None:
        old = now.capacity
        ghosts = self._ghost_size(new)
        if new > old:
            self._coverage = 0  # step() restarts the ghost list to measure above the new size
        elif new < old:
            self._coverage = min(ghosts, self._coverage + old - new)  # the shrunk part
        decision = Resize(now.taken_at, old, new, reason, ghost_capacity=ghosts, **figures)
        self.capacity, self.ghost_capacity = new, ghosts
        self.last_decision = decision
        if new == old:
            return None
        self._resizes += 1
        self.last_resize = decision
        return decision

    def step(self, lru: Any, now: float | None = None) -> Resize | None:
        """Snapshot ``lru``, decide, apply; the first call only takes the baseline."""
        snap = Snapshot.of(lru, now)
        ghosts_supported = hasattr(lru, "ghost_capacity")
        if self._prev is None:
            self.capacity = snap.capacity
            self.ghost_capacity = self._ghost_size(snap.capacity)
            if ghosts_supported:
                lru.ghost_capacity = self.ghost_capacity
            self._prev = Snapshot.of(lru, snap.taken_at)
            return None
        resize = self.decide(self._prev, snap)
        if ghosts_supported:
            if resize is not None and resize.action == "grow":
                # The old ghosts now fit inside the cache: their misses are the fill, not a
                # gain beyond the new size, so the list starts over.
                lru.ghost_capacity = 0
            # Before a shrink, so the keys it evicts are remembered as ghosts.
            if lru.ghost_capacity != self.ghost_capacity:
                lru.ghost_capacity = self.ghost_capacity
        if resize is not None:
            lru.capacity = resize.new_capacity
        # Re-read: a shrink evicts, and the next interval must not count that as its own.
        self._prev = Snapshot.of(lru, snap.taken_at)
        return resize

    def stats(self) -> dict[str, Any]:
        """Current capacity and bounds, the last resize (and why), the last decision's reason."""
        last = self.last_decision
        return {
            "capacity": self.capacity,
            "min_capacity": self.min_capacity,
            "max_capacity": self.max_capacity,
            "target_hit_rate": self.target_hit_rate,
            "ghost_capacity": self.ghost_capacity,
            "decisions": self._decisions,
            "resizes": self._resizes,
            "last_resize": None if self.last_resize is None else asdict(self.last_resize),
            "last_reason": None if last is None else last.reason,
            "interval_hit_rate": None if last is None else last.hit_rate,
        }
