"""``get_or_set``: a value is loaded once however many callers want it, renewed before it
expires, and kept past expiry to serve when its loader fails.

* **Single-flight.**  The first caller of a missing or expired key starts the load in a task
  of its own; later callers await that task (shielded).  So cancelling any caller, the first
  included, never cancels the load the others wait on.
* **Lease** (``lease=True``): before loading, a process takes a short Redis lease on the key
  (lease.py).  Processes that find it taken poll the shared levels with backoff until the value
  appears, the lease frees up (its holder finished or died and it expired), or ``lease_wait``
  passes; then they load themselves.  No Redis: per-process single-flight only (fail-open).
* **Early refresh** (XFetch, Vattani et al., VLDB 2015): a hit refreshes in the background
  when ``now - delta * beta * ln(rand()) >= expiry``, ``delta`` the loader's measured time.
  The closer the expiry and the slower the loader, the likelier; one caller of a hot key
  starts it a little before expiry and nobody waits on it.
* **Fail-safe** (``max_stale``): a failed or timed-out load serves the last value if it
  expired at most ``max_stale`` seconds ago, and the key's loader is not called again for
  ``fail_backoff`` seconds.  Otherwise the error reaches every waiter and nothing is cached.

Where the stale copy lives: in the cache itself.  A loaded value is stored as the envelope
``(MARK, value, expires_at, delta)`` with a physical TTL of ``ttl + max_stale``; ``expires_at``
(wall clock, so every process agrees) is the logical expiry.  So the stale copy is in every
level and every process, survives restarts like any value, and -- the point -- goes away with
``invalidate``: fail-safe never serves a value the cache was told to forget.
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from .config import MAX_TTL_SECONDS
from .lease import RedisLease, new_token
from .levels import SharedLevel
from .validation import DEFAULT_TTL, LEVELS, check_level, check_ttl

if TYPE_CHECKING:
    from .cache import MultiLevelCache

log = logging.getLogger("mlcache")

MARK = "mlcache.loaded/1"
MAX_THROTTLED = 10_000  # keys remembered as "failed recently"; the oldest are forgotten first
_MISS: Any = object()
_BUSY: Any = object()  # another process holds the lease of a key we only meant to refresh early

Loader = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class LoadOptions:
    """get_or_set's options, checked once (cache_result checks them at decoration)."""

    ttl: Optional[float]
    level: str = "L3"
    lease: bool = False
    lease_ttl: float = 5.0
    lease_wait: Optional[float] = None  # None: 2 x lease_ttl
    early_refresh: float = 1.0  # XFetch beta; 0 turns early refresh off
    jitter: float = 0.0
    max_stale: Optional[float] = None
    load_timeout: Optional[float] = None
    fail_backoff: float = 1.0
    rng: Callable[[], float] = random.random


def _seconds(value: Any, name: str, *, none: bool = False, zero: bool = False) -> Any:
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name} must be a number of seconds" + (" or None" if none else ""))
    if value < 0 or (value == 0 and not zero) or value > MAX_TTL_SECONDS:
        raise ValueError(f"{name} must be {'>= 0' if zero else '> 0'} and at most {MAX_TTL_SECONDS}")
    return float(value)


def load_options(ttl_seconds: Any, level: str, default_ttl: Optional[float], **options: Any) -> LoadOptions:
    """Validate get_or_set's arguments into a LoadOptions; unknown names are a TypeError."""
    unknown = set(options) - (set(LoadOptions.__dataclass_fields__) - {"ttl", "level"})
    if unknown:
        raise TypeError(f"get_or_set got unexpected option(s): {', '.join(sorted(unknown))}")
    check_level(level)
    if isinstance(options.get("early_refresh"), bool):
        options["early_refresh"] = 1.0 if options["early_refresh"] else 0.0
    opts = LoadOptions(check_ttl(ttl_seconds, default_ttl), level, **options)
    _seconds(opts.lease_ttl, "lease_ttl")
    _seconds(opts.lease_wait, "lease_wait", none=True, zero=True)
    _seconds(opts.max_stale, "max_stale", none=True, zero=True)
    _seconds(opts.load_timeout, "load_timeout", none=True)
    _seconds(opts.fail_backoff, "fail_backoff", zero=True)
    _seconds(opts.early_refresh, "early_refresh", zero=True)
    if isinstance(opts.jitter, bool) or not isinstance(opts.jitter, (int, float)):
        raise TypeError("jitter must be a number")
    if not 0.0 <= opts.jitter < 1.0:
        raise ValueError("jitter must be a fraction in [0, 1)")
    if not callable(opts.rng):
        raise TypeError("rng must be a callable returning floats in [0, 1)")
    return opts


