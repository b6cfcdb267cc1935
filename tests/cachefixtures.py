"""Fixtures for tests of the cache itself, on the session's real Redis and PostgreSQL.

Each test gets its own namespace (a Redis key prefix and an L3 table) so tests never see
each other's data, and direct clients to check what each level really holds.
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from mlcache import MultiLevelCache
from mlcache.tiers.redis import TOMBSTONE


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def cache_config(redis_url: str, postgres_url: str, namespace: str) -> dict[str, Any]:
    return {
        "redis_url": redis_url,
        "postgres_url": postgres_url,
        "key_prefix": namespace,
        # Functional tests must not turn a busy CI machine's hiccup into a miss: generous
        # deadlines here; the fault tests set tight ones on purpose.
        "l2": {"read_timeout": 5.0, "write_timeout": 5.0},
        "l3": {"table": namespace, "connection_pool_size": {"min": 1, "max": 4},
               "read_timeout": 5.0, "write_timeout": 5.0},
    }


@pytest.fixture
async def cache(cache_config: dict[str, Any]) -> AsyncIterator[MultiLevelCache]:
    async with MultiLevelCache(cache_config) as c:
        yield c


@pytest.fixture
async def other_cache(cache_config: dict[str, Any], cache: MultiLevelCache) -> AsyncIterator[MultiLevelCache]:
    """A second cache (its own L1) sharing the first one's Redis namespace and L3 table."""
    async with MultiLevelCache(cache_config) as c:
        yield c


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    con = await asyncpg.connect(postgres_url)
    yield con
    await con.close()


class Direct:
    """What each shared level really holds for one namespace, read around the cache."""

    def __init__(self, redis_client: aioredis.Redis, pg: asyncpg.Connection, namespace: str) -> None:
        self.redis, self.pg, self.ns = redis_client, pg, namespace

    async def in_redis(self, key: str) -> bool:
        """Whether L2 holds a value for ``key`` (an invalidation's tombstone is not one)."""
        value = await self.redis.get(f"{self.ns}:{key}")
        return value is not None and value != TOMBSTONE

    async def redis_pttl(self, key: str) -> int:
        return int(await self.redis.pttl(f"{self.ns}:{key}"))

    async def redis_keys(self) -> list[bytes]:
        return [k async for k in self.redis.scan_iter(match=f"{self.ns}:*")]

    async def drop_redis(self, key: str) -> None:
        await self.redis.delete(f"{self.ns}:{key}")

    async def row(self, key: str) -> Any:
        return await self.pg.fetchrow(f'SELECT key, value, expires_at FROM "{self.ns}" WHERE key = $1', key)

    async def rows(self) -> int:
        exists = await self.pg.fetchval("SELECT to_regclass($1) IS NOT NULL", self.ns)
        return int(await self.pg.fetchval(f'SELECT count(*) FROM "{self.ns}"')) if exists else 0


@pytest.fixture
async def direct(redis_client: aioredis.Redis, pg: asyncpg.Connection, namespace: str) -> Direct:
    return Direct(redis_client, pg, namespace)
