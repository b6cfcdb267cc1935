"""The in-process level as the cache sees it: the compiled LRU, its ceiling, and the adaptive
sizing controller that runs beside it.  The guide's ``cache.l1_cache`` is this object."""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from .adaptive import CapacityController
from .config import L1Config
from .errors import ConfigError
from .levels import _percent
from .lru import LRU


class L1Cache:
    """The in-process level: a compiled LRU (pure twin without the extension) plus its ceiling.

    ``capacity`` may be set at run time; shrinking evicts least-recently-used entries first.
    ``capacity`` never exceeds ``max_capacity``.
    """

    def __init__(self, config: L1Config) -> None:
        self.config = config
        self.lru = LRU(
            config.initial_capacity,
            config.hit_rate_window,
            policy=config.policy,
            max_memory_bytes=config.max_memory_bytes,
        )
        self._max_capacity = config.max_capacity
        self.controller = CapacityController.from_config(config) if config.adaptive else None
        self._resizer: Optional[asyncio.Task[None]] = None

    def start(self) -> None:
        """Start the adaptive sizing controller's background task (one step per resize_interval)."""
        if self.controller is not None and self._resizer is None:
            self._resizer = asyncio.create_task(self._resize_forever(), name="mlcache-l1-resizer")

    async def _resize_forever(self) -> None:
        assert self.controller is not None
        while True:
            self.controller.step(self.lru)
            await asyncio.sleep(self.config.resize_interval)

    async def stop(self) -> None:
        if self._resizer is not None:
            self._resizer.cancel()
            await asyncio.wait([self._resizer])
            self._resizer = None

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
        if self.controller is not None:
            # The user's choice is the controller's new starting point, not something to undo.
            self.controller.capacity = value
            self.controller.min_capacity = min(self.controller.min_capacity, value)

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
        if self.controller is not None:
            self.controller.max_capacity = value
            self.controller.capacity = min(self.controller.capacity, value)
            self.controller.min_capacity = min(self.controller.min_capacity, value)

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
            "policy": lru.policy,
            "memory_bytes": lru.memory_bytes,
            "max_memory_bytes": lru.max_memory_bytes,
            "bytes_per_entry": lru.memory_bytes / entries if entries else 0.0,
            "ghost_hits": lru.ghost_hits,
            "adaptive": None if self.controller is None else self.controller.stats(),
        }
