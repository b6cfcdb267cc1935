"""The servers the bench runs against, the machine it runs on, and tidying up afterwards.

With no URL, a throwaway ``redis-server`` / PostgreSQL is started (see
:mod:`mlcache.localservers`) and stopped at the end.  With a URL, the given server is used and
everything the bench wrote there (Redis keys and L3 tables under its namespace) is removed.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, AsyncIterator, Optional

LIBRARIES = ("mlcache", "redis", "hiredis", "asyncpg", "msgpack", "cashews", "aiocache", "tqdm", "matplotlib")


@dataclass
class Servers:
    redis_url: str
    postgres_url: str
    notes: list[str] = field(default_factory=list)
    throwaway_redis: bool = False
    throwaway_postgres: bool = False


@contextlib.asynccontextmanager
async def servers(redis_url: Optional[str], postgres_url: Optional[str]) -> AsyncIterator[Servers]:
    """Yield the servers to use, starting local throwaway ones where no URL was given."""
    from ..localservers import PostgresServer, RedisServer

    started: list[Any] = []
    try:
        if redis_url is None:
            rs = RedisServer()
            started.append(rs)
            await asyncio.to_thread(rs.start)
            redis_note = f"L2: throwaway redis-server on 127.0.0.1:{rs.port}"
            redis_url = rs.url
        else:
            redis_note = "L2: the given Redis (--redis-url)"
        if postgres_url is None:
            ps = PostgresServer()
            started.append(ps)
            await asyncio.to_thread(ps.start)
            pg_note = f"L3: throwaway PostgreSQL on 127.0.0.1:{ps.port}"
            postgres_url = ps.url
        else:
            pg_note = "L3: the given PostgreSQL (--postgres-url)"
        yield Servers(redis_url, postgres_url, [redis_note, pg_note],
                      throwaway_redis=redis_note.startswith("L2: throwaway"),
                      throwaway_postgres=pg_note.startswith("L3: throwaway"))
    finally:
        for server in reversed(started):
            await asyncio.to_thread(server.stop)


async def server_versions(redis_url: str, postgres_url: str) -> dict[str, str]:
    import asyncpg
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    con = await asyncpg.connect(postgres_url)
    try:
        pg = await con.fetchval("SHOW server_version")
    finally:
        await con.close()
    return {"redis": str(info.get("redis_version", "?")), "postgresql": str(pg).split()[0]}


def machine() -> dict[str, Any]:
    """Cores, CPU, Python, OS, the L1 implementation in use and the libraries' versions."""
    import mlcache

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    libs: dict[str, Optional[str]] = {}
    for name in LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(terse=True),
        "l1": "compiled (Cython)" if mlcache.LRU is not mlcache.PyLRU else "pure Python (no compiled extension)",
        "libraries": libs,
        "load_average": _loadavg(),
        "argv0": sys.argv[0],
    }


def _loadavg() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


async def remove_namespace(redis_url: str, postgres_url: str, namespace: str, tables: list[str]) -> None:
    """Delete every Redis key starting with ``namespace`` and drop the bench's L3 tables."""
    import asyncpg
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        async for rkey in client.scan_iter(match=namespace + "*", count=5000):
            batch.append(rkey)
            if len(batch) >= 5000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()
    con = await asyncpg.connect(postgres_url)
    try:
        for table in tables:
            # Table names are made by the bench from its own lower-case namespace.
            await con.execute(f'DROP TABLE IF EXISTS "{table}"')
            await con.execute(f'DROP TABLE IF EXISTS "{table[:58]}_tags"')  # see PostgresTier.tag_table
    finally:
        await con.close()
