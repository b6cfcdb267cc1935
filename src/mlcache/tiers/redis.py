"""L2: Redis, through mlcache's own small RESP client (tiers/resp.py), replies parsed by hiredis.

Every L2 command goes through one ``resp.Pool``: the hot ones (the GET+PTTL and SET scripts,
SET PX, DEL) because redis-py's asyncio client spent ~100 µs of Python per command and could
lose a cancellation mid-command; the cold ones (SCAN+UNLINK, INFO, PING) too, so that L2 has
one pool, one set of sockets to count and one failure behaviour, and no second client.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from ..config import L2Config
from ..errors import TierError, TierUnavailableError
from .base import Entry, map_exceptions
from .resp import Pool, RespError, Script

LEVEL = "L2"

# One round trip for many keys, each with its remaining lifetime from Redis' own clock.
# false, not nil, marks a missing key: nil would end the Lua array.  One MGET per 1000 keys
# (unpack's limit is ~8000) and a PTTL only for the keys found (-2, as PTTL says, for the
# others): each redis.call costs Redis ~0.6 us, and a GET+PTTL pair per key made the script
# 56.5 us of server time for 65 keys, 47.5 us this way (INFO commandstats, same server).
_GET_MANY = Script("""
local out = {}
local n = #KEYS
for first = 1, n, 1000 do
  local last = math.min(first + 999, n)
  local values = redis.call('MGET', unpack(KEYS, first, last))
  for i = first, last do
    local value = values[i - first + 1]
    out[2 * i - 1] = value
    out[2 * i] = value and redis.call('PTTL', KEYS[i]) or -2
  end
end
return out
""")
# ARGV holds value, ttl-in-ms pairs; a ttl of 0 means no expiry.
_SET_MANY = Script("""
for i, key in ipairs(KEYS) do
  local ttl = tonumber(ARGV[2 * i])
  if ttl > 0 then
    redis.call('SET', key, ARGV[2 * i - 1], 'PX', ttl)
  else
    redis.call('SET', key, ARGV[2 * i - 1])
  end
end
return #KEYS
""")


# Invalidation leaves a tombstone instead of deleting, and promotions into L2 ("fills") are
# SET NX: a fill carrying a value read before an invalidation or a newer put can then never
# overwrite either (docs/consistency.md).  The tombstone is 3 bytes that are no envelope
# (version 0), read as a miss; it outlives any read in flight (reads are bounded by the
# levels' read deadlines, far below this).
TOMBSTONE = b"ml\x00"
MULTI_MIN = 32  # SETs from which a batched write is a MULTI rather than the script (_write_many)
TOMBSTONE_TTL_MS = 5000
# KEYS: the keys; ARGV: tombstone, its ttl in ms.  Returns how many held a value.
_BURY = Script("""
local n = 0
for _, key in ipairs(KEYS) do
  local old = redis.call('GET', key)
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  if old and old ~= ARGV[1] then n = n + 1 end
end
return n
""")
# Like _SET_MANY, but only where the key holds nothing (no value, no tombstone).
_FILL_MANY = Script("""
for i, key in ipairs(KEYS) do
  local ttl = tonumber(ARGV[2 * i])
  if ttl > 0 then
    redis.call('SET', key, ARGV[2 * i - 1], 'PX', ttl, 'NX')
  else
    redis.call('SET', key, ARGV[2 * i - 1], 'NX')
  end
end
return #KEYS
""")


# KEYS: tag sets; ARGV[1]: ttl in ms (0: none), ARGV[1 + i]: set i's keys joined by NUL
# (keys never hold NUL).  A set's expiry only ever grows, so it outlives every member.
_TAG = Script("""
local ttl = tonumber(ARGV[1])
for i, set in ipairs(KEYS) do
  local existed = redis.call('EXISTS', set)
  local start = 1
  local s = ARGV[i + 1]
  while true do
    local stop = string.find(s, "\\0", start, true)
    local member = stop and string.sub(s, start, stop - 1) or string.sub(s, start)
    redis.call('SADD', set, member)
    if not stop then break end
    start = stop + 1
  end
  if ttl == 0 then
    redis.call('PERSIST', set)
  elseif existed == 0 then
    redis.call('PEXPIRE', set, ttl)
  else
    redis.call('PEXPIRE', set, ttl, 'GT')
  end
