"""MultiLevelCache: the read path, the write path, promotion, invalidation and stats.

Read: L1 (no await on a hit) -> L2 -> L3.  A hit below is promoted into every level above
it with the lifetime it has left, so a value never outlives its source.  Write: serialize
once, then write the deepest requested level first, so a reader never finds a value in an
upper level that the level below it has not taken.  Invalidate: deepest level first, for
the same reason in reverse (deleting L2 before L3 would let a reader re-promote from L3).
"""
from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Any, Iterable, Mapping, Optional, Union

from .backplane import UNTRUSTED_TTL, Backplane, tls_kwargs
from .config import CacheConfig
from .errors import SerializationError, TierError
from .l1 import L1Cache
from .levels import AbsentLevel, SharedLevel
from .metrics import Metrics
from .serialization import Serializer
from .tiers.base import Entry
from .validation import DEFAULT_TTL, check_key, check_keys, check_level, check_prefix, check_tags, check_ttl

log = logging.getLogger("mlcache")

# The guide's combined target is 80-95 %; "achieved" means reaching its lower bound.
COMBINED_TARGET_HIT_RATE = 80.0

_MISS: Any = object()
# Keys (or prefixes) logged as changed while reads are in flight, at most; see _log_full.
CHANGE_LOG_LIMIT = 4096


