"""Prometheus metrics with the guide's names, labelled by ``level`` (never by key).

Counters are read from the cache's own statistics when Prometheus scrapes, so the hot path
pays nothing for them.  ``cache_access_seconds`` is observed on every L2/L3 read; L1 hits
are sub-microsecond and are not timed one by one (timing them would cost more than the hit).
Sizes and entry counts of L2/L3 need a server round trip, so a background task refreshes
them every ``refresh_interval`` seconds and scrapes read the last values.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Iterator, Optional

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .errors import TierError
from .levels import LATENCY_BOUNDS, SharedLevel

if TYPE_CHECKING:
    from .cache import MultiLevelCache

log = logging.getLogger("mlcache.metrics")


class CacheCollector(Collector):
    def __init__(self, cache: "MultiLevelCache") -> None:
        self.cache = cache
        # level -> (entries, size in bytes), refreshed in the background for L2/L3
        self.remote: dict[str, tuple[Optional[int], Optional[int]]] = {}

    def collect(self) -> Iterator[Any]:
        cache = self.cache
        lru = cache.l1_cache.lru
        hits = CounterMetricFamily("cache_hits", "Lookups answered by the level", labels=["level"])
        misses = CounterMetricFamily("cache_misses", "Lookups the level could not answer", labels=["level"])
        errors = CounterMetricFamily("cache_errors", "Failed calls to the level (fail-open)", labels=["level"])
        entries = GaugeMetricFamily("cache_entries_total", "Entries held by the level", labels=["level"])
        size = GaugeMetricFamily("cache_size_bytes", "Bytes held by the level (L2: the Redis server's "
                                 "used_memory; L3: the table's total relation size)", labels=["level"])
        access = HistogramMetricFamily("cache_access_seconds", "Time of one read from the level",
                                       labels=["level"])
        hits.add_metric(["L1"], lru.hits)
        misses.add_metric(["L1"], lru.misses)
        entries.add_metric(["L1"], len(lru))
        for level in cache._below:
            hits.add_metric([level.name], level.hits)
            misses.add_metric([level.name], level.misses)
            errors.add_metric([level.name], level.errors)
            n, nbytes = self.remote.get(level.name, (None, None))
            if n is not None:
                entries.add_metric([level.name], n)
            if nbytes is not None:
                size.add_metric([level.name], nbytes)
            cumulative, buckets = 0, []
            for bound, count in zip(LATENCY_BOUNDS, level.latency_counts):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", cumulative + level.latency_counts[-1]))
            access.add_metric([level.name], buckets, level.read_seconds)
        capacity = GaugeMetricFamily("cache_l1_capacity", "L1 capacity in entries")
        capacity.add_metric([], lru.capacity)
        evictions = CounterMetricFamily("cache_evictions", "Entries evicted from L1 for room", labels=["level"])
        evictions.add_metric(["L1"], lru.evictions)
        yield from (hits, misses, errors, entries, size, access, capacity, evictions)

    async def refresh(self, level: SharedLevel) -> None:
        try:
            n = await level.tier.count()
            nbytes = await level.tier.size_bytes()
        except TierError as exc:
            log.debug("metrics refresh of %s failed: %s", level.name, exc)
            return
        self.remote[level.name] = (n, nbytes)


class Metrics:
    """Owns the registry, the HTTP endpoint (when a port is configured) and the refresher."""

    def __init__(self, cache: "MultiLevelCache", refresh_interval: float = 30.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = CacheCollector(cache)
        self.registry.register(self.collector)
        self.refresh_interval = refresh_interval
        self._cache = cache
        self._server: Any = None
        self._task: Optional[asyncio.Task[None]] = None
        self._stop = asyncio.Event()

    @property
    def port(self) -> Optional[int]:
        return None if self._server is None else int(self._server.server_port)

    async def start(self, port: Optional[int], addr: str) -> None:
        if port is not None and self._server is None:
            try:
                self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
            except OSError as exc:
                # Metrics are not worth failing the application for; say so loudly instead.
                log.error("cannot serve Prometheus metrics on port %s: %s", port, exc)
        # The L2/L3 sizes cost a SCAN and a count(*): only worth refreshing when scraped.
        if port is not None and self._cache._below and self._task is None:
            self._task = asyncio.create_task(self._refresh_forever(), name="mlcache-metrics")

    async def refresh_now(self) -> None:
        for level in self._cache._below:
            await self.collector.refresh(level)

    async def _refresh_forever(self) -> None:
        # Stopped by an event as well as by cancel(): redis-py 8.1 can swallow a CancelledError
        # that lands while a command is in flight, and the loop must end all the same.
        while not self._stop.is_set():
            await self.refresh_now()
            try:
                await asyncio.wait_for(self._stop.wait(), self.refresh_interval)
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            self._task.cancel()
            # wait() does not raise the task's CancelledError, and still lets ours through.
            await asyncio.wait([self._task])
            self._task = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
