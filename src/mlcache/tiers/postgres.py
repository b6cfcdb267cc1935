"""L3: PostgreSQL through an asyncpg pool, in an UNLOGGED table the level creates itself.

UNLOGGED because a cache can be rebuilt: skipping the WAL makes writes several times cheaper,
at the price of the table being emptied after a crash (never after a clean restart).
Expiry is computed by the server's clock, so processes with skewed clocks agree.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import zlib
from typing import Any, Awaitable, Callable, Optional, Sequence

import asyncpg

from ..config import L3Config
from ..errors import TierError
from .base import Entry, map_exceptions, mapped

try:
    # asyncpg's "no timeout" for one call, overriding the connection's command_timeout.
    # Private, so a version without it just keeps the command timeout (correct, a timer
    # slower).
    from asyncpg.protocol.protocol import NO_TIMEOUT as _UNTIMED
except ImportError:  # pragma: no cover - depends on the asyncpg version
    _UNTIMED = None

LEVEL = "L3"
SWEEP_BATCH = 5000  # rows per DELETE of the index-driven sweep (PostgreSQL < 14)
SWEEP_PAGES = 1000  # heap pages (8 MB) per DELETE of the TID-range sweep
log = logging.getLogger("mlcache.l3")


async def _no_reset(connection: asyncpg.Connection) -> None:
    return None


def _live(ttl: Optional[float]) -> bool:
    """A row read with its remaining lifetime (``_sql_get``): not expired, only not yet swept."""
    return ttl is None or ttl > 0


async def _protocol_read(stmt: asyncpg.prepared_stmt.PreparedStatement) -> Callable[..., Awaitable[list[Any]]]:
    """The lone read of ``stmt``, made straight to asyncpg's protocol: the call ``fetchrow``
    makes after three Python coroutine layers and checks, which cost ~2.5 us a read here (a
    lone read takes 60-120 us).  Those checks guard a statement handed around an application;
    this one never leaves the tier, and any error drops its connection.  ``bind_execute`` is
    asyncpg's private API, so it is tried once here; an asyncpg where it is missing or
    differs gets ``fetchrow`` itself."""
    fetchrow = stmt.fetchrow

    async def public(args: tuple[Any, ...], portal: str, limit: int, extra: bool, timeout: Any) -> list[Any]:
        row = await fetchrow(*args, timeout=timeout)
        return [] if row is None else [row]

    try:
        state = stmt._state
        bind_execute = stmt._connection._protocol.bind_execute
        rows = await bind_execute(state, ("",), "", 1, False, _UNTIMED)
        if not isinstance(rows, list):
            raise TypeError(f"bind_execute returned {type(rows).__name__}")
    except (AttributeError, TypeError) as exc:
        log.debug("L3 reads through PreparedStatement.fetchrow: %s", exc)
        return public
    return functools.partial(bind_execute, state)


class PostgresTier:
    """One row per key: ``key text PRIMARY KEY, value bytea, expires_at timestamptz``."""

    name = LEVEL
    # asyncpg survives a query cancelled mid-flight (it cancels it server-side and resets the
    # connection), so a lone read may run in its caller's task under a plain timeout.
    cancel_safe = True

    def __init__(self, config: L3Config) -> None:
        assert config.database_url is not None
        self.config = config
        self.table = config.table  # validated as a plain identifier by the config
        t = f'"{self.table}"'
        # Every value is a bind parameter; only the validated table name is interpolated.
        # Reads return an expired row's negative remaining lifetime, and get/get_many drop it:
        # cheaper for the server than a WHERE on expires_at, and date_part gives float8 where
        # EXTRACT computes a numeric and casts it (the two: 3.6 us of a 55 us lone read, same
        # vCPU, measured pinned).  The lifetime is still the server's clock's.
        self._sql_get = f"SELECT value, date_part('epoch', expires_at - now()) AS ttl FROM {t} WHERE key = $1"
        self._sql_set = (
            f"INSERT INTO {t} (key, value, expires_at) "
            "VALUES ($1, $2, now() + make_interval(secs => $3::float8)) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
        )
        self._sql_delete = f"DELETE FROM {t} WHERE key = $1"
        self._sql_get_many = (
            f"SELECT key, value, date_part('epoch', expires_at - now()) AS ttl FROM {t} WHERE key = ANY($1::text[])"
        )
        self._sql_set_many = (
            f"INSERT INTO {t} (key, value, expires_at) "
            "SELECT k, v, now() + make_interval(secs => s) "
            "FROM unnest($1::text[], $2::bytea[], $3::float8[]) AS u(k, v, s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
        )
        self._sql_delete_many = f"DELETE FROM {t} WHERE key = ANY($1::text[])"
        # Tags: (tag, key) pairs in a table beside the entries (name cut so it stays within
        # PostgreSQL's 63 characters).  A stale pair only means an extra key invalidated.
        self.tag_table = f"{self.table[:58]}_tags"
        g = f'"{self.tag_table}"'
        self._sql_tag = (f"INSERT INTO {g} (tag, key) SELECT * FROM unnest($1::text[], $2::text[]) "
                         "ON CONFLICT DO NOTHING")
        self._sql_tag_keys = f"SELECT key FROM {g} WHERE tag = $1"
        self._sql_untag = f"DELETE FROM {g} WHERE tag = $1 AND key = ANY($2::text[])"
        # starts_with: the prefix is taken literally (LIKE would read % and _ as wildcards).
        self._sql_delete_prefix = f"DELETE FROM {t} WHERE starts_with(key, $1)"
        self._sql_count = f"SELECT count(*) FROM {t} WHERE expires_at IS NULL OR expires_at > now()"
        # Expired rows are found by walking the heap in TID ranges (a TID Range Scan,
        # PostgreSQL >= 14), not through an index on expires_at: every write changes
        # expires_at, and keeping that index up to date cost a third of an upsert's
        # throughput (100-row unnest upserts: 86.5K rows/s with it, 129K without).
        self._sql_sweep_range = (
            f"DELETE FROM {t} WHERE ctid >= format('(%s,0)', $1::bigint)::tid "
            "AND ctid < format('(%s,0)', $2::bigint)::tid AND expires_at <= now()"
        )
        self._sql_pages = "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int"
        self._expiry_index = f'"{self.table}_expires_at_idx"'
        self._sql_sweep = (
            f"DELETE FROM {t} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {t} WHERE expires_at <= now() LIMIT {SWEEP_BATCH}))"
        )
        self._tid_sweep = True  # known once connected: see _create_schema
        self._pool: Optional[asyncpg.Pool] = None
        # A pool connection kept out for single-key reads, with the read prepared on it: a
        # pool round trip (acquire + release) costs as much as the query itself here (16.6K
        # vs 33.5K sequential reads/s).  Used when free; concurrent readers take the pool.
        self._solo: Optional[asyncpg.Connection] = None
        # The read prepared on it, and that read as _protocol_read runs it: (args, portal,
        # limit, return_extra, timeout) -> list of rows.
        self._solo_stmt: Optional[asyncpg.prepared_stmt.PreparedStatement] = None
        self._solo_read: Optional[Callable[..., Awaitable[list[Any]]]] = None
        self._solo_busy = False
        self._solo_task: Optional[asyncio.Task[None]] = None
        self._sweeper: Optional[asyncio.Task[None]] = None
        self._connector: Optional[asyncio.Task[None]] = None
        self._stop = asyncio.Event()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("L3 is not started: call MultiLevelCache.initialize() first")
        return self._pool

    @property
    def read_connection(self) -> Optional[asyncpg.Connection]:
        """The connection set aside for lone reads (None until the first read sets it aside,
        or after an error dropped it).  The bench measures the bare driver on it, so on the
        same server backend."""
        return self._solo

    async def start(self) -> None:
        """Connect and create the table.  If PostgreSQL is not there yet, keep trying in the
        background (the level answers as failing meanwhile) and raise the TierError."""
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="mlcache-l3-sweeper")
        try:
            await self._connect()
        except TierError:
            self._connector = asyncio.create_task(self._connect_until_up(), name="mlcache-l3-connect")
            raise

    async def _connect(self) -> None:
        with map_exceptions(LEVEL, "connect"):
            pool = await asyncpg.create_pool(
                self.config.database_url,
                min_size=self.config.pool_min,
                max_size=self.config.pool_max,
                command_timeout=self.config.command_timeout,
                timeout=self.config.command_timeout,
                # asyncpg's default reset sends UNLISTEN/RESET ALL/... on every release, one
                # more round trip per query.  mlcache sets no session state (its advisory lock
                # is transaction-scoped, it never LISTENs or SETs), so there is nothing to reset.
                reset=_no_reset,
            )
            try:
                await self._create_schema(pool)
            except BaseException:
                pool.terminate()
                raise
        self._pool = pool

    async def _connect_until_up(self) -> None:
        wait = 0.5
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), wait)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self._connect()
            except TierError as exc:
                log.debug("L3 still unavailable: %s", exc)
                wait = min(wait * 2, 5.0)
                continue
            log.warning("L3 is available again")
            return

    async def _create_schema(self, pool: asyncpg.Pool) -> None:
        # IF NOT EXISTS alone races when several processes start at once (two CREATEs can both
        # pass the check and one fails on pg_type's unique index); a transaction-scoped advisory
        # lock keyed by the table name serialises them.
        lock_id = zlib.crc32(f"mlcache:{self.table}".encode())
        t = f'"{self.table}"'
        async with pool.acquire() as con:
            async with con.transaction():
                await con.execute("SELECT pg_advisory_xact_lock($1)", lock_id)
                await con.execute(
                    f"CREATE UNLOGGED TABLE IF NOT EXISTS {t} ("
                    "key text PRIMARY KEY, value bytea NOT NULL, expires_at timestamptz)"
                )
                # Before 14 PostgreSQL has no TID Range Scan, and the sweep needs the index;
                # from 14 on a table made by an older mlcache loses it (see _sql_sweep_range).
                self._tid_sweep = con.get_server_version().major >= 14
                if self._tid_sweep:
                    await con.execute(f"DROP INDEX IF EXISTS {self._expiry_index}")
                else:
                    await con.execute(
                        f"CREATE INDEX IF NOT EXISTS {self._expiry_index} "
                        f"ON {t} (expires_at) WHERE expires_at IS NOT NULL"
                    )
                await con.execute(
                    f'CREATE UNLOGGED TABLE IF NOT EXISTS "{self.tag_table}" ('
                    "tag text NOT NULL, key text NOT NULL, PRIMARY KEY (tag, key))"
                )

    async def get(self, key: str) -> Optional[Entry]:
        read = self._solo_read
        if read is None or self._solo_busy:
            if read is None:
                self._open_solo()
            with map_exceptions(LEVEL, "SELECT"):
                row = await self.pool.fetchrow(self._sql_get, key)
        else:
            self._solo_busy = True
            try:
                # No per-query timer: every read reaches here through the level's BatchLoader,
                # whose deadline cancels it (cancel_safe), and the timer asyncpg arms for
                # command_timeout was a tenth of a lone read's cost.
                rows = await read((key,), "", 1, False, _UNTIMED)
            except BaseException as exc:
                # Whatever went wrong (a restart, a terminated backend, a cancelled query), the
                # pool knows how to check and replace a connection; a fresh one is taken next.
                self._drop_solo()
                if isinstance(exc, Exception):
                    raise mapped(LEVEL, "SELECT", exc) from exc
                raise
            finally:
                self._solo_busy = False
            row = rows[0] if rows else None
        if row is None:
            return None
        return Entry(row[0], row[1]) if _live(row[1]) else None

    def _open_solo(self) -> None:
        if self._solo_task is None and self._pool is not None and self.config.pool_max >= 2:
            self._solo_task = asyncio.create_task(self._take_solo(self._pool), name="mlcache-l3-solo")

    async def _take_solo(self, pool: asyncpg.Pool) -> None:
        try:
            con = await pool.acquire(timeout=self.config.command_timeout)
            try:
                stmt = await con.prepare(self._sql_get)
                # Run it once: its first execution still sees now() as of the prepare (the
                # same implicit transaction), which would serve rows that expired since.
                await stmt.fetchrow("")
                read = await _protocol_read(stmt)
            except BaseException:
                await pool.release(con)
                raise
            if self._pool is not pool:  # closed or replaced meanwhile
                await pool.release(con)
                return
            # The statement object is kept too: when it is collected, asyncpg closes the
            # prepared statement on the server, under the read.
            self._solo, self._solo_stmt, self._solo_read = con, stmt, read
        except Exception as exc:
            log.debug("L3 could not set a connection aside for single reads: %s", exc)
        finally:
            self._solo_task = None

    def _forget_solo(self) -> Optional[asyncpg.Connection]:
        """Stop reading on the connection set aside; return it, for the caller to release."""
        con, self._solo, self._solo_stmt, self._solo_read = self._solo, None, None, None
        return con

    def _drop_solo(self) -> None:
        con = self._forget_solo()
        pool = self._pool
        if con is not None and pool is not None:
            task = asyncio.ensure_future(self._release(pool, con))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _release(self, pool: asyncpg.Pool, con: asyncpg.Connection) -> None:
        try:
            await pool.release(con, timeout=self.config.command_timeout)
        except Exception as exc:
            log.debug("L3 released a broken connection: %s", exc)

    async def get_many(self, keys: Sequence[str]) -> list[Optional[Entry]]:
        with map_exceptions(LEVEL, "SELECT many"):
            rows = await self.pool.fetch(self._sql_get_many, list(keys))
        found = {row[0]: Entry(row[1], row[2]) for row in rows if _live(row[2])}
        return [found.get(k) for k in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes, Optional[float]]]) -> None:
        # One statement may not update a row twice: the last write of a key wins, as it would
        # have with one statement per key.
        latest = {key: (data, ttl) for key, data, ttl in items}
        # Rows are locked in key order: two concurrent batches sharing keys in different orders
        # would otherwise deadlock (PostgreSQL resolves it after deadlock_timeout, 1 s).
        keys = sorted(latest)
        with map_exceptions(LEVEL, "UPSERT many"):
            await self.pool.execute(
                self._sql_set_many, keys, [latest[k][0] for k in keys], [latest[k][1] for k in keys]
            )

    async def delete_many(self, keys: Sequence[str]) -> int:
        with map_exceptions(LEVEL, "DELETE many"):
            status = await self.pool.execute(self._sql_delete_many, list(keys))
        return int(status.split()[-1])

    async def set(self, key: str, data: bytes, ttl: Optional[float]) -> None:
        with map_exceptions(LEVEL, "UPSERT"):
            await self.pool.execute(self._sql_set, key, data, ttl)

    async def delete(self, key: str) -> bool:
        with map_exceptions(LEVEL, "DELETE"):
            status = await self.pool.execute(self._sql_delete, key)
        return bool(status != "DELETE 0")

    async def tag_many(self, pairs: Sequence[tuple[str, str]], ttl: Optional[float]) -> None:
        """Record (key, tag) pairs.  (Rows are not expired: a leftover costs one extra key in
        a later invalidate_tag, never a wrong value.)"""
        with map_exceptions(LEVEL, "tag"):
            await self.pool.execute(self._sql_tag, [t for _, t in pairs], [k for k, _ in pairs])

    async def keys_for_tag(self, tag: str) -> list[str]:
        with map_exceptions(LEVEL, "tag lookup"):
            return [row[0] for row in await self.pool.fetch(self._sql_tag_keys, tag)]

    async def untag(self, tag: str, keys: Sequence[str]) -> None:
        with map_exceptions(LEVEL, "untag"):
            await self.pool.execute(self._sql_untag, tag, list(keys))

    async def delete_prefix(self, prefix: str) -> int:
        with map_exceptions(LEVEL, "DELETE prefix"):
            status = await self.pool.execute(self._sql_delete_prefix, prefix)
        return int(status.split()[-1])

    async def clear(self) -> int:
        with map_exceptions(LEVEL, "clear"):
            status = await self.pool.execute(f'DELETE FROM "{self.table}"')
            await self.pool.execute(f'DELETE FROM "{self.tag_table}"')
        return int(status.split()[-1])

    async def count(self) -> int:
        with map_exceptions(LEVEL, "count"):
            return int(await self.pool.fetchval(self._sql_count))

    async def size_bytes(self) -> int:
        """The table's size with its index and TOAST data."""
        with map_exceptions(LEVEL, "size"):
            return int(await self.pool.fetchval("SELECT pg_total_relation_size($1::regclass)", self.table))

    async def sweep(self) -> int:
        """Delete expired rows now, in batches; returns how many went.

        One pass over the table, SWEEP_PAGES heap pages per statement: each DELETE holds its
        row locks for 8 MB of table at most, and the whole sweep reads the table once, however
        many or few rows have expired.  (Rows added meanwhile past the pass's end are fresh.)
        """
        total = 0
        with map_exceptions(LEVEL, "sweep"):
            if not self._tid_sweep:
                while True:
                    n = int((await self.pool.execute(self._sql_sweep)).split()[-1])
                    total += n
                    if n < SWEEP_BATCH:
                        return total
            pages = int(await self.pool.fetchval(self._sql_pages, self.table))
            for start in range(0, pages, SWEEP_PAGES):
                status = await self.pool.execute(self._sql_sweep_range, start, start + SWEEP_PAGES)
                total += int(status.split()[-1])
        return total

    async def _sweep_forever(self) -> None:
        # Reads already ignore expired rows; sweeping only reclaims space, so a failure is logged
        # and retried on the next interval rather than raised anywhere.
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), self.config.sweep_interval)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("L3 sweep of expired rows failed: %s", exc)

    async def close(self) -> None:
        self._stop.set()
        if self._connector is not None:
            self._connector.cancel()  # asyncpg handles cancellation cleanly, unlike redis-py
            await asyncio.wait([self._connector])
            self._connector = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait([self._sweeper])
            self._sweeper = None
        if self._solo_task is not None:
            self._solo_task.cancel()
            await asyncio.wait([self._solo_task])
        if self._pool is not None:
            pool, self._pool = self._pool, None
            con = self._forget_solo()
            if con is not None:
                # The pool's close waits for every connection to come back.
                with map_exceptions(LEVEL, "close"):
                    await pool.release(con, timeout=self.config.command_timeout)
            with map_exceptions(LEVEL, "close"):
                await asyncio.wait_for(pool.close(), timeout=self.config.command_timeout)
