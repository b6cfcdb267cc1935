"""mlcache's own RESP client (tiers/resp.py) against real redis-servers: round trips, pipelining,
cancellation at any point, auth, TLS, a server killed or stopped mid-command, pool bounds."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from mlcache import TierUnavailableError
from mlcache.config import L2Config
from mlcache.localservers import RedisServer
from mlcache.tiers.redis import MULTI_MIN, RedisTier
from mlcache.tiers.resp import Address, ConnectionClosedError, Pool, RespError, Script

# The TLS server and certificates of the L2 security tests, reused as they are.
from test_redis_security import tls_files, tls_redis  # noqa: F401


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[Pool]:
    p = Pool(redis_url)
    yield p
    await p.aclose()


def value_of(key: str) -> bytes:
    # Every value names its key, so a reply handed to the wrong caller is caught.
    return b"value-of:" + key.encode() + b"\x00\xff"


async def fill(pool: Pool, keys: list[str]) -> None:
    await pool.execute("MSET", *[x for k in keys for x in (k, value_of(k))])


# --- the protocol ---------------------------------------------------------------------------

async def test_round_trips_of_every_reply_type(pool: Pool, namespace: str) -> None:
    k = f"{namespace}:k"
    every_byte = bytes(range(256)) * 3
    assert await pool.execute("SET", k, every_byte) == b"OK"
    assert await pool.execute("GET", k) == every_byte
    assert await pool.execute("GET", f"{namespace}:absent") is None
    assert await pool.execute("SET", k, b"") == b"OK"
    assert await pool.execute("GET", k) == b""
    big = os.urandom(1 << 20)
    await pool.execute("SET", k, big)
    assert await pool.execute("GET", k) == big
    assert await pool.execute("SET", k, "snowman ☃") == b"OK"
    assert await pool.execute("GET", k) == "snowman ☃".encode()
    assert await pool.execute("DEL", k, f"{namespace}:absent") == 1
    assert await pool.execute("RPUSH", k, b"a", 7, 1.5) == 3
    assert await pool.execute("LRANGE", k, 0, -1) == [b"a", b"7", b"1.5"]
    assert await pool.execute("EVAL", "return {1, false, 'x', {2}}", 0) == [1, None, b"x", [2]]
    assert await pool.execute("PING") == b"PONG"


async def test_error_replies_raise_and_leave_the_connection_usable(pool: Pool, namespace: str) -> None:
    k = f"{namespace}:list"
    await pool.execute("RPUSH", k, b"x")
    with pytest.raises(RespError) as info:
        await pool.execute("GET", k)
    assert info.value.code == "WRONGTYPE"
    with pytest.raises(RespError, match="unknown command"):
        await pool.execute("NOSUCHCOMMAND")
    assert await pool.execute("LPOP", k) == b"x"
    assert pool.stats()["connected"] == 1


async def test_evalsha_falls_back_when_the_server_lost_the_script(pool: Pool, namespace: str) -> None:
    script = Script("return {KEYS[1], ARGV[1]}")
    assert await pool.evalsha(script, [f"{namespace}:a"], [b"1"]) == [f"{namespace}:a".encode(), b"1"]
    await pool.execute("SCRIPT", "FLUSH")
    assert await pool.evalsha(script, [f"{namespace}:b"], [b"2"]) == [f"{namespace}:b".encode(), b"2"]
    assert await pool.execute("SCRIPT", "EXISTS", script.sha) == [1]  # EVAL loaded it again


async def test_concurrent_callers_get_their_own_replies(pool: Pool, namespace: str) -> None:
    keys = [f"{namespace}:{i}" for i in range(1000)]
    await fill(pool, keys)
    replies = await asyncio.gather(*(pool.execute("GET", k) for k in keys))
    assert replies == [value_of(k) for k in keys]
    # Pipelined on few connections, not one socket per caller.
    assert pool.stats()["connected"] <= 1000 // pool.pipeline_depth + 1


async def test_transactions_answer_with_execs_reply_and_keep_the_stream_in_step(pool: Pool, namespace: str) -> None:
    k = f"{namespace}:tx"
    await pool.execute("SET", k, b"v", "PX", 60_000)
    data, pttl = await pool.transaction(("GET", k), ("PTTL", k))
    assert data == b"v" and 0 < pttl <= 60_000
    assert await pool.transaction(("GET", f"{namespace}:absent"), ("PTTL", f"{namespace}:absent")) == [None, -2]
    # A command the server will not queue aborts the whole transaction...
    with pytest.raises(RespError) as info:
        await pool.transaction(("GET", k), ("NOSUCHCOMMAND",))
    assert info.value.code == "EXECABORT"
    # ...and one that fails when run is an error inside EXEC's reply.
    await pool.execute("RPUSH", f"{namespace}:list", b"x")
    reply = await pool.transaction(("GET", f"{namespace}:list"), ("PTTL", k))
    assert "WRONGTYPE" in str(reply[0]) and not isinstance(reply[0], bytes) and 0 < reply[1] <= 60_000
    # Transactions and plain commands interleaved on one pipelined connection: each caller
    # gets its own replies.
    keys = [f"{namespace}:{i}" for i in range(200)]
    await fill(pool, keys)
    calls = [pool.transaction(("GET", key), ("PTTL", key)) if i % 2 else pool.execute("GET", key)
             for i, key in enumerate(keys)]
    replies = await asyncio.gather(*calls)
    assert [r[0] if i % 2 else r for i, r in enumerate(replies)] == [value_of(key) for key in keys]
    assert pool.stats()["connected"] <= 200 // pool.pipeline_depth + 1


# --- cancellation ---------------------------------------------------------------------------

async def test_cancellation_storm_never_desynchronises_a_connection(redis_url: str, namespace: str) -> None:
    # One connection, so every cancelled command shares its stream with the ones that follow:
    # the CVE-2023-28858 scenario (a reply left unread, then handed to the next caller).
    pool = Pool(redis_url, max_connections=1)
    rng = random.Random(28858)
    keys = [f"{namespace}:{i}" for i in range(300)]
    await fill(pool, keys)
    wrong: list[tuple[str, Any]] = []

    async def get(k: str) -> None:
        if rng.random() < 0.5:
            reply = await pool.execute("GET", k)
        else:  # a transaction owes four replies: cancelled, all four must be dropped in step
            reply = (await pool.transaction(("GET", k), ("PTTL", k)))[0]
        if reply != value_of(k):
            wrong.append((k, reply))

    try:
        await pool.execute("PING")
        first = pool.connections[0]
        cancelled = 0
        for _ in range(20):
            tasks = [asyncio.create_task(get(rng.choice(keys))) for _ in range(200)]
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0 if rng.random() < 0.7 else 0.0002)
                for t in rng.sample(tasks, 40):
                    t.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(r is None or isinstance(r, asyncio.CancelledError) for r in done), done
            cancelled += sum(isinstance(r, asyncio.CancelledError) for r in done)
        assert not wrong, wrong[:3]
        assert cancelled > 100
        # Every later reply still matches its key, on the very connection the storm hit.
        replies = await asyncio.gather(*(pool.execute("GET", k) for k in keys))
        assert replies == [value_of(k) for k in keys]
        assert pool.connections == [first]
    finally:
        await pool.aclose()


async def test_a_cancelled_tier_call_raises_cancelled_error(redis_url: str, namespace: str) -> None:
    tier = RedisTier(L2Config(redis_url=redis_url, key_prefix=namespace))
    await tier.start()
    await tier.set("k", b"v", None)
    try:
        for attempt in range(50):
            task = asyncio.create_task(tier.get("k"))
            for _ in range(attempt % 3):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task  # never swallowed, whatever step it had reached
        assert await tier.get("k") == (b"v", None)
    finally:
        await tier.close()


async def test_a_caller_that_times_out_leaves_its_reply_to_be_dropped(
    fresh_redis_server: RedisServer, namespace: str
) -> None:
    pool = Pool(fresh_redis_server.url, max_connections=1)
    try:
        await pool.execute("SET", "k", b"v")
        fresh_redis_server.pause()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.execute("GET", "absent"), 0.05)
        fresh_redis_server.resume()
        assert await pool.execute("GET", "k") == b"v"
        assert len(pool.connections) == 1
    finally:
        fresh_redis_server.resume()
        await pool.aclose()


# --- auth, db, TLS --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def password_redis() -> Any:
    with RedisServer(password="s3cret-pw", extra_args=["--user", "alice", "on", ">alice-pw", "~*", "&*", "+@all"]) as s:
        yield s


async def test_password_acl_user_and_db_from_the_url(password_redis: RedisServer, namespace: str) -> None:
    port = password_redis.port
    for url in (f"redis://:s3cret-pw@127.0.0.1:{port}/3", f"redis://alice:alice-pw@127.0.0.1:{port}/3"):
        pool = Pool(url)
        try:
            await pool.execute("SET", f"{namespace}:authed", url[:12])
            assert await pool.execute("CLIENT", "GETNAME") == b"mlcache"
        finally:
            await pool.aclose()
    check = aioredis.Redis(port=port, password="s3cret-pw", db=3)
    try:
        assert await check.get(f"{namespace}:authed") == b"redis://alic"
    finally:
        await check.aclose()


@pytest.mark.parametrize("userinfo", ["", ":wrong-pw@", "alice:wrong-pw@"])
async def test_refused_auth_raises_without_the_password(password_redis: RedisServer, userinfo: str) -> None:
    pool = Pool(f"redis://{userinfo}127.0.0.1:{password_redis.port}/0")
    try:
        with pytest.raises(RespError) as info:
            await pool.execute("PING")
        assert info.value.code in ("NOAUTH", "WRONGPASS")
        assert "wrong-pw" not in str(info.value) and "wrong-pw" not in repr(pool)
        assert pool.stats()["connected"] == 0
    finally:
        await pool.aclose()


async def test_tls_with_client_certificate(tls_redis: tuple[RedisServer, int], tls_files: dict[str, str]) -> None:
    _, port = tls_redis
    certs = {"ssl_ca_certs": tls_files["ca"], "ssl_certfile": tls_files["client_crt"],
             "ssl_keyfile": tls_files["client_key"]}
    pool = Pool(f"rediss://127.0.0.1:{port}/0", **certs)
    try:
        await pool.execute("SET", "tls", b"\x00secure")
        assert await asyncio.gather(*(pool.execute("GET", "tls") for _ in range(100))) == [b"\x00secure"] * 100
    finally:
        await pool.aclose()
    # No client certificate: refused, quickly, as an exception.
    refused = Pool(f"rediss://127.0.0.1:{port}/0", ssl_ca_certs=tls_files["ca"], connect_timeout=2.0)
    try:
        with pytest.raises(Exception):
            await refused.execute("PING")
    finally:
        await refused.aclose()


def test_url_parsing_and_no_password_in_repr() -> None:
    a = Address.from_url("rediss://bob:p%40ss@cache.example:6380/2")
    assert (a.host, a.port, a.tls, a.username, a.password, a.db) == ("cache.example", 6380, True, "bob", "p@ss", 2)
    a = Address.from_url("redis://:pw@localhost")
    assert (a.port, a.username, a.password, a.db) == (6379, None, "pw", 0)
    a = Address.from_url("unix:///run/redis.sock?db=5&password=pw")
    assert (a.path, a.db, a.password) == ("/run/redis.sock", 5, "pw")
    assert "p@ss" not in repr(Pool("rediss://bob:p%40ss@cache.example:6380/2"))
    with pytest.raises(ValueError):
        Address.from_url("http://localhost")


async def test_unix_socket(tmp_path: Any, namespace: str) -> None:
    sock = tmp_path / "redis.sock"
    with RedisServer(extra_args=["--unixsocket", str(sock), "--unixsocketperm", "777"]):
        pool = Pool(f"unix://{sock}?db=2")
        try:
            await pool.execute("SET", "k", b"\x00unix")
            assert await pool.execute("GET", "k") == b"\x00unix"
            assert b"db=2" in await pool.execute("CLIENT", "INFO")
        finally:
            await pool.aclose()


# --- faults and the pool --------------------------------------------------------------------

async def test_server_killed_mid_command_fails_fast_and_the_pool_recovers(
    fresh_redis_server: RedisServer, namespace: str
) -> None:
    port = fresh_redis_server.port
    pool = Pool(fresh_redis_server.url, socket_timeout=5.0)
    replacement: RedisServer | None = None
    try:
        await pool.execute("PING")
        # Blocked server-side for 5 s: certainly in flight when the server dies.
        waiting = [asyncio.create_task(pool.execute("BLPOP", f"{namespace}:never", 5)) for _ in range(10)]
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        os.kill(fresh_redis_server.pid, signal.SIGKILL)
        results = await asyncio.gather(*waiting, return_exceptions=True)
        took = time.monotonic() - t0
        assert all(isinstance(r, ConnectionClosedError) for r in results), results
        assert "closed the connection" in str(results[0])
        assert took < 1.0, f"waiters failed {took:.2f} s after the kill"
        assert pool.stats() == {"connected": 0, "in_use": 0}
        fresh_redis_server.stop()
        with pytest.raises(OSError):  # refused: nothing listens
            await pool.execute("PING")
        replacement = RedisServer(port=port)
        await asyncio.to_thread(replacement.start)
        assert await pool.execute("PING") == b"PONG"
        await fill(pool, [f"{namespace}:a"])
        assert await pool.execute("GET", f"{namespace}:a") == value_of(f"{namespace}:a")
    finally:
        await pool.aclose()
        if replacement is not None:
            replacement.stop()


async def test_a_silent_server_times_out_the_connection(fresh_redis_server: RedisServer) -> None:
    pool = Pool(fresh_redis_server.url, socket_timeout=0.2)
    try:
        await pool.execute("SET", "k", b"v")
        fresh_redis_server.pause()  # SIGSTOP: the socket stays open, nothing answers
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="no reply"):
            await pool.execute("GET", "k")
        assert 0.15 < time.monotonic() - t0 < 1.0
        assert pool.stats()["connected"] == 0  # dropped: its stream owes a reply
        fresh_redis_server.resume()
        assert await pool.execute("GET", "k") == b"v"
    finally:
        fresh_redis_server.resume()
        await pool.aclose()


async def test_the_pool_never_exceeds_max_connections(fresh_redis_server: RedisServer, namespace: str) -> None:
    url = fresh_redis_server.url
    pool = Pool(url, max_connections=3, pipeline_depth=4, socket_timeout=3.0)
    keys = [f"{namespace}:{i}" for i in range(500)]
    admin = aioredis.Redis.from_url(url)
    try:
        await fill(pool, keys)
        # Blocking pops fill every connection's pipeline for 0.3 s; the gets wait for room.
        pops = [asyncio.create_task(pool.execute("BLPOP", f"{namespace}:none", 0.3)) for _ in range(12)]
        tasks = [asyncio.create_task(pool.execute("GET", k)) for k in keys]
        seen: list[int] = []
        while not all(t.done() for t in tasks):
            seen.append(len(pool.connections))
            await asyncio.sleep(0.01)
        assert [t.result() for t in tasks] == [value_of(k) for k in keys]
        assert await asyncio.gather(*pops) == [None] * 12
        server_side = [c for c in await admin.client_list() if c.get("name") == "mlcache"]
        assert max(seen) == 3 and len(pool.connections) == len(server_side) <= 3
    finally:
        await pool.aclose()
        await admin.aclose()


async def test_a_full_pool_makes_callers_wait_a_bounded_time(fresh_redis_server: RedisServer) -> None:
    pool = Pool(fresh_redis_server.url, max_connections=1, pipeline_depth=2, socket_timeout=0.3)
    try:
        await pool.execute("PING")
        fresh_redis_server.pause()
        owed = [asyncio.create_task(pool.execute("PING")) for _ in range(2)]
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await pool.execute("PING")   # no room: waits, then gives up
        assert time.monotonic() - t0 < 1.0
        assert all(isinstance(r, TimeoutError) for r in await asyncio.gather(*owed, return_exceptions=True))
        fresh_redis_server.resume()
        assert await pool.execute("PING") == b"PONG"
    finally:
        fresh_redis_server.resume()
        await pool.aclose()


async def test_closing_the_pool_fails_what_waits(fresh_redis_server: RedisServer) -> None:
    pool = Pool(fresh_redis_server.url)
    await pool.execute("PING")
    blocked = asyncio.create_task(pool.execute("BLPOP", "never", 5))
    await asyncio.sleep(0.05)
    await pool.aclose()
    with pytest.raises(ConnectionClosedError):
        await blocked
    with pytest.raises(ConnectionClosedError):
        await pool.execute("PING")


async def test_out_of_memory_surfaces_as_an_error(namespace: str) -> None:
    with RedisServer(extra_args=["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]) as server:
        pool = Pool(server.url)
        tier = RedisTier(L2Config(redis_url=server.url, key_prefix=namespace))
        try:
            with pytest.raises(RespError) as info:
                for i in range(1000):
                    await pool.execute("SET", f"big{i}", b"x" * 10_000)
            assert info.value.code == "OOM"
            with pytest.raises(TierUnavailableError, match=r"L2: SET refused by Redis \(OOM\)"):
                await tier.set("one-more", b"x" * 10_000, 60)
            with pytest.raises(TierUnavailableError, match="OOM"):
                await tier.set_many([("a", b"x" * 10_000, None), ("b", b"y", 1.5)])
            with pytest.raises(TierUnavailableError, match="OOM"):     # the MULTI path too
                await tier.set_many([(f"m{i}", b"x" * 10_000, 1.5) for i in range(MULTI_MIN)])
            assert await pool.execute("GET", "big0") == b"x" * 10_000  # reads go on
        finally:
            await pool.aclose()
            await tier.close()


# --- the tier's stored format ---------------------------------------------------------------

@pytest.mark.parametrize("n", [3, MULTI_MIN + 5], ids=["script", "multi"])
async def test_batched_writes_store_the_same_either_way(redis_url: str, redis_client: aioredis.Redis,
                                                        namespace: str, n: int) -> None:
    # Below MULTI_MIN keys the SETs go in the Lua script, from it in a MULTI: same result.
    tier = RedisTier(L2Config(redis_url=redis_url, key_prefix=namespace))
    try:
        items = [(f"k{i}", f"v{i}".encode(), None if i % 2 else 2.0) for i in range(n)]
        await tier.set_many(items + [("k0", b"last", 2.0)])          # the last write of a key wins
        assert await redis_client.get(f"{namespace}:k0") == b"last"
        assert await redis_client.pttl(f"{namespace}:k1") == -1
        assert 1900 <= await redis_client.pttl(f"{namespace}:k2") <= 2000
        await tier.delete("k1")                                       # a tombstone
        await tier.fill_many([(f"k{i}", b"filled", 5.0) for i in range(n)] + [("new", b"filled", None)])
        assert await redis_client.get(f"{namespace}:k0") == b"last"   # NX: held values stay
        assert await tier.get("k1") is None                          # and tombstones too
        assert await redis_client.get(f"{namespace}:new") == b"filled"
        assert await redis_client.pttl(f"{namespace}:new") == -1
    finally:
        await tier.close()


async def test_a_transaction_counts_as_one_command_for_the_pool(fresh_redis_server: RedisServer,
                                                                namespace: str) -> None:
    # A MULTI of 40 SETs owes 42 replies but is one command: the connection is not "full".
    pool = Pool(fresh_redis_server.url, max_connections=4, pipeline_depth=8)
    try:
        await pool.execute("PING")
        conn = pool.connections[0]
        big = asyncio.ensure_future(pool.transaction(*[("SET", f"{namespace}:t{i}", b"x") for i in range(40)]))
        await asyncio.sleep(0)
        assert conn.requests == 1 and len(conn.waiters) == 42
        assert pool._pick() is conn                                   # room left behind it
        assert await big == [b"OK"] * 40
        assert conn.requests == 0 and not conn.waiters
    finally:
        await pool.aclose()


async def test_tier_keeps_the_stored_format(redis_url: str, redis_client: aioredis.Redis, namespace: str) -> None:
    tier = RedisTier(L2Config(redis_url=redis_url, key_prefix=namespace))
    try:
        await tier.set("a", b"\x00A", 2.0004)
        await tier.set("b", b"B", None)
        await tier.set_many([("c", b"C", 0.0001), ("d", b"D", None)])
        assert await redis_client.get(f"{namespace}:a") == b"\x00A"
        assert 1990 <= await redis_client.pttl(f"{namespace}:a") <= 2001  # PX, rounded up
        assert await redis_client.pttl(f"{namespace}:b") == -1
        assert await redis_client.pttl(f"{namespace}:d") == -1
        got = await tier.get_many(["a", "b", "c", "d", "absent"])
        assert got[0] is not None and got[0].data == b"\x00A" and 1.9 < got[0].ttl <= 2.001  # type: ignore[operator]
        assert got[1] == (b"B", None) and got[3] == (b"D", None) and got[4] is None
        assert got[2] is None or got[2].data == b"C"  # 1 ms to live: may be gone already
        # The lone read (a MULTI of GET and PTTL) agrees with get_many.
        one = await tier.get("a")
        assert one is not None and one.data == b"\x00A" and 1.9 < one.ttl <= 2.001  # type: ignore[operator]
        assert await tier.get("b") == (b"B", None) and await tier.get("absent") is None
        await redis_client.rpush(f"{namespace}:list", b"x")  # another type under our prefix
        assert await tier.get("list") is None and (await tier.get_many(["list"])) == [None]
        await redis_client.delete(f"{namespace}:list")
        assert await tier.count() >= 3
        assert await tier.delete("b") is True and await tier.delete("b") is False
        assert await tier.delete_many(["a", "d", "absent"]) == 2
        assert await tier.clear() >= 0 and await tier.count() == 0
        assert await tier.size_bytes() > 0
    finally:
        await tier.close()