class MultiLevelCache:
    """A cache answered by the nearest of L1 (in-process), L2 (Redis) and L3 (PostgreSQL).

    >>> cache = MultiLevelCache({"redis_url": "redis://localhost:6379/0"})   # doctest: +SKIP
    >>> await cache.initialize()                                              # doctest: +SKIP
    >>> await cache.put("user:123", {"name": "John"}, ttl_seconds=300)        # doctest: +SKIP
    >>> await cache.get("user:123")                                           # doctest: +SKIP
    {'name': 'John'}

    A level without a URL (in the config or ``REDIS_URL`` / ``POSTGRES_URL``) is absent.
    """

    def __init__(self, config: Union[Mapping[str, Any], CacheConfig, None] = None) -> None:
        self.config = config if isinstance(config, CacheConfig) else CacheConfig.from_dict(config)
        cfg = self.config
        self._serializer = Serializer(cfg.max_value_bytes)
        self._default_ttl = cfg.default_ttl
        self.l1_cache = L1Cache(cfg.l1)
        # Bound once: the L1 hit path is one C call with no attribute chain.
        self._l1 = self.l1_cache.lru
        self._l1_get = self._l1.get
        self.l2_cache: Union[SharedLevel, AbsentLevel] = AbsentLevel("L2")
        self.l3_cache: Union[SharedLevel, AbsentLevel] = AbsentLevel("L3")
        if cfg.l2.redis_url is not None:
            from .tiers.redis import RedisTier

            self.l2_cache = SharedLevel(RedisTier(cfg.l2), cfg.l2, strict=cfg.strict, max_batch=cfg.max_batch)
        if cfg.l3.database_url is not None:
            from .tiers.postgres import PostgresTier

            self.l3_cache = SharedLevel(PostgresTier(cfg.l3), cfg.l3, strict=cfg.strict, max_batch=cfg.max_batch)
        # The shared levels present, nearest first.
        self._below: tuple[SharedLevel, ...] = tuple(
            lvl for lvl in (self.l2_cache, self.l3_cache) if isinstance(lvl, SharedLevel)
        )
        # L1's lifetime cap: l1.max_ttl, or the backplane's shorter one while its subscription
        # is down (see backplane.py).  Until the first subscription, the short one.
        self._l1_max_ttl = cfg.l1.max_ttl
        self._l1_cap = cfg.l1.max_ttl
        self.backplane: Optional[Backplane] = None
        if cfg.l2.redis_url is not None and cfg.l2.backplane:
            self.backplane = Backplane(
                cfg.l2.backplane_url or cfg.l2.redis_url, cfg.l2.key_prefix, on_keys=self._remote_keys,
                on_clear=self._remote_clear, on_prefix=self._forget_prefix, on_trust=self._trust,
                client_kwargs=tls_kwargs(cfg.l2))
            self._l1_cap = _capped(UNTRUSTED_TTL, self._l1_max_ttl)
        # No stale write-back (docs/consistency.md): a read records the mutation count when it
        # starts; a key changed meanwhile (here, or on another process via the backplane) is
        # not promoted.  Changes are logged only while reads are in flight, and the log is
        # emptied whenever none is (see _changed_since).
        self._local_tags: dict[str, set[str]] = {}
        self._mutations = 0
        self._cleared_at = 0
        self._reads = 0  # reads (get, get_many, loads) in flight
        self._changed_at: dict[str, int] = {}
        self._prefixes_changed: list[tuple[str, int]] = []
        self.metrics = Metrics(self)
        self._started = False
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------

    async def initialize(self) -> "MultiLevelCache":
        """Connect the shared levels (and create L3's table).  Idempotent.

        A level that cannot be reached is logged and treated as failing (fail-open), unless
        ``strict`` is set, in which case its TierError is raised.
        """
        if self._started:
            return self
        if self._closed:
            raise RuntimeError("this MultiLevelCache was closed; make a new one")
        for level in self._below:
            try:
                await level.tier.start()
            except TierError as exc:
                if self.config.strict:
                    await self.close()
                    raise
                level.errors += 1
                log.warning("%s unavailable at start-up, continuing without it: %s", level.name, exc)
        if self.backplane is not None:
            await self.backplane.start()
        await self.metrics.start(self.config.prometheus_port, self.config.prometheus_addr)
        self.l1_cache.start()
        self._started = True
        return self

    async def close(self) -> None:
        """Close the shared levels' connections.  Idempotent; L1 stays readable."""
        if self._closed:
            return
        self._closed = True
        self._started = False
        await self.metrics.stop()
        await self.l1_cache.stop()
        if self._loading is not None:
            await self._loading.aclose()
        if self.backplane is not None:
            await self.backplane.close()
        for level in self._below:
            await level.aclose()
            try:
                await level.tier.close()
            except TierError as exc:
                log.warning("%s did not close cleanly: %s", level.name, exc)

    async def __aenter__(self) -> "MultiLevelCache":
        return await self.initialize()

    async def __aexit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        await self.close()

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("MultiLevelCache is not initialized: await cache.initialize() first")

    # --- read path -------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value for ``key`` from the nearest level, or ``default`` on a miss.

        A stored ``None`` is returned as ``None``; pass ``default=`` to tell it from a miss.
        """
        # Only validated keys are ever stored in L1, so a hit proves the key legal: the full
        # check runs after an L1 miss (or an unhashable key), keeping the hit path to one C
        # call.  The bound method goes through a local: CPython 3.11 cannot specialise a call
        # of a callable held in an instance attribute, and the local saves ~18 ns per hit.
        l1_get = self._l1_get
        try:
            value = l1_get(key, _MISS)
        except TypeError:
            check_key(key)
            raise
        if value is not _MISS:
            return value
        check_key(key)
        if not self._below:
            return default
        value, _ = await self._fetch_below(key)
        return default if value is _MISS else value

    async def lookup(self, key: str) -> tuple[Any, Optional[str]]:
        """Like :meth:`get`, but also say which level answered: ``(value, "L1" | "L2" | "L3")``,
        or ``(None, None)`` on a miss.  For diagnostics and benchmarks."""
        check_key(key)
        value = self._l1_get(key, _MISS)
        if value is not _MISS:
            return value, "L1"
        if not self._below:
            return None, None
        value, name = await self._fetch_below(key)
        return (None, None) if value is _MISS else (value, name)

    async def _fetch_below(self, key: str) -> tuple[Any, Optional[str]]:
        """Look ``key`` up in L2 then L3; promote a hit upward.  Returns (value, level name)."""
        if not self._started:
            self._require_started()
        # One coroutine for the whole walk: decoding and promotion are inlined because each
        # extra coroutine layer cost ~5% of a batched L2 get at 64 callers.
        loads = self._serializer.loads
        upper: Optional[SharedLevel] = None
        mark = self._mutations
        self._reads += 1
        try:
            for level in self._below:
                # level.fetch, inlined: one coroutine layer fewer per L1 miss.
                read = level.start_read(key)
                if read is None:
                    upper = level
                    continue
                try:
                    entry = await read
                except (TierError, asyncio.TimeoutError) as exc:
                    level.read_failed(exc)
                    entry = None
                if entry is None:
                    upper = level
                    continue
                try:
                    value = loads(key, entry.data)
                except SerializationError as exc:
                    await self._drop_corrupt(level, key, exc)
                    upper = level
                    continue
                # (No mutation at all since the mark, the usual case, needs no lookup.)
                if self._mutations != mark and self._changed_since(key, mark):
                    # Put or invalidated since this read began: the value read may be the old
                    # one, and writing it back upward would undo that change.
                    return value, level.name
                # The remaining lifetime travels with the value: an upper level forgets it no
                # later than the level it came from.  (Two shared levels at most: L2 over L3.)
                ttl = entry.ttl
                if upper is not None:
                    await upper.fill(key, entry.data, ttl)
                    if self._mutations != mark and self._changed_since(key, mark):
                        return value, level.name
                if ttl is None or ttl > 0:
                    # _l1_set, inlined (once per L2/L3 hit): capped by L1's lifetime cap.
                    cap = self._l1_cap
                    if cap is not None and (ttl is None or ttl > cap):
                        ttl = cap
                    self._l1.set(key, value, ttl, len(entry.data))
                # The level's own name: a position in _below said "L2" for an L3 hit when no
                # Redis was configured (test_faults_servers found it).
                return value, level.name
            return _MISS, None
        finally:
            self._reads -= 1
            if not self._reads:
                self._forget_changes()

    # --- consistency: L1 cap, mutation marks, the backplane's callbacks --------------------

    def _l1_set(self, key: str, value: Any, ttl: Optional[float], size: int) -> None:
        cap = self._l1_cap
        if cap is not None and (ttl is None or ttl > cap):
            ttl = cap
        self._l1.set(key, value, ttl, size)

    def _begin_read(self) -> int:
        """Track a read (or a load): the mark to give _changed_since, then call _end_read."""
        self._reads += 1
        return self._mutations

    def _end_read(self) -> None:
        self._reads -= 1
        if not self._reads:
            self._forget_changes()

    def _forget_changes(self) -> None:
        # No read in flight: no mark older than now is held, so the log can go.
        if self._changed_at:
            self._changed_at.clear()
        if self._prefixes_changed:
            self._prefixes_changed.clear()

    def _changed_since(self, key: str, mark: int) -> bool:
        if self._cleared_at > mark or self._changed_at.get(key, 0) > mark:
            return True
        return any(n > mark and key.startswith(prefix) for prefix, n in self._prefixes_changed)

    def _mutated(self, keys: Iterable[str]) -> None:
        """Keys changed by this process or announced by another: reads in flight must not
        write back what they read of them.  (A per-key count of reads in flight, kept to log
        only those keys, cost every L2 hit two dict updates: 4% of a batched read.)"""
        self._mutations += 1
        if not self._reads:
            return
        n, changed = self._mutations, self._changed_at
        keys = keys if isinstance(keys, list) else list(keys)
        for key in keys:
            changed[key] = n
        if len(changed) > CHANGE_LOG_LIMIT:
            self._log_full(n)
        # A read starting now must not share a fetch that began before the change.
        for level in self._below:
            level.loader.forget(keys)

    def _mutated_prefix(self, prefix: str) -> None:
        self._mutations += 1
        if not self._reads:
            return
        self._prefixes_changed.append((prefix, self._mutations))
        if len(self._prefixes_changed) > CHANGE_LOG_LIMIT:
            self._log_full(self._mutations)
        for level in self._below:
            level.loader.forget_prefix(prefix)

    def _log_full(self, n: int) -> None:
        # Reads in flight without a pause for long: rather than grow the log, count every
        # key changed.  The reads in flight then skip their write-back, nothing worse.
        self._cleared_at = n
        self._forget_changes()

    def _announce(self, keys: list[str]) -> None:
        self._mutated(keys)
        if self.backplane is not None:
            self.backplane.publish_keys(keys)

    def _remote_keys(self, keys: list[str]) -> None:
        self._mutated(keys)
        delete = self._l1.delete
        for key in keys:
            delete(key)

    def _remote_clear(self) -> None:
        self._mutations += 1
        self._cleared_at = self._mutations
        self._l1.clear()

    def _trust(self, trusted: bool) -> None:
        # Dropped: what L1 holds may miss invalidations from now on.  Back: it may have missed
        # some meanwhile.  Either way it starts afresh.
        self._l1_cap = self._l1_max_ttl if trusted else _capped(UNTRUSTED_TTL, self._l1_max_ttl)
        self._remote_clear()

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Look many keys up at once: ``{key: value}`` for the keys found at any level.

        L1 answers first; only its misses go down, as one round trip per level (a Lua
        script of GET+PTTL in Redis, ``= ANY($1)`` in PostgreSQL).  Hits below are promoted
        upward with their remaining lifetime, in bulk.
        """
        wanted = list(dict.fromkeys(check_keys(keys)))
        found: dict[str, Any] = {}
        missing: list[str] = []
        for key in wanted:
            value = self._l1_get(key, _MISS)
            if value is _MISS:
                missing.append(key)
            else:
                found[key] = value
        if missing and self._below:
            self._require_started()
        mark = self._begin_read()
        try:
            return await self._get_many_below(missing, found, mark)
        finally:
            self._end_read()

    async def _get_many_below(self, missing: list[str], found: dict[str, Any], mark: int) -> dict[str, Any]:
        for depth, level in enumerate(self._below):
            if not missing:
                break
            entries = await level.fetch_many(missing)
            still: list[str] = []
            hits: list[tuple[str, Any, Entry]] = []
            for key, entry in zip(missing, entries):
                if entry is not None:
                    value = await self._decode(level, key, entry)
                    if value is not _MISS:
                        hits.append((key, value, entry))
                        continue
                still.append(key)
            if hits:
                for key, value, _ in hits:
                    found[key] = value
                # Keys changed since the read began are returned but not written back.
                hits = [h for h in hits if not self._changed_since(h[0], mark)]
                items = [(key, entry.data, entry.ttl) for key, _, entry in hits]
                for upper in reversed(self._below[:depth]):
                    if items:
                        await upper.fill_many(items)
                for key, value, entry in hits:
                    if (entry.ttl is None or entry.ttl > 0) and not self._changed_since(key, mark):
                        self._l1_set(key, value, entry.ttl, len(entry.data))
            missing = still
        return found

    async def _decode(self, level: SharedLevel, key: str, entry: Entry) -> Any:
        """The value in ``entry``, or _MISS (and the bytes deleted) if they are not readable."""
        try:
            return self._serializer.loads(key, entry.data)
        except SerializationError as exc:
            await self._drop_corrupt(level, key, exc)
            return _MISS

    async def _drop_corrupt(self, level: SharedLevel, key: str, exc: SerializationError) -> None:
        # Bytes we cannot read are a miss; removing them stops them costing every reader.
        level.corrupt += 1
        log.warning("%s: %s; deleting it", level.name, exc)
        await level.discard(key)

    # --- write path ------------------------------------------------------------------------

    async def put(self, key: str, value: Any, ttl_seconds: Any = DEFAULT_TTL, level: str = "L3",
                  *, tags: Optional[Iterable[str]] = None) -> None:
        """Store ``value`` under ``key`` in L1 and every present level down to ``level``.

        ``ttl_seconds``: seconds (int or float > 0), ``None`` for no expiry, default the
        configured ``default_ttl``.  ``level``: the deepest level written ("L1", "L2", "L3").
        Raises TypeError/ValueError for a bad key or TTL and SerializationError for a value
        that would not come back equal, before any level is written.
        """
        check_key(key)
        ttl = check_ttl(ttl_seconds, self._default_ttl)
        depth = check_level(level)
        tag_list = check_tags(tags)
        data = self._serializer.dumps(key, value)
        targets = self._below[: depth - 1]
        if targets:
            self._require_started()
        if tag_list:
            await self._tag([(key, t) for t in tag_list], ttl, targets)
        for lower in reversed(targets):
            await lower.store(key, data, ttl)
        # The serialized length is L1's size estimate: cheap here, and honest for nested values.
        self._l1_set(key, value, ttl, len(data))
        self._announce([key])

    async def put_many(
        self, mapping: Mapping[str, Any], ttl_seconds: Any = DEFAULT_TTL, level: str = "L3",
        *, tags: Optional[Iterable[str]] = None,
    ) -> None:
        """Store many values with one TTL: one round trip per level (the SETs in one MULTI in
        Redis, an ``unnest`` upsert in PostgreSQL).  Every key and value is checked, and every
        value serialized, before any level is written."""
        if not isinstance(mapping, Mapping):
            raise TypeError("put_many takes a mapping of key -> value")
        ttl = check_ttl(ttl_seconds, self._default_ttl)
        depth = check_level(level)
        tag_list = check_tags(tags)
        encoded = [(check_key(k), self._serializer.dumps(k, v), v) for k, v in mapping.items()]
        if not encoded:
            return
        targets = self._below[: depth - 1]
        if tag_list:
            if targets:
                self._require_started()
            await self._tag([(k, t) for k, _, _ in encoded for t in tag_list], ttl, targets)
        if targets:
            self._require_started()
            items = [(key, data, ttl) for key, data, _ in encoded]
            for lower in reversed(targets):
                await lower.store_many(items)
        for key, data, value in encoded:
            self._l1_set(key, value, ttl, len(data))
        self._announce([key for key, _, _ in encoded])

    async def invalidate_many(self, keys: Iterable[str]) -> None:
        """Remove many keys from every level: one round trip per level, deepest first."""
        wanted = list(dict.fromkeys(check_keys(keys)))
        if not wanted:
            return
        if self._below:
            self._require_started()
        for lower in reversed(self._below):
            await lower.discard_many(wanted)
        for key in wanted:
            self._l1.delete(key)
        self._announce(wanted)

    async def invalidate(self, key: str) -> bool:
        """Remove ``key`` from every level.  Returns True if any level held it."""
        check_key(key)
        removed = False
        if self._below:
            self._require_started()
        for lower in reversed(self._below):
            removed = await lower.discard(key) or removed
        removed = self._l1.delete(key) or removed
        self._announce([key])
        return removed

    async def clear(self) -> None:
        """Remove every entry of this cache's namespace (key prefix in L2, table in L3, L1)."""
        if self._below:
            self._require_started()
        for lower in reversed(self._below):
            try:
                await lower.tier.clear()
            except TierError as exc:
                lower._failed(exc, "clear")
        self._remote_clear()
        if self.backplane is not None:
            self.backplane.publish_clear()

    # --- groups: tags and prefixes ---------------------------------------------------------

    async def _tag(self, pairs: list[tuple[str, str]], ttl: Optional[float],
                   targets: tuple[SharedLevel, ...]) -> None:
        # Recorded before the values are written, so an invalidate_tag running meanwhile
        # finds the key.  A put that reaches no shared level keeps its tags in this process.
        for lower in targets:
            tier = lower.tier
            await lower.admin(lambda p, tier=tier: tier.tag_many(p, ttl), pairs, "tag")
        if not targets:
            for key, tag in pairs:
                self._local_tags.setdefault(tag, set()).add(key)

    async def invalidate_tag(self, tag: str) -> int:
        """Invalidate every key put with ``tag`` (``put(..., tags=[...])``), in every level and
        every process's L1.  Returns how many keys the tag named.  A level that is down during
        the call can only be invalidated for the keys another level knows of."""
        (tag,) = check_tags([tag])
        keys = set(self._local_tags.pop(tag, ()))
        if self._below:
            self._require_started()
        for lower in self._below:
            keys.update(await lower.admin(lower.tier.keys_for_tag, tag, "tag lookup", default=[]))
        if keys:
            ordered = sorted(keys)
            await self.invalidate_many(ordered)
            for lower in self._below:
                tier = lower.tier
                await lower.admin(lambda ks, tier=tier: tier.untag(tag, ks), ordered, "untag")
        return len(keys)

    async def invalidate_prefix(self, prefix: str) -> bool:
        """Invalidate every key starting with ``prefix`` (literally: no wildcards), in every
        level and every process's L1.  Returns False if a shared level could not take it (it
        then holds those keys until they expire; retry the call)."""
        prefix = check_prefix(prefix)
        if self._below:
            self._require_started()
        complete = True
        for lower in reversed(self._below):
            if await lower.admin(lower.tier.delete_prefix, prefix, "DEL prefix", default=None) is None:
                complete = False
        self._forget_prefix(prefix)
        if self.backplane is not None:
            self.backplane.publish_prefix(prefix)
        return complete

    def _forget_prefix(self, prefix: str) -> None:
        self._mutated_prefix(prefix)
        delete = self._l1.delete
        for key in self._l1.keys():
            if isinstance(key, str) and key.startswith(prefix):  # (the cache stores only str keys)
                delete(key)

    # --- stats -----------------------------------------------------------------------------

    async def get_comprehensive_stats(self) -> dict[str, Any]:
        """Hit rates per level and combined (percent), entries, capacity; see the README."""
        l1 = self.l1_cache.get_stats()
        l2 = await self.l2_cache.get_stats()
        l3 = await self.l3_cache.get_stats()
        requests = l1["hits"] + l1["misses"]
        hits = l1["hits"] + l2["hits"] + l3["hits"]
        combined = 100.0 * hits / requests if requests else 0.0
        return {
            "combined_hit_rate": combined,
            "target_hit_rate": COMBINED_TARGET_HIT_RATE,
            "target_hit_rate_achieved": requests > 0 and combined >= COMBINED_TARGET_HIT_RATE,
            "total_requests": requests,
            "total_hits": hits,
            "total_misses": requests - hits,
            "l1_cache": l1,
            "l2_cache": l2,
            "l3_cache": l3,
            "backplane": self.backplane.stats() if self.backplane is not None else {"enabled": False},
            "loading": self.loading.stats(),
        }

    # --- loading (see loading.py) ---

    # Typed Any so this block needs no imports at the top of the module (loading.Loading).
    _loading: Any = None

    @property
    def loading(self) -> Any:
        """The loads of :meth:`get_or_set` and ``cache_result``: ``cache.loading.stats()``."""
        if self._loading is None:
            from .loading import Loading

            self._loading = Loading(self)
        return self._loading

    async def get_or_set(
        self, key: str, loader: Any, ttl_seconds: Any = DEFAULT_TTL,
        level: str = "L3", **options: Any,
    ) -> Any:
        """The value of ``key``; on a miss (or expiry) ``await loader()`` runs once per process
        however many callers wait, and its result is stored as by :meth:`put`.

        Options (README "Loading"; docs/loading.md): ``lease`` (once across processes),
        ``lease_ttl``, ``lease_wait``, ``early_refresh`` (XFetch beta, 0 off), ``jitter``,
        ``max_stale`` (fail-safe), ``load_timeout``, ``fail_backoff``, ``rng``.
        """
        from .loading import load_options

        opts = load_options(ttl_seconds, level, self._default_ttl, **options)
        return await self.loading.get_or_set(check_key(key), loader, opts)

    async def _read_below(self, key: str, default: Any) -> Any:
        """L2 then L3, never L1 (a lease waiter's L1 may hold its own expired copy)."""
        value, _ = await self._fetch_below(key)
        return default if value is _MISS else value


def _capped(ttl: float, cap: Optional[float]) -> float:
    return ttl if cap is None else min(ttl, cap)
