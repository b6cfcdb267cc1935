"""The peers mlcache is measured against, on the same Redis and PostgreSQL.

* cashews and aiocache through their Redis backends: single-level caches, the libraries an
  application would otherwise pick.  Each stores the same values under its own namespace.
* raw redis-py and raw asyncpg: the drivers mlcache itself uses, with nothing on top (no
  serialization, no TTL bookkeeping), as the floor each level's figure is compared with.

Peers are imported lazily: a missing one is reported as missing, never fatal.
"""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Protocol
from urllib.parse import unquote, urlsplit

import msgpack

TTL = 600  # seconds: every write of the workloads, for every contender
# Redis connections of every client: mlcache's L2 default.  Peers get a pool that waits for a
# free connection (redis-py's default pool raises "Too many connections" at 256 callers).
POOL = 50


class Contender(Protocol):
    name: str

    async def preload(self, items: dict[str, Any]) -> None: ...
    async def get(self, key: str) -> Any: ...
    async def put(self, key: str, value: Any) -> None: ...
    async def close(self) -> None: ...


class Cashews:
    """cashews' Redis backend as ``cache.setup(url)`` makes it, with mlcache's pool size."""

    name = "cashews"

    def __init__(self, redis_url: str, namespace: str) -> None:
        from cashews import Cache

        self._cache = Cache()
        self._cache.setup(redis_url, max_connections=POOL)
        self._prefix = f"{namespace}-cashews:"

    async def preload(self, items: dict[str, Any]) -> None:
        await self._cache.set_many({self._prefix + k: v for k, v in items.items()}, expire=TTL * 6)

    async def get(self, key: str) -> Any:
        return await self._cache.get(self._prefix + key)

    async def put(self, key: str, value: Any) -> None:
        await self._cache.set(self._prefix + key, value, expire=TTL)

    async def close(self) -> None:
        await self._cache.close()


class Aiocache:
    """aiocache's ``RedisCache`` with its defaults (JSON values, a 5 s timeout per call), but a
    waiting pool of POOL connections instead of its default that raises when 100 are busy."""

    name = "aiocache"

    def __init__(self, redis_url: str, namespace: str) -> None:
        import redis.asyncio as aioredis
        from aiocache import RedisCache  # type: ignore[import-untyped, unused-ignore]

        parts = urlsplit(redis_url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("aiocache's RedisCache needs a redis:// or rediss:// URL")
        self._cache = RedisCache(
            endpoint=parts.hostname or "127.0.0.1", port=parts.port or 6379,
            db=int(parts.path.strip("/") or 0),
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss", namespace=f"{namespace}-aiocache",
            pool_max_size=POOL, connection_pool_class=aioredis.BlockingConnectionPool,
        )

    async def preload(self, items: dict[str, Any]) -> None:
        await self._cache.multi_set(list(items.items()), ttl=TTL * 6)

    async def get(self, key: str) -> Any:
        return await self._cache.get(key)

    async def put(self, key: str, value: Any) -> None:
        await self._cache.set(key, value, ttl=TTL)

    async def close(self) -> None:
        await self._cache.close()


class RedisPy:
    """Raw redis-py: GET / SET PX of bytes packed once beforehand, so no serialization at all."""

    name = "redis-py"

    def __init__(self, redis_url: str, namespace: str) -> None:
        self._client = _redis(redis_url)
        self._prefix = f"{namespace}-redis:"
        self._blob = b""

    async def preload(self, items: dict[str, Any]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for k, v in items.items():
                self._blob = msgpack.packb(v)
                pipe.set(self._prefix + k, self._blob, px=TTL * 6000)
            await pipe.execute()

    async def get(self, key: str) -> Any:
        return await self._client.get(self._prefix + key)

    async def put(self, key: str, value: Any) -> None:
        await self._client.set(self._prefix + key, self._blob, px=TTL * 1000)

    async def close(self) -> None:
        await self._client.aclose()


PEERS: dict[str, Callable[[str, str], Contender]] = {"cashews": Cashews, "aiocache": Aiocache, "redis-py": RedisPy}


def make_peer(name: str, redis_url: str, namespace: str) -> tuple[Optional[Contender], Optional[str]]:
    """(the peer, None), or (None, why not): a missing package is a note, not a failure."""
    try:
        return PEERS[name](redis_url, namespace), None
    except ImportError:
        return None, f"{name} is not installed (pip install {name}); its columns are empty"
    except ValueError as exc:
        return None, f"{name} skipped: {exc}"


def workload_op(contender: Contender, value: Any) -> Callable[[tuple[bool, str]], Awaitable[str]]:
    """The matrix's operation for a peer: read (labelled hit / miss) or write ``value``."""
    get, put = contender.get, contender.put

    async def op(item: tuple[bool, str]) -> str:
        is_read, key = item
        if is_read:
            return "hit" if await get(key) is not None else "miss"
        await put(key, value)
        return "put"

    return op


# --- raw drivers for the level-by-level baselines ----------------------------------------

SQL_ONE = 'SELECT value FROM "{t}" WHERE key = $1'
SQL_ANY = 'SELECT key, value FROM "{t}" WHERE key = ANY($1::text[])'
SQL_UPSERT = (
    'INSERT INTO "{t}" (key, value, expires_at) '
    "SELECT k, v, now() + make_interval(secs => s) FROM unnest($1::text[], $2::bytea[], $3::float8[]) AS u(k, v, s) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
)


def _redis(url: str) -> Any:
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=POOL)
    return aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it


@contextlib.asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[Any]:
    client = _redis(url)
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def pg_connection(url: str) -> AsyncIterator[Any]:
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        yield con
    finally:
        await con.close()


@contextlib.asynccontextmanager
async def pg_pool(url: str, size: int) -> AsyncIterator[Any]:
    import asyncpg

    pool = await asyncpg.create_pool(url, min_size=size, max_size=size)
    try:
        yield pool
    finally:
        await pool.close()


async def raw_write_op(client: Any, pool: Any, table: str, prefix: str, blob: bytes
                       ) -> Callable[[list[str]], Awaitable[None]]:
    """The least a two-level write of 100 keys costs: MSET (no TTL) then one unnest upsert."""
    await pool.execute(f'CREATE UNLOGGED TABLE IF NOT EXISTS "{table}" '
                       "(key text PRIMARY KEY, value bytea NOT NULL, expires_at timestamptz)")
    sql = SQL_UPSERT.format(t=table)

    async def op(keys: list[str]) -> None:
        await client.mset({prefix + k: blob for k in keys})
        await pool.execute(sql, keys, [blob] * len(keys), [float(TTL)] * len(keys))

    return op
