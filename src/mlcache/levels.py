"""Each level as the cache sees it: the L1 LRU with its limits, and a shared level's counters.

The guide's ``cache.l1_cache`` / ``l2_cache`` / ``l3_cache`` are these objects.
"""
from __future__ import annotations

import bisect
import logging
import time
from typing import Any, Optional, Sequence

from .batching import BatchLoader, WriteBatcher
from .config import L1Config
from .errors import ConfigError, TierError
from .lru import LRU
from .tiers.base import Entry, Tier

log = logging.getLogger("mlcache")

# Upper bounds (seconds) of the read-latency histogram kept for L2/L3: 0.1 ms to 2.5 s.
LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


class L1Cache:
    """The in-process level: a compiled LRU (pure twin without the extension) plus its ceiling.

    ``capacity`` may be set at run time; shrinking evicts least-recently-used entries first.
    ``capacity`` never exceeds ``max_capacity``.
    """

    def __init__(self, config: L1Config) -> None:
        self.config = config
        self.lru = LRU(config.initial_capacity, config.hit_rate_window)
        self._max_capacity = config.max_capacity

    @property
    def capacity(self) -> int:
        return int(self.lru.capacity)

    @capacity.setter
    def capacity(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError("l1 'capacity' must be an int >= 1")
        if value > self._max_capacity:
            raise ConfigError("l1 'capacity' cannot exceed 'max_capacity'; raise max_capacity first")
        self.lru.capacity = value

    @property
    def max_capacity(self) -> int:
        return self._max_capacity

    @max_capacity.setter
    def max_capacity(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError("l1 'max_capacity' must be an int >= 1")
        self._max_capacity = value
        if self.lru.capacity > value:
            self.lru.capacity = value

    def __len__(self) -> int:
        return len(self.lru)

    def get_stats(self) -> dict[str, Any]:
        lru = self.lru
        hits, misses, entries = lru.hits, lru.misses, len(lru)
        return {
            "enabled": True,
            "implementation": f"{type(lru).__module__}.{type(lru).__name__}",
            "hits": hits,
            "misses": misses,
            "hit_rate": _percent(hits, hits + misses),
            "window_hit_rate": lru.hit_rate,
            "hit_rate_window": lru.hit_rate_window,
            "target_hit_rate": self.config.target_hit_rate,
            "entries": entries,
            "capacity": lru.capacity,
            "max_capacity": self._max_capacity,
            "capacity_utilization": _percent(entries, lru.capacity),
            "evictions": lru.evictions,
            "expirations": lru.expirations,
        }


class SharedLevel:
    """A tier (L2 or L3) with the cache's view of it: hits, misses, errors, time spent.

    Fail-open lives here: a TierError on a read is a miss, on a write a skipped write, both
    counted; with ``strict`` the error is raised to the caller instead.
    """

    enabled = True

    def __init__(self, tier: Tier, *, strict: bool, max_batch: int = 256) -> None:
        self.tier = tier
        # Concurrent single-key reads share bulk round trips (see batching.py).
        self.loader: BatchLoader[Entry] = BatchLoader(tier.get, tier.get_many, max_batch=max_batch)
        self.writer: WriteBatcher[tuple[str, bytes, Optional[float]]] = WriteBatcher(
            lambda item: tier.set(*item), tier.set_many, max_batch=max_batch
        )
        self.name = tier.name
        self.strict = strict
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.corrupt = 0
        self.writes = 0
        self.skipped_writes = 0
        self.deletes = 0
        self.read_seconds = 0.0
        # One count per LATENCY_BOUNDS bucket plus the overflow bucket (+Inf).
        self.latency_counts = [0] * (len(LATENCY_BOUNDS) + 1)

    def _failed(self, exc: TierError, action: str) -> None:
        self.errors += 1
        if self.strict:
            raise exc
        log.warning("%s %s failed, carrying on without it: %s", self.name, action, exc)

    async def fetch(self, key: str) -> Optional[Entry]:
        t0 = time.perf_counter()
        try:
            entry = await self.loader.load(key)
        except TierError as exc:
            self.misses += 1
            self._failed(exc, "read")
            return None
        finally:
            elapsed = time.perf_counter() - t0
            self.read_seconds += elapsed
            self.latency_counts[bisect.bisect_left(LATENCY_BOUNDS, elapsed)] += 1
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    async def fetch_many(self, keys: Sequence[str]) -> list[Optional[Entry]]:
        t0 = time.perf_counter()
        try:
            entries = await self.tier.get_many(keys)
        except TierError as exc:
            self.misses += len(keys)
            self._failed(exc, "read")
            return [None] * len(keys)
        finally:
            self.read_seconds += time.perf_counter() - t0
        found = sum(e is not None for e in entries)
        self.hits += found
        self.misses += len(keys) - found
        return entries

    async def store_many(self, items: Sequence[tuple[str, bytes, Optional[float]]]) -> bool:
        try:
            await self.tier.set_many(items)
        except TierError as exc:
            self.skipped_writes += len(items)
            self._failed(exc, "write")
            return False
        self.writes += len(items)
        return True

    async def discard_many(self, keys: Sequence[str]) -> int:
        try:
            removed = await self.tier.delete_many(keys)
        except TierError as exc:
            self._failed(exc, "delete")
            return 0
        self.deletes += len(keys)
        return removed

    async def store(self, key: str, data: bytes, ttl: Optional[float]) -> bool:
        try:
            await self.writer.submit((key, data, ttl))
        except TierError as exc:
            self.skipped_writes += 1
            self._failed(exc, "write")
            return False
        self.writes += 1
        return True

    async def discard(self, key: str) -> bool:
        try:
            removed = await self.tier.delete(key)
        except TierError as exc:
            self._failed(exc, "delete")
            return False
        self.deletes += 1
        return removed

    async def get_stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        try:
            entries: Optional[int] = await self.tier.count()
        except TierError:
            entries = None  # stats must not fail because the level is down
        return {
            "enabled": True,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": _percent(self.hits, lookups),
            "entries": entries,
            "errors": self.errors,
            "corrupt_entries": self.corrupt,
            "writes": self.writes,
            "skipped_writes": self.skipped_writes,
            "deletes": self.deletes,
            "avg_read_ms": 1000.0 * self.read_seconds / lookups if lookups else 0.0,
        }


class AbsentLevel:
    """Stands in for a level that has no URL configured, so stats code needs no special case."""

    enabled = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits = 0

    async def get_stats(self) -> dict[str, Any]:
        return {"enabled": False, "hits": 0, "misses": 0, "hit_rate": 0.0, "entries": 0}
