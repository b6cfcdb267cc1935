"""``mlcache serve``: a cache node, the process the guide's Dockerfile, docker-compose.yml and
Kubernetes Deployment run.

Applications embed the library; this process keeps what no application should have to: the L3
table created and swept of expired rows, and the levels' Prometheus metrics (Redis memory,
L3 table size and rows, and its own counters) on a port a scraper knows.  Configuration is the
guide's dict from a JSON file and/or ``REDIS_URL`` / ``POSTGRES_URL`` from the environment, as
for ``MultiLevelCache``.  It runs until SIGTERM or SIGINT, then closes the cache and exits 0.
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
from typing import Any, Optional

from .cache import MultiLevelCache
from .errors import ConfigError

DEFAULT_METRICS_PORT = 8000  # the guide's Prometheus port, in its compose and Kubernetes files
log = logging.getLogger("mlcache.serve")


def load_config(path: Optional[str], metrics_port: Optional[int], metrics_addr: Optional[str]) -> dict[str, Any]:
    """The guide's config dict: ``path`` (JSON) if given, then the command line's metrics
    settings over it; the metrics port defaults to the guide's 8000."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--config {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"--config {path}: expected a JSON object")
    if metrics_port is not None:
        raw["prometheus_port"] = metrics_port
    raw.setdefault("prometheus_port", DEFAULT_METRICS_PORT)
    if metrics_addr is not None:
        raw["prometheus_addr"] = metrics_addr
    return raw


async def serve(config: dict[str, Any]) -> int:
    cache = MultiLevelCache(config)  # a bad key or value raises here, before any server is touched
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A level whose server is not up yet does not stop the node: the cache fails open and
    # reconnects by itself (docker-compose's depends_on waits for a start, not for readiness).
    await cache.initialize()
    try:
        if cache.metrics.port is None:
            log.error("mlcache serve: no metrics endpoint (the port is taken?); stopping")
            return 2
        shared = [level.name for level in (cache.l2_cache, cache.l3_cache) if level.enabled]
        if not shared:
            log.warning("no REDIS_URL or POSTGRES_URL: this node has only its own L1, which no one shares")
        levels = ", ".join(["L1"] + shared)
        log.info("mlcache serving %s; Prometheus metrics on %s:%d", levels,
                 cache.config.prometheus_addr, cache.metrics.port)
        await stop.wait()
        log.info("mlcache stopping")
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await cache.close()
        log.info("mlcache stopped")
