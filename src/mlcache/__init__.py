"""mlcache: a multi-level cache for asyncio.

L1 is a compiled in-process LRU, L2 is Redis, L3 is PostgreSQL.  ``await cache.get(key)``
is answered by the nearest level that holds the key, and the value is promoted upward::

    async with MultiLevelCache({"redis_url": "redis://localhost:6379/0"}) as cache:
        await cache.put("user:123", {"name": "John"}, ttl_seconds=300)
        await cache.get("user:123")
"""
from __future__ import annotations

from ._version import __version__
from .cache import MultiLevelCache
from .config import CacheConfig
from .decorators import cache_result
from .errors import (
    ConfigError,
    MLCacheError,
    SerializationError,
    TierError,
    TierTimeoutError,
    TierUnavailableError,
)
from .lru import LRU, PyLRU

# The guide calls the cache by its original name; both names are the same class.
MultiLevelCacheManager = MultiLevelCache

__all__ = [
    "LRU",
    "CacheConfig",
    "ConfigError",
    "MLCacheError",
    "MultiLevelCache",
    "MultiLevelCacheManager",
    "PyLRU",
    "SerializationError",
    "TierError",
    "TierTimeoutError",
    "TierUnavailableError",
    "__version__",
    "cache_result",
]
