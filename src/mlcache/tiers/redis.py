"""L2: Redis through redis-py's asyncio client, replies parsed by hiredis."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from ..config import L2Config
from .base import Entry, map_exceptions

LEVEL = "L2"

# One round trip for many keys, each with its remaining lifetime from Redis' own clock.
# (A pipeline of GET+PTTL pairs costs redis-py ~10 us of Python per command; the script
# costs one command.)  false, not nil, marks a missing key: nil would end the Lua array.
_GET_MANY = """
local out = {}
for i, key in ipairs(KEYS) do
  out[2 * i - 1] = redis.call('GET', key)
  out[2 * i] = redis.call('PTTL', key)
end
return out
"""
# ARGV holds value, ttl-in-ms pairs; a ttl of 0 means no expiry.
_SET_MANY = """
for i, key in ipairs(KEYS) do
  local ttl = tonumber(ARGV[2 * i])
  if ttl > 0 then
    redis.call('SET', key, ARGV[2 * i - 1], 'PX', ttl)
  else
    redis.call('SET', key, ARGV[2 * i - 1])
  end
end
return #KEYS
"""


def _glob_escape(text: str) -> str:
    # SCAN MATCH patterns are globs; a prefix is meant literally.
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisTier:
    """Stores envelopes under ``{key_prefix}:{key}`` with millisecond expiry (PX)."""

    name = LEVEL

    def __init__(self, config: L2Config) -> None:
        assert config.redis_url is not None
        self.config = config
        self._prefix = config.key_prefix + ":"
        self._match = _glob_escape(self._prefix) + "*"
        kwargs: dict[str, Any] = dict(
            max_connections=config.max_connections,
            health_check_interval=config.health_check_interval,
            socket_timeout=config.socket_timeout,
            socket_connect_timeout=config.socket_connect_timeout,
            # One quick retry on a timeout at most: redis-py's default retries with backoff
            # would stretch a hung server into seconds per call.
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), 1) if config.retry_on_timeout
            else Retry(NoBackoff(), 0),
            retry_on_timeout=config.retry_on_timeout,
            decode_responses=False,
            client_name="mlcache",
        )
        if config.redis_url.startswith("rediss://"):
            for opt in ("keyfile", "certfile", "ca_certs"):
                value = getattr(config, f"redis_ssl_{opt}")
                if value is not None:
                    kwargs[f"ssl_{opt}"] = value
        self._client: aioredis.Redis = aioredis.Redis.from_url(config.redis_url, **kwargs)
        self._get_many = self._client.register_script(_GET_MANY)
        self._set_many = self._client.register_script(_SET_MANY)

    def redis_key(self, key: str) -> str:
        return self._prefix + key

    async def start(self) -> None:
        with map_exceptions(LEVEL, "PING"):
            await self._client.ping()

    async def get(self, key: str) -> Optional[Entry]:
        # The bulk script with one key: one command, where a GET+PTTL pipeline costs redis-py
        # two (measured here: 14.2K vs 11.3K sequential gets/s; a bare GET does 17.8K).
        return (await self.get_many((key,)))[0]

    async def get_many(self, keys: Sequence[str]) -> list[Optional[Entry]]:
        prefix = self._prefix
        with map_exceptions(LEVEL, "GET many"):
            flat = await self._get_many(keys=[prefix + k for k in keys])
        out: list[Optional[Entry]] = []
        for i in range(0, len(flat), 2):
            data, pttl = flat[i], flat[i + 1]
            if data is None or pttl == -2:
                out.append(None)
            else:
                out.append(Entry(data, None if pttl == -1 else pttl / 1000.0))
        return out

    async def set_many(self, items: Sequence[tuple[str, bytes, Optional[float]]]) -> None:
        keys: list[str] = []
        args: list[Any] = []
        for key, data, ttl in items:
            keys.append(self._prefix + key)
            args.append(data)
            args.append(0 if ttl is None else max(1, math.ceil(ttl * 1000)))
        with map_exceptions(LEVEL, "SET many"):
            await self._set_many(keys=keys, args=args)

    async def delete_many(self, keys: Sequence[str]) -> int:
        with map_exceptions(LEVEL, "DEL many"):
            return int(await self._client.delete(*[self._prefix + k for k in keys]))

    async def set(self, key: str, data: bytes, ttl: Optional[float]) -> None:
        with map_exceptions(LEVEL, "SET"):
            if ttl is None:
                await self._client.set(self._prefix + key, data)
            else:
                # Round up: a sub-millisecond remainder must not become "PX 0" (an error).
                await self._client.set(self._prefix + key, data, px=max(1, math.ceil(ttl * 1000)))

    async def delete(self, key: str) -> bool:
        with map_exceptions(LEVEL, "DEL"):
            return bool(await self._client.delete(self._prefix + key))

    async def clear(self) -> int:
        """Remove every key under this cache's prefix (SCAN + UNLINK, never KEYS/FLUSHDB)."""
        removed = 0
        with map_exceptions(LEVEL, "clear"):
            batch: list[bytes] = []
            async for rkey in self._client.scan_iter(match=self._match, count=1000):
                batch.append(rkey)
                if len(batch) >= 1000:
                    removed += await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                removed += await self._client.unlink(*batch)
        return removed

    async def count(self) -> int:
        """Keys under this prefix.  A full SCAN: meant for stats, not for hot paths."""
        n = 0
        with map_exceptions(LEVEL, "count"):
            async for _ in self._client.scan_iter(match=self._match, count=1000):
                n += 1
        return n

    async def size_bytes(self) -> int:
        """The Redis server's ``used_memory``: shared by every tenant of that server."""
        with map_exceptions(LEVEL, "INFO"):
            info = await self._client.info("memory")
        return int(info.get("used_memory", 0))

    async def close(self) -> None:
        with map_exceptions(LEVEL, "close"):
            await self._client.aclose()