end
return #KEYS
""")


def _glob_escape(text: str) -> str:
    # SCAN MATCH patterns are globs; a prefix is meant literally.
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _px(ttl: float) -> int:
    # Round up: a sub-millisecond remainder must not become "PX 0" (an error).
    return max(1, math.ceil(ttl * 1000))


def _error(exc: Exception, action: str) -> TierError:
    """The TierError for a failed command.  A refusal by Redis names its error code (OOM,
    NOPERM, WRONGPASS...), which never holds a key, a value or a password."""
    if isinstance(exc, RespError):
        return TierUnavailableError(LEVEL, f"{action} refused by Redis ({exc.code})")
    try:
        with map_exceptions(LEVEL, action):
            raise exc
    except TierError as err:
        return err
    raise AssertionError("unreachable")  # pragma: no cover


def _entries(flat: list[Any]) -> list[Optional[Entry]]:
    # The script's value, pttl pairs; PTTL -2: gone between the two calls, -1: no expiry.
    return [None if data is None or pttl == -2 or data == TOMBSTONE
            else Entry(data, None if pttl == -1 else pttl / 1000.0)
            for data, pttl in zip(flat[::2], flat[1::2])]


class RedisTier:
    """Stores envelopes under ``{key_prefix}:{key}`` with millisecond expiry (PX).

    ``health_check_interval`` and ``retry_on_timeout`` (redis-py settings) do not apply: the
    client sees a server's close at once (it always reads), a silent peer is caught by the
    socket timeout, and a retry would only stretch a caller's wait past the level's deadline.
    """

    name = LEVEL
    # A command cancelled mid-flight leaves its reply to be read and dropped in order (see
    # resp.py), so the cache may run a lone read in its caller's task under a plain timeout.
    cancel_safe = True

    def __init__(self, config: L2Config) -> None:
        assert config.redis_url is not None
        self.config = config
        self._prefix = config.key_prefix + ":"
        self._match = _glob_escape(self._prefix) + "*"
        self._tags = config.key_prefix + "!tag:"
        tls = config.redis_url.startswith("rediss://")
        self._pool = Pool(
            config.redis_url,
            max_connections=config.max_connections,
            socket_timeout=config.socket_timeout,
            connect_timeout=config.socket_connect_timeout,
            ssl_keyfile=config.redis_ssl_keyfile if tls else None,
            ssl_certfile=config.redis_ssl_certfile if tls else None,
            ssl_ca_certs=config.redis_ssl_ca_certs if tls else None,
            client_name="mlcache",
        )
        self._client = _PoolView(self._pool)

    def redis_key(self, key: str) -> str:
        return self._prefix + key

    @property
    def pool(self) -> Pool:
        """The RESP connection pool, for helpers riding on L2's sockets (leases)."""
        return self._pool

    def pool_stats(self) -> dict[str, int]:
        """Connections open, and how many owe replies: ``{"connected": n, "in_use": m}``."""
        return self._pool.stats()

    async def start(self) -> None:
        try:
            await self._pool.execute("PING")
        except Exception as exc:
            raise _error(exc, "PING") from exc

    async def get(self, key: str) -> Optional[Entry]:
        try:
            # A transaction, not the GET_MANY script: for one key the script cost Redis 8.7 us a
            # call (INFO commandstats), GET and PTTL 0.6 and 0.4; MULTI keeps the pair atomic.
            name = self._prefix + key
            data, pttl = await self._multi_or_script([("GET", name), ("PTTL", name)], _GET_MANY, [name])
        except Exception as exc:
            raise _error(exc, "GET") from exc
        # Not bytes: the key holds another type (GET's WRONGTYPE comes back inside EXEC's
        # reply), a miss here as it is for get_many's MGET.
        if data.__class__ is not bytes or pttl == -2 or data == TOMBSTONE:
            return None
        return Entry(data, None if pttl == -1 else pttl / 1000.0)

    async def get_many(self, keys: Sequence[str]) -> list[Optional[Entry]]:
        prefix = self._prefix
        try:
            flat = await self._pool.evalsha(_GET_MANY, [prefix + k for k in keys])
        except Exception as exc:
            raise _error(exc, "GET many") from exc
        return _entries(flat)

    async def set(self, key: str, data: bytes, ttl: Optional[float]) -> None:
        try:
            if ttl is None:
                await self._pool.execute("SET", self._prefix + key, data)
            else:
                await self._pool.execute("SET", self._prefix + key, data, "PX", _px(ttl))
        except Exception as exc:
            raise _error(exc, "SET") from exc

    async def set_many(self, items: Sequence[tuple[str, bytes, Optional[float]]]) -> None:
        await self._write_many(_SET_MANY, (), items, "SET many")

    async def fill(self, key: str, data: bytes, ttl: Optional[float]) -> None:
        """Store a value promoted from below, unless the key holds a value or a tombstone."""
        try:
            if ttl is None:
                await self._pool.execute("SET", self._prefix + key, data, "NX")
            else:
                await self._pool.execute("SET", self._prefix + key, data, "PX", _px(ttl), "NX")
        except Exception as exc:
            raise _error(exc, "SET NX") from exc

    async def fill_many(self, items: Sequence[tuple[str, bytes, Optional[float]]]) -> None:
        await self._write_many(_FILL_MANY, ("NX",), items, "SET NX many")

    async def _write_many(self, script: Script, options: tuple[str, ...],
                          items: Sequence[tuple[str, bytes, Optional[float]]], action: str) -> None:
        """Many SETs in one round trip.  From MULTI_MIN keys up, in one ``MULTI``/``EXEC``:
        Redis runs them in a third less time than from the Lua script (100 keys: 425-466 vs
        588-639 us), which is what a bulk write waits for.  Below it, the script: such batches
        come from concurrent single writes, where this process's CPU is the limit, and each
        queued SET's reply costs it 0.3 us (the combined bench ran 4 % slower with MULTI for
        every batch)."""
        prefix = self._prefix
        px: dict[float, int] = {}  # one TTL for a whole put_many, usually
        keys: list[str] = []
        args: list[Any] = []  # the script's: value, ttl in ms (0: none) for each key
        for key, data, ttl in items:
            keys.append(prefix + key)
            if ttl is None:
                ms = 0
            else:
                ms = px.get(ttl, 0)
                if not ms:
                    ms = px[ttl] = _px(ttl)
            args += (data, ms)
        try:
            if len(keys) < MULTI_MIN:
                await self._pool.evalsha(script, keys, args)
                return
            # The same SETs as commands, made only here: most batches are below MULTI_MIN.
            commands = [("SET", rkey, data, "PX", ms, *options) if ms else ("SET", rkey, data, *options)
                        for rkey, data, ms in zip(keys, args[0::2], args[1::2])]
            replies = await self._multi_or_script(commands, script, keys, args)
            if isinstance(replies, list):  # (the script answers with a count)
                for reply in replies:
                    if isinstance(reply, Exception):  # a SET that failed as it ran
                        raise RespError(str(reply))
        except Exception as exc:
            raise _error(exc, action) from exc

    async def _multi_or_script(self, commands: list[tuple[Any, ...]], script: Script, keys: list[str],
                               args: Sequence[Any] = ()) -> Any:
        """EXEC's reply to ``commands`` in one MULTI; or, if Redis refuses to queue them (over
        maxmemory with noeviction it refuses every command, even a read), ``script``'s reply,
        which does the same work and whose error names the cause (OOM, not EXECABORT)."""
        try:
            return await self._pool.transaction(*commands)
        except RespError as exc:
            if exc.code != "EXECABORT":
                raise
        return await self._pool.evalsha(script, keys, args)

    async def delete(self, key: str) -> bool:
        return bool(await self.delete_many((key,)))

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Replace the keys' values by tombstones; how many held a value."""
        try:
            return int(await self._pool.evalsha(
                _BURY, [self._prefix + k for k in keys], [TOMBSTONE, TOMBSTONE_TTL_MS]))
        except Exception as exc:
            raise _error(exc, "DEL many") from exc

    async def _scan(self, action: str, each_batch: Any, match: Optional[str] = None) -> int:
        """SCAN this prefix's keys (or ``match``), 1000 at a time, handing every batch to
        ``each_batch``."""
        cursor, total = b"0", 0
        try:
            while True:
                cursor, batch = await self._pool.execute(
                    "SCAN", cursor, "MATCH", match or self._match, "COUNT", 1000)
                if batch:
                    total += await each_batch(batch)
                if cursor == b"0":
                    return total
        except Exception as exc:
            raise _error(exc, action) from exc

    async def clear(self) -> int:
        """Remove every key under this cache's prefix (SCAN + UNLINK, never KEYS/FLUSHDB),
        and its tag sets."""
        async def unlink(batch: list[bytes]) -> int:
            return int(await self._pool.execute("UNLINK", *batch))
        removed = await self._scan("clear", unlink)
        await self._scan("clear", unlink, _glob_escape(self._tags) + "*")
        return removed

    # --- tags and prefixes: a set of keys per tag, {key_prefix}!tag:{tag} ----------------

    async def tag_many(self, pairs: Sequence[tuple[str, str]], ttl: Optional[float]) -> None:
        """Record (key, tag) pairs; a tag's set lives as long as its longest-lived key."""
        by_tag: dict[str, list[str]] = {}
        for key, tag in pairs:
            by_tag.setdefault(tag, []).append(key)
        try:
            await self._pool.evalsha(_TAG, [self._tags + t for t in by_tag],
                                     [0 if ttl is None else _px(ttl)] + ["\x00".join(ks) for ks in by_tag.values()])
        except Exception as exc:
            raise _error(exc, "tag") from exc

    async def keys_for_tag(self, tag: str) -> list[str]:
        try:
            members = await self._pool.execute("SMEMBERS", self._tags + tag)
        except Exception as exc:
            raise _error(exc, "tag lookup") from exc
        return [m.decode("utf-8") for m in members]

    async def untag(self, tag: str, keys: Sequence[str]) -> None:
        """Forget these keys' membership of ``tag`` (only these: a put tagging the same tag
        meanwhile keeps its own)."""
        try:
            await self._pool.execute("SREM", self._tags + tag, *keys)
        except Exception as exc:
            raise _error(exc, "untag") from exc

    async def delete_prefix(self, prefix: str) -> int:
        """Tombstone every key starting with ``prefix`` (taken literally: glob-escaped)."""
        async def bury(batch: list[bytes]) -> int:
            return int(await self._pool.evalsha(_BURY, batch, [TOMBSTONE, TOMBSTONE_TTL_MS]))
        return await self._scan("DEL prefix", bury, _glob_escape(self._prefix + prefix) + "*")

    async def count(self) -> int:
        """Keys under this prefix, tombstones of the last few seconds' invalidations included.
        A full SCAN: meant for stats, not for hot paths."""
        async def size(batch: list[bytes]) -> int:
            return len(batch)
        return await self._scan("count", size)

    async def size_bytes(self) -> int:
        """The Redis server's ``used_memory``: shared by every tenant of that server."""
        try:
            info: bytes = await self._pool.execute("INFO", "memory")
        except Exception as exc:
            raise _error(exc, "INFO") from exc
        for line in info.splitlines():
            if line.startswith(b"used_memory:"):
                return int(line.partition(b":")[2])
        return 0

    async def close(self) -> None:
        with map_exceptions(LEVEL, "close"):
            await self._pool.aclose()


class _PoolView:
    """The shape of redis-py's pool (``connection_pool._available_connections`` /
    ``_in_use_connections``) that tests/faultload.py reads as ``tier._client``; it can go
    once that helper reads :meth:`RedisTier.pool_stats` instead."""

    def __init__(self, pool: Pool) -> None:
        self.connection_pool = self
        self._pool = pool

    @property
    def _available_connections(self) -> list[Any]:
        return [c for c in self._pool.connections if not c.waiters]

    @property
    def _in_use_connections(self) -> list[Any]:
        return [c for c in self._pool.connections if c.waiters]