def unwrap(stored: Any) -> tuple[Any, Optional[float], float]:
    """(value, logical expiry or None, loader seconds) of what the cache holds for a key.  A
    value stored by a plain ``put`` counts as fresh until it physically expires."""
    if type(stored) is tuple and len(stored) == 4 and stored[0] == MARK:
        return stored[1], stored[2], stored[3]
    return stored, None, 0.0


class Loading:
    """The loads of one MultiLevelCache (``cache.loading``): flights in progress and stats."""

    def __init__(self, cache: "MultiLevelCache") -> None:
        self._cache = cache
        self._flights: dict[str, asyncio.Task[tuple[Any, bool]]] = {}
        self._retry_at: dict[str, float] = {}  # key -> monotonic time its loader may run again
        below = [lvl for lvl in (cache.l2_cache, cache.l3_cache) if isinstance(lvl, SharedLevel)]
        self._lease = RedisLease(below[0]) if below and below[0].name == "L2" else None
        self.counts = dict.fromkeys(
            ("loads", "load_failures", "waited_on_load", "stale_served", "throttled", "early_refreshes",
             "early_refresh_failures", "lease_acquired", "lease_waits", "lease_filled_elsewhere",
             "lease_wait_timeouts", "lease_unavailable", "not_stored_changed"), 0)

    def stats(self) -> dict[str, Any]:
        lease_errors = self._lease.errors if self._lease is not None else 0
        return {**self.counts, "lease_errors": lease_errors, "in_flight": len(self._flights),
                "throttled_keys": len(self._retry_at)}

    # --- the caller's side ------------------------------------------------------------------

    async def get_or_set(self, key: str, loader: Loader, opts: LoadOptions) -> Any:
        while True:
            stored = await self._cache.get(key, _MISS)
            stale: Optional[tuple[Any, float]] = None
            if stored is not _MISS:
                value, expires_at, delta = unwrap(stored)
                now = time.time()
                if expires_at is None or now < expires_at:
                    if (opts.early_refresh and expires_at is not None and key not in self._flights
                            and now - delta * opts.early_refresh * math.log(1.0 - opts.rng()) >= expires_at
                            and not self._throttled(key)):
                        self.counts["early_refreshes"] += 1
                        self._start(key, loader, opts, (value, expires_at), early=True)
                    return value
                if opts.max_stale is not None and now - expires_at <= opts.max_stale:
                    stale = (value, expires_at)
                    if self._throttled(key):
                        self.counts["throttled"] += 1
                        self.counts["stale_served"] += 1
                        return value
            task = self._flights.get(key) or self._start(key, loader, opts, stale)
            self.counts["waited_on_load"] += 1
            try:
                value, was_stale = await asyncio.shield(task)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if task.cancelled() and current is not None and not current.cancelling():
                    continue  # the load was cancelled (the cache closing), not this caller
                raise
            if was_stale:
                self.counts["stale_served"] += 1
            return value

    def _throttled(self, key: str) -> bool:
        retry_at = self._retry_at.get(key)
        if retry_at is None:
            return False
        if time.monotonic() < retry_at:
            return True
        del self._retry_at[key]
        return False

    def _start(self, key: str, loader: Loader, opts: LoadOptions, stale: Optional[tuple[Any, float]],
               *, early: bool = False) -> asyncio.Task[tuple[Any, bool]]:
        task = asyncio.get_running_loop().create_task(self._fly(key, loader, opts, stale, early),
                                                      name=f"mlcache-load:{key[:64]}")
        self._flights[key] = task

        def landed(done: asyncio.Task[tuple[Any, bool]]) -> None:
            if self._flights.get(key) is done:
                del self._flights[key]
            if not done.cancelled():
                done.exception()  # retrieved: an early refresh has nobody waiting on it
        task.add_done_callback(landed)
        return task

    # --- the load ---------------------------------------------------------------------------

    async def _fly(self, key: str, loader: Loader, opts: LoadOptions, stale: Optional[tuple[Any, float]],
                   early: bool) -> tuple[Any, bool]:
        token: Optional[str] = None
        try:
            if opts.lease and self._lease is not None and LEVELS.index(opts.level) > 0:
                token, value = await self._take_lease(key, opts, early)
                if value is _BUSY:
                    assert stale is not None  # an early refresh always has the current value
                    return stale[0], False
                if value is not _MISS:
                    return value, False
            try:
                return await self._load(key, loader, opts), False
            except Exception as exc:
                self.counts["load_failures"] += 1
                if early:
                    self.counts["early_refresh_failures"] += 1
                if stale is not None and opts.max_stale is not None and time.time() - stale[1] <= opts.max_stale:
                    self._throttle(key, opts)
                    log.warning("loader for %r failed (%s); serving the value that expired %.1f s ago",
                                key[:64], type(exc).__name__, max(0.0, time.time() - stale[1]))
                    return stale[0], True
                raise
        finally:
            if token is not None and self._lease is not None:
                await self._lease.release(key, token)

    async def _load(self, key: str, loader: Loader, opts: LoadOptions) -> Any:
        self.counts["loads"] += 1
        t0 = time.monotonic()
        # A load is a read: if the key is put or invalidated while the loader runs (here or,
        # via the backplane, elsewhere), what it loaded may predate that change, so it is
        # handed to the waiters but not stored (docs/consistency.md).
        cache = self._cache
        mark = cache._begin_read()
        try:
            if opts.load_timeout is None:
                value = await loader()
            else:
                value = await asyncio.wait_for(loader(), opts.load_timeout)
            changed = cache._changed_since(key, mark)
        finally:
            cache._end_read()
        if changed:
            self.counts["not_stored_changed"] += 1
            return value
        delta = time.monotonic() - t0
        ttl = opts.ttl
        if ttl is None:
            expires_at, physical = None, None
        else:
            # Jitter only shortens: a value never lives longer than asked.
            ttl *= 1.0 - opts.jitter * opts.rng()
            expires_at = time.time() + ttl
            physical = min(ttl + (opts.max_stale or 0.0), float(MAX_TTL_SECONDS))
        await self._cache.put(key, (MARK, value, expires_at, delta), ttl_seconds=physical, level=opts.level)
        self._retry_at.pop(key, None)
        return value

    def _throttle(self, key: str, opts: LoadOptions) -> None:
        self._retry_at.pop(key, None)
        self._retry_at[key] = time.monotonic() + opts.fail_backoff
        while len(self._retry_at) > MAX_THROTTLED:
            del self._retry_at[next(iter(self._retry_at))]

    async def _take_lease(self, key: str, opts: LoadOptions, early: bool) -> tuple[Optional[str], Any]:
        """Hold the key's lease (token, _MISS), or learn the value another process loaded
        (None, value), or give up waiting and load without a lease (None, _MISS); an early
        refresh never waits: (None, _BUSY) if another process holds the lease."""
        assert self._lease is not None
        token = new_token()
        wait = opts.lease_wait if opts.lease_wait is not None else 2 * opts.lease_ttl
        deadline = time.monotonic() + wait
        delay = 0.005
        waited = False
        while True:
            got = await self._lease.acquire(key, token, opts.lease_ttl)
            if got is None:
                self.counts["lease_unavailable"] += 1
                return None, _MISS
            if got:
                self.counts["lease_acquired"] += 1
                if early:
                    return token, _MISS
                # The previous holder may have stored the value and released just before we
                # took the lease: look once more, or we would load it a second time.
                value = await self._fresh(key)
                if value is not _MISS:
                    self.counts["lease_filled_elsewhere"] += 1
                return token, value
            if early:
                return None, _BUSY  # another process is refreshing it
            if not waited:
                waited = True
                self.counts["lease_waits"] += 1
            left = deadline - time.monotonic()
            if left <= 0:
                self.counts["lease_wait_timeouts"] += 1
                return None, _MISS
            # Poll with backoff (5 ms growing to 100 ms, jittered so waiters spread out).
            await asyncio.sleep(min(left, delay * (0.5 + opts.rng())))
            delay = min(delay * 1.5, 0.1)
            value = await self._fresh(key)
            if value is not _MISS:
                self.counts["lease_filled_elsewhere"] += 1
                return None, value

    async def _fresh(self, key: str) -> Any:
        """The key's value from L2/L3 if it is not logically expired, else _MISS.  L1 is
        skipped: it may hold this process's own expired copy."""
        stored = await self._cache._read_below(key, _MISS)
        if stored is _MISS:
            return _MISS
        value, expires_at, _ = unwrap(stored)
        return value if expires_at is None or time.time() < expires_at else _MISS

    async def aclose(self) -> None:
        """Cancel the loads in progress (their callers retry, then fail on the closed cache)."""
        tasks = list(self._flights.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
