"""Invalidations a level could not take: remembered, never served, retried until they land.

A cache must never serve a value it was told to forget.  When deleting a key from L2 or L3
fails (the server is down, slow, or refuses), the old value may still be there when the level
answers again.  So the key is remembered here: reads of that key skip the level (a miss, on
to the next level) until a retried delete succeeds, or a newer write of the key overwrites the
old value.  The retry runs in the background, batched, with the level's breaker deciding when
to try.  The set is bounded: past ``max_keys`` the level stops answering reads at all until
the backlog drains, which is always safe and never unbounded.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Optional, Sequence

log = logging.getLogger("mlcache")


class PendingDeletes:
    def __init__(
        self,
        level: str,
        delete_many: Callable[[Sequence[str]], Awaitable[int]],
        *,
        max_keys: int = 100_000,
        retry_interval: float = 0.25,
        batch: int = 500,
    ) -> None:
        self.level = level
        self._delete_many = delete_many  # raises TierError on failure
        self.max_keys = max_keys
        self.retry_interval = retry_interval
        self.batch = batch
        # key -> generation of its latest failure: a retry that was sent before a newer failure
        # of the same key must not clear that newer one.
        self.keys: dict[str, int] = {}
        self._generation = 0
        self.overflowed = False
        self.retried = 0
        self._task: Optional[asyncio.Task[None]] = None
        self._stop = asyncio.Event()

    def __bool__(self) -> bool:
        return bool(self.keys) or self.overflowed

    def blocks(self, key: str) -> bool:
        """True if reads of ``key`` from this level must not be trusted now."""
        return self.overflowed or key in self.keys

    def add(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._generation += 1
            self.keys.pop(key, None)  # re-insert at the end: oldest failures are retried first
            self.keys[key] = self._generation
        if len(self.keys) > self.max_keys and not self.overflowed:
            self.overflowed = True
            log.error("%s: %d invalidations could not be delivered; not reading %s until they are",
                      self.level, len(self.keys), self.level)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._retry_forever(),
                                                                name=f"mlcache-{self.level}-redelete")

    def overwritten(self, key: str) -> None:
        """A newer value of ``key`` reached the level: the old one is gone there."""
        self.keys.pop(key, None)

    async def _retry_forever(self) -> None:
        from .errors import TierError

        while self.keys and not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.retry_interval)
                return
            except asyncio.TimeoutError:
                pass
            chunk = list(self.keys.items())[: self.batch]
            try:
                await self._delete_many([key for key, _ in chunk])
            except TierError:
                continue  # still down: try again next interval
            for key, generation in chunk:
                if self.keys.get(key) == generation:
                    del self.keys[key]
            self.retried += len(chunk)
            if not self.keys:
                self.overflowed = False

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait([self._task])
            self._task = None
