"""A shared level (L2 or L3) as the cache sees it: counters, deadlines, circuit breaker,
batching and fail-open.  The guide's ``cache.l2_cache`` / ``l3_cache`` are these objects."""
from __future__ import annotations

import asyncio
import bisect
import logging
import time
from typing import Any, Awaitable, Optional, Sequence, Union

from .batching import BatchLoader, WriteBatcher
from .breaker import CLOSED, CircuitBreaker
from .pending import PendingDeletes
from .config import L2Config, L3Config
from .errors import TierError, TierTimeoutError
from .tiers.base import Entry, Tier

log = logging.getLogger("mlcache")

# Upper bounds (seconds) of the read-latency histogram kept for L2/L3: 0.1 ms to 2.5 s.
# Seconds between two warnings about one failing level.
LOG_EVERY = 1.0

_bisect_left = bisect.bisect_left

LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
WRITE_BATCH = 256  # least cap on a coalesced write (see SharedLevel.__init__)


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _forget_straggler(pending: set[Any]) -> Any:
    def done(task: asyncio.Future[Any]) -> None:
        pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its caller may have stopped waiting
    return done


class SharedLevel:
    """A tier (L2 or L3) with the cache's view of it: hits, misses, errors, time spent.

    Fail-open lives here: a TierError on a read is a miss, on a write a skipped write, both
    counted; with ``strict`` the error is raised to the caller instead.
    """

    enabled = True

    def __init__(self, tier: Tier, config: Union[L2Config, L3Config], *, strict: bool, max_batch: int = 32) -> None:
        self.tier = tier
        self.name: str = tier.name
        cfg = config
        self.read_timeout: float = cfg.read_timeout
        self.write_timeout: float = cfg.write_timeout
        self.breaker = CircuitBreaker(cfg.breaker_failures, cfg.breaker_reset, cfg.breaker_max_reset)
        # Concurrent single-key reads and writes share bulk round trips (see batching.py); the
        # breaker learns from each round trip, not from each caller of it.
        read_t, write_t = cfg.read_timeout, cfg.write_timeout
        self.loader: BatchLoader[Entry] = BatchLoader(
            self._guarded(tier.get, read_t), self._guarded(tier.get_many, read_t), max_batch=max_batch,
            timeout=read_t, direct=getattr(tier, "cancel_safe", False), observe=self._observe,
        )
        # Writes keep the larger cap: a batch applies its items in submission order, but two
        # batches in flight at once land in either order, and concurrent puts of one key
        # issued in one loop iteration should leave the last one standing.
        write_batch = max(max_batch, WRITE_BATCH)
        self.writer: WriteBatcher[tuple[str, bytes, Optional[float]]] = WriteBatcher(
            self._guarded(lambda item: tier.set(*item), write_t), self._guarded(tier.set_many, write_t),
            max_batch=write_batch, timeout=write_t,
        )
        # Promotions from the level below: SET NX where the tier has it (see tiers/redis.py),
        # so a value read before an invalidation or a newer put never overwrites either.
        fill_one, fill_many = getattr(tier, "fill", tier.set), getattr(tier, "fill_many", tier.set_many)
        self.filler: WriteBatcher[tuple[str, bytes, Optional[float]]] = WriteBatcher(
            self._guarded(lambda item: fill_one(*item), write_t), self._guarded(fill_many, write_t),
            max_batch=write_batch, timeout=write_t,
        )
        self.fills = 0
        self.skipped = 0  # calls not made because the breaker was open
        # Deletes that failed: those keys are not read from this level until a retry lands.
        self.pending = PendingDeletes(self.name, self._redelete)
        self._stragglers: set[asyncio.Future[Any]] = set()
        self._late_bulk = 0  # bulk writes (store_many) past their deadline, still running
        self.strict = strict
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._errors_logged = 0
        self._log_after = 0.0
        self.corrupt = 0
        self.writes = 0
        self.skipped_writes = 0
        self.deletes = 0
        self.read_seconds = 0.0
        # One count per LATENCY_BOUNDS bucket plus the overflow bucket (+Inf).
        self.latency_counts = [0] * (len(LATENCY_BOUNDS) + 1)

    def _guarded(self, call: Any, timeout: float) -> Any:
        breaker = self.breaker
        clock = time.monotonic

        async def guarded(arg: Any) -> Any:
            t0 = clock()
            try:
                result = await call(arg)
            except TierError:
                breaker.failure()
                raise
            # A reply that came after its deadline is no sign of health: its caller gave up and
            # counted a failure.  Counting it a success closed the breaker after every late
            # reply, so under added latency the breaker flapped and callers kept paying the
            # deadline (test_faults_proxy's latency case found it).
            if clock() - t0 <= timeout:
                breaker.success()
            return result

        return guarded

    async def _bounded(self, call: Any, arg: Any, timeout: float, action: str, *, write: bool = False) -> Any:
        """Run a tier call under a deadline without ever cancelling the driver mid-command
        (redis-py can lose a cancellation, or a reply, when cancelled at the wrong moment):
        the call goes on in its own task, bounded by the driver's socket timeout, and only
        the caller stops waiting.  A ``write`` that goes on is counted late until it ends."""
        task = asyncio.ensure_future(self._guarded(call, timeout)(arg))
        self._stragglers.add(task)
        task.add_done_callback(_forget_straggler(self._stragglers))
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            if write and not task.done():
                self._late_bulk += 1
                task.add_done_callback(self._late_bulk_done)
            raise self._deadline(action) from None

    def _late_bulk_done(self, task: "asyncio.Future[Any]") -> None:
        self._late_bulk -= 1

    def _late_writes(self) -> bool:
        """Are writes past their deadline still running?  Such a write may land after what its
        caller did next (an invalidation, a newer put), so while one runs no pending delete is
        retried and no newer write clears one: the retry's delete must land after it."""
        return bool(self.writer.late or self.filler.late or self._late_bulk)

    def _deadline(self, action: str) -> TierTimeoutError:
        # A caller giving up on a slow level is a failure too: slowness must open the breaker.
        self.breaker.failure()
        return TierTimeoutError(self.name, f"{action} deadline exceeded")

    def _failed(self, exc: TierError, action: str) -> None:
        self.errors += 1
        if self.strict:
            raise exc
        # At most one warning per level per LOG_EVERY seconds, with the count it stands for: a
        # line per failure turned an outage under load into tens of thousands of log lines a
        # second (and memory, wherever logs are buffered); the counters keep every failure.
        now = time.monotonic()
        if now >= self._log_after:
            self._log_after = now + LOG_EVERY
            more = self.errors - self._errors_logged - 1
            self._errors_logged = self.errors
            log.warning("%s %s failed, carrying on without it: %s%s", self.name, action, exc,
                        f" (and {more} more failures since the last warning)" if more > 0 else "")

    async def _redelete(self, keys: Sequence[str]) -> int:
        if not self.breaker.allow():
            raise TierTimeoutError(self.name, "breaker open")
        if self._late_writes():
            raise TierTimeoutError(self.name, "writes past their deadline still running")
        removed: int = await self._bounded(self.tier.delete_many, keys, self.write_timeout, "delete")
        self.deletes += len(keys)
        return removed

    async def fetch(self, key: str) -> Optional[Entry]:
        """The entry for ``key``, or None (a miss, a skipped level, or a failure when not strict)."""
        read = self.start_read(key)
        if read is None:
            return None
        try:
            return await read
        except (TierError, asyncio.TimeoutError) as exc:
            self.read_failed(exc)
            return None

    def start_read(self, key: str) -> Optional[Awaitable[Optional[Entry]]]:
        """:meth:`fetch` in two halves, for the cache's read path (a coroutine layer fewer per
        L1 miss): the read to await, or None if this level is skipped for ``key`` (counted as
        a miss).  The read's hits, misses and latency are counted by the batch it joins (see
        _observe); a TierError or asyncio.TimeoutError it raises goes to :meth:`read_failed`."""
        # PendingDeletes.blocks and CircuitBreaker.allow are inlined up to their common answer
        # (nothing pending, breaker closed), a method call each saved.
        pending = self.pending
        if pending.overflowed or (pending.keys and key in pending.keys):
            self.misses += 1
            return None
        breaker = self.breaker
        if breaker.state != CLOSED and not breaker.allow():
            self.misses += 1
            self.skipped += 1
            return None
        return self.loader.request(key)

    def read_failed(self, exc: BaseException) -> None:
        """A read from :meth:`start_read` failed: an error, counted and logged, or raised when
        strict.  (Its batch counted it a miss already.)"""
        if isinstance(exc, TierError):
            self._failed(exc, "read")
        else:  # the batch's deadline
            self._failed(self._deadline("read"), "read")

    def _observe(self, seconds: float, served: int, found: int) -> None:
        # Once per round trip (BatchLoader's observe), for every caller it answered, failed or
        # left at the deadline: each is a hit or a miss, and its latency is the round trip's.
        self.read_seconds += seconds * served
        self.latency_counts[_bisect_left(LATENCY_BOUNDS, seconds)] += served
        self.hits += found
        self.misses += served - found

    async def fetch_many(self, keys: Sequence[str]) -> list[Optional[Entry]]:
        if self.pending:
            allowed = [k for k in keys if not self.pending.blocks(k)]
            if len(allowed) < len(keys):
                fetched = dict(zip(allowed, await self.fetch_many(allowed))) if allowed else {}
                self.misses += len(keys) - len(allowed)
                return [fetched.get(k) for k in keys]
        if not self.breaker.allow():
            self.misses += len(keys)
            self.skipped += 1
            return [None] * len(keys)
        t0 = time.perf_counter()
        try:
            entries: list[Optional[Entry]] = await self._bounded(
                self.tier.get_many, keys, self.read_timeout, "read"
            )
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
        # A write that does not land leaves whatever older value the level holds: it is
        # remembered like a failed invalidation, so that older value is never served.
        if not self.breaker.allow():
            self.skipped_writes += len(items)
            self.skipped += 1
            self.pending.add([key for key, _, _ in items])
            return False
        try:
            await self._bounded(self.tier.set_many, items, self.write_timeout, "write", write=True)
        except TierError as exc:
            self.skipped_writes += len(items)
            self.pending.add([key for key, _, _ in items])
            self._failed(exc, "write")
            return False
        self.writes += len(items)
        if self.pending and not self._late_writes():
            for key, _, _ in items:
                self.pending.overwritten(key)
        return True

    async def discard_many(self, keys: Sequence[str]) -> int:
        # An open breaker does not drop an invalidation: it goes straight to the pending set,
        # so the key is not read from this level until the background retry lands.  Sending it
        # anyway (as before) gave every invalidation made during an outage its own abandoned
        # call, each holding a pooled connection: a burst of invalidations grew the Redis pool
        # to max_connections, where it stayed after the outage (test_faults_proxy found it).
        if not self.breaker.allow():
            self.skipped += 1
            self.pending.add(keys)
            return 0
        try:
            removed: int = await self._bounded(self.tier.delete_many, keys, self.write_timeout, "delete")
        except TierError as exc:
            self.pending.add(keys)
            self._failed(exc, "delete")
            return 0
        self.deletes += len(keys)
        return removed

    async def store(self, key: str, data: bytes, ttl: Optional[float]) -> bool:
        if not self.breaker.allow():
            self.skipped_writes += 1
            self.skipped += 1
            self.pending.add((key,))
            return False
        try:
            try:
                await self.writer.submit((key, data, ttl))
            except asyncio.TimeoutError:
                raise self._deadline("write") from None
        except TierError as exc:
            self.skipped_writes += 1
            self.pending.add((key,))
            self._failed(exc, "write")
            return False
        self.writes += 1
        if self.pending and not self._late_writes():
            self.pending.overwritten(key)
        return True

    async def fill(self, key: str, data: bytes, ttl: Optional[float]) -> None:
        """Promote a value read below; a failure only leaves the level without it."""
        if not self.breaker.allow():
            self.skipped += 1
            return
        try:
            try:
                await self.filler.submit((key, data, ttl))
            except asyncio.TimeoutError:
                raise self._deadline("write") from None
        except TierError as exc:
            self._failed(exc, "write")
            return
        self.fills += 1

    async def fill_many(self, items: Sequence[tuple[str, bytes, Optional[float]]]) -> None:
        if not self.breaker.allow():
            self.skipped += 1
            return
        fill_many = getattr(self.tier, "fill_many", self.tier.set_many)
        try:
            await self._bounded(fill_many, items, self.write_timeout, "write")
        except TierError as exc:
            self._failed(exc, "write")
            return
        self.fills += len(items)

    async def admin(self, call: Any, arg: Any, action: str, default: Any = None) -> Any:
        """A tag or prefix operation: bounded by the write deadline, fail-open like a write
        (``default`` when the level is down or its breaker open)."""
        if not self.breaker.allow():
            self.skipped += 1
            return default
        try:
            return await self._bounded(call, arg, self.write_timeout, action)
        except TierError as exc:
            self._failed(exc, action)
            return default

    async def discard(self, key: str) -> bool:
        if not self.breaker.allow():  # remembered and retried, as in discard_many
            self.skipped += 1
            self.pending.add((key,))
            return False
        try:
            removed: bool = await self._bounded(self.tier.delete, key, self.write_timeout, "delete")
        except TierError as exc:
            self.pending.add((key,))
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
            "fills": self.fills,
            "skipped_writes": self.skipped_writes,
            "deletes": self.deletes,
            "avg_read_ms": 1000.0 * self.read_seconds / lookups if lookups else 0.0,
            "skipped_by_breaker": self.skipped,
            "pending_invalidations": len(self.pending.keys),
            "pending_overflowed": self.pending.overflowed,
            "redeleted": self.pending.retried,
            "breaker": self.breaker.stats(),
        }

    async def aclose(self) -> None:
        """Stop batching and abandon driver calls still in flight (the connections close next)."""
        await self.pending.aclose()
        await self.loader.aclose()
        await self.writer.aclose()
        await self.filler.aclose()
        for task in list(self._stragglers):
            task.cancel()
        if self._stragglers:
            await asyncio.wait(list(self._stragglers))


class AbsentLevel:
    """Stands in for a level that has no URL configured, so stats code needs no special case."""

    enabled = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits = 0

    async def get_stats(self) -> dict[str, Any]:
        return {"enabled": False, "hits": 0, "misses": 0, "hit_rate": 0.0, "entries": 0}
