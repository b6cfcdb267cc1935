"""Real tests of mlcache.localservers: real redis-server and PostgreSQL processes.

These servers back the whole suite and ``mlcache bench``, so they are tested
for what the rest relies on: they answer, they listen on loopback only, they
stop exactly what they started and leave no files, and a missing install
fails loudly with the command that fixes it.
"""
from __future__ import annotations

import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mlcache import localservers
from mlcache.localservers import (
    LocalServerError,
    PostgresServer,
    RedisServer,
    find_postgres_bindir,
    free_port,
)

# ----------------------------------------------------------------------- helpers


def _resp_encode(*parts: str) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        b = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _resp_read(f: Any) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"short read: {line!r}")
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return line[:-2].decode()  # keep the sign: "+OK", "-NOAUTH ..."
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        return [_resp_read(f) for _ in range(int(rest))]
    raise ConnectionError(f"unexpected reply {line!r}")


def redis_cmds(port: int, *cmds: tuple[str, ...], timeout: float = 2.0) -> list[Any]:
    """Send commands over a raw socket (no redis-py) and return their replies."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(_resp_encode(*c) for c in cmds))
        with s.makefile("rb") as f:
            return [_resp_read(f) for _ in cmds]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def assert_fully_stopped(port: int, pid: int, tmpdir: str) -> None:
    assert not port_open(port), f"port {port} still accepts connections"
    assert not localservers._pid_alive(pid), f"pid {pid} still runs"
    assert not os.path.exists(tmpdir), f"{tmpdir} was not removed"


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


# ---------------------------------------------------------------------- free_port


def test_free_port_is_bindable_and_never_repeated() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


# -------------------------------------------------------------------------- Redis


def test_redis_start_ping_stop() -> None:
    server = RedisServer()
    server.start()
    try:
        port, pid, tmpdir = server.port, server.pid, server.tmpdir
        assert tmpdir is not None and os.path.isdir(tmpdir)
        assert server.url == f"redis://127.0.0.1:{port}/0"
        assert server.running
        assert redis_cmds(port, ("PING",)) == ["+PONG"]
        # A cache server: loopback only, nothing written to disk.
        bind, save, aof = redis_cmds(
            port, ("CONFIG", "GET", "bind"), ("CONFIG", "GET", "save"), ("CONFIG", "GET", "appendonly")
        )
        assert bind == ["bind", "127.0.0.1"]
        assert save == ["save", ""]
        assert aof == ["appendonly", "no"]
    finally:
        server.stop()
    assert_fully_stopped(port, pid, tmpdir)
    assert not server.running
    server.stop()  # idempotent


def test_redis_context_manager_stops_on_error() -> None:
    with pytest.raises(ZeroDivisionError):
        with RedisServer() as server:
            port, pid, tmpdir = server.port, server.pid, server.tmpdir
            assert tmpdir is not None
            1 / 0  # noqa: B018
    assert_fully_stopped(port, pid, tmpdir)


def test_redis_password() -> None:
    with RedisServer(password="s3cret:/@") as server:
        assert server.url == f"redis://:s3cret%3A%2F%40@127.0.0.1:{server.port}/0"
        (noauth,) = redis_cmds(server.port, ("PING",))
        assert noauth.startswith("-NOAUTH")
        assert redis_cmds(server.port, ("AUTH", "s3cret:/@"), ("PING",)) == ["+OK", "+PONG"]
        assert server.ping()


def test_redis_explicit_port_and_extra_args() -> None:
    port = free_port()
    with RedisServer(port=port, extra_args=["--maxmemory", "10mb"]) as server:
        assert server.port == port
        assert redis_cmds(port, ("CONFIG", "GET", "maxmemory")) == [["maxmemory", str(10 * 1024 * 1024)]]


def test_two_redis_servers_at_once() -> None:
    with RedisServer() as a, RedisServer() as b:
        assert a.port != b.port
        assert a.pid != b.pid
        assert a.tmpdir != b.tmpdir
        redis_cmds(a.port, ("SET", "k", "a"))
        redis_cmds(b.port, ("SET", "k", "b"))
        assert redis_cmds(a.port, ("GET", "k")) == ["a"]
        assert redis_cmds(b.port, ("GET", "k")) == ["b"]
        b.stop()
        # Stopping one must leave the other alone.
        assert redis_cmds(a.port, ("PING",)) == ["+PONG"]


def test_redis_pause_resume(fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    server.pause()
    try:
        with pytest.raises(socket.timeout):
            redis_cmds(server.port, ("PING",), timeout=0.5)
        assert not server.ping(timeout=0.3)
    finally:
        server.resume()
    assert redis_cmds(server.port, ("PING",)) == ["+PONG"]


def test_redis_stop_while_paused() -> None:
    server = RedisServer()
    server.start()
    port, pid, tmpdir = server.port, server.pid, server.tmpdir
    assert tmpdir is not None
    server.pause()
    t0 = time.monotonic()
    server.stop()
    # SIGTERM alone would wait for the 10 s kill fallback on a stopped process.
    assert time.monotonic() - t0 < 5
    assert_fully_stopped(port, pid, tmpdir)


def test_redis_start_failure_shows_log_and_cleans_up() -> None:
    server = RedisServer(extra_args=["--no-such-directive", "1"])
    with pytest.raises(LocalServerError) as excinfo:
        server.start()
    msg = str(excinfo.value)
    assert "exited during startup" in msg
    assert "no-such-directive" in msg  # the log tail is in the message
    assert server.tmpdir is None
    assert not server.running


def test_redis_explicit_port_in_use_is_an_error() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(LocalServerError, match="already in use"):
            RedisServer(port=port).start()


def test_redis_auto_port_retries_when_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # free_port() can race with other processes; a server on a port we picked
    # ourselves retries on another one.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        ports = iter([taken])
        real_free_port = localservers.free_port
        monkeypatch.setattr(localservers, "free_port", lambda: next(ports, None) or real_free_port())
        with RedisServer() as server:
            assert server.port != taken
            assert server.ping()


def test_redis_missing_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalServerError, match="apt-get install redis-server"):
        RedisServer().start()
    with pytest.raises(LocalServerError, match="apt-get install redis-server"):
        RedisServer(executable=str(tmp_path / "redis-server")).start()


# --------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    # Its own server (not the session's postgres_server): this module tests the
    # class itself, whatever MLCACHE_TEST_POSTGRES_URL says.
    with PostgresServer() as server:
        yield server


def test_find_postgres_bindir() -> None:
    d = find_postgres_bindir()
    for tool in ("initdb", "pg_ctl", "postgres"):
        assert os.access(os.path.join(d, tool), os.X_OK)


def _fake_bindir(d: Path) -> Path:
    d.mkdir(parents=True)
    for tool in ("initdb", "pg_ctl", "postgres"):
        (d / tool).write_text("#!/bin/sh\n")
        (d / tool).chmod(0o755)
    return d


def test_find_postgres_bindir_choices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_bindir(tmp_path / "lib" / "9.6" / "bin")
    newest = _fake_bindir(tmp_path / "lib" / "15" / "bin")
    _fake_bindir(tmp_path / "lib" / "13" / "bin")
    monkeypatch.setattr(localservers, "POSTGRES_BINDIR_GLOB", str(tmp_path / "lib" / "*" / "bin"))
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    # Numeric, not lexical: 15 is newer than 9.6.
    assert find_postgres_bindir() == str(newest)
    # PATH's pg_ctl wins, resolved through a symlink (as /usr/local/bin/pg_ctl may be).
    onpath = _fake_bindir(tmp_path / "opt" / "pg" / "bin")
    links = tmp_path / "links"
    links.mkdir()
    (links / "pg_ctl").symlink_to(onpath / "pg_ctl")
    monkeypatch.setenv("PATH", str(links))
    assert find_postgres_bindir() == str(onpath)


def test_postgres_missing_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(localservers, "POSTGRES_BINDIR_GLOB", str(tmp_path / "nothing" / "*" / "bin"))
    with pytest.raises(LocalServerError, match="apt-get install postgresql"):
        find_postgres_bindir()
    server = PostgresServer()
    with pytest.raises(LocalServerError, match="apt-get install postgresql"):
        server.start()
    assert server.tmpdir is None
    with pytest.raises(LocalServerError, match="apt-get install postgresql"):
        PostgresServer(bindir=str(tmp_path)).start()


async def test_postgres_connect_and_settings(pg_server: PostgresServer) -> None:
    assert pg_server.url == f"postgresql://mlcache:mlcache@127.0.0.1:{pg_server.port}/mlcache"
    conn = await asyncpg.connect(pg_server.url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_user") == "mlcache"
        assert await conn.fetchval("SELECT current_database()") == "mlcache"
        assert await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = 'mlcache'") == 1
        assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = 'mlcache'") == 1
        # The role has a real (hashed) password: TCP logins are checked.
        assert (await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = 'mlcache'")).startswith(
            ("SCRAM-SHA-256$", "md5")
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "unix_socket_directories": pg_server.tmpdir,
            "port": str(pg_server.port),
        }
        for name, want in settings.items():
            assert await conn.fetchval(f"SHOW {name}") == want, name
    finally:
        await conn.close()


async def test_postgres_wrong_password_is_rejected(pg_server: PostgresServer) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        conn = await asyncpg.connect(
            host="127.0.0.1", port=pg_server.port, user="mlcache", password="wrong", database="mlcache"
        )
        await conn.close()


def test_postgres_runs_unprivileged(pg_server: PostgresServer) -> None:
    uid = process_uid(pg_server.pid)
    if os.geteuid() == 0:
        assert uid != 0
        assert uid in {pwd.getpwnam(n).pw_uid for n in ("postgres", "nobody") if _user_exists(n)}
    else:
        assert uid == os.geteuid()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_postgres_socket_dir_is_private_and_reachable(pg_server: PostgresServer) -> None:
    assert pg_server.tmpdir is not None
    sockets = [p for p in os.listdir(pg_server.tmpdir) if p.startswith(".s.PGSQL.")]
    assert f".s.PGSQL.{pg_server.port}" in sockets
    mode = stat.S_IMODE(os.stat(os.path.join(pg_server.tmpdir, f".s.PGSQL.{pg_server.port}")).st_mode)
    # The socket trusts without a password, so only its owner may use it.
    assert mode & 0o077 == 0


async def test_postgres_restart_keeps_port_and_data(pg_server: PostgresServer) -> None:
    conn = await asyncpg.connect(pg_server.url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS restart_probe (v int)")
        await conn.execute("INSERT INTO restart_probe VALUES (42)")
    finally:
        await conn.close()
    old_pid, old_port = pg_server.pid, pg_server.port
    pg_server.restart()
    assert pg_server.port == old_port
    assert pg_server.pid != old_pid
    assert not localservers._pid_alive(old_pid)
    conn = await asyncpg.connect(pg_server.url)
    try:
        assert await conn.fetchval("SELECT v FROM restart_probe") == 42
    finally:
        await conn.close()


async def test_postgres_restart_breaks_open_connections(pg_server: PostgresServer) -> None:
    # What fault tests rely on: a connection from before restart() is dead after it.
    conn = await asyncpg.connect(pg_server.url)
    try:
        pg_server.restart()
        with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)):
            await conn.fetchval("SELECT 1")
    finally:
        conn.terminate()


async def test_two_postgres_servers_at_once(pg_server: PostgresServer, fresh_postgres_server: PostgresServer) -> None:
    other = fresh_postgres_server
    assert other.port != pg_server.port
    assert other.tmpdir != pg_server.tmpdir
    for server in (pg_server, other):
        conn = await asyncpg.connect(server.url)
        try:
            assert await conn.fetchval("SHOW port") == str(server.port)
        finally:
            await conn.close()


async def test_postgres_custom_names_and_stop() -> None:
    # Characters that must be escaped in the URL and quoted in SQL.
    server = PostgresServer(user="app user", password="p@ss:w/rd %x", database="my-db")
    server.start()
    try:
        port, pid, tmpdir = server.port, server.pid, server.tmpdir
        assert tmpdir is not None
        conn = await asyncpg.connect(server.url)
        try:
            assert await conn.fetchval("SELECT current_user") == "app user"
            assert await conn.fetchval("SELECT current_database()") == "my-db"
        finally:
            await conn.close()
    finally:
        server.stop()
    assert_fully_stopped(port, pid, tmpdir)
    server.stop()  # idempotent
    with pytest.raises(LocalServerError):
        server.restart()


# ------------------------------------------------------------------------- atexit


def test_atexit_stops_leftover_servers_but_not_from_forked_children() -> None:
    script = textwrap.dedent(
        """
        import json, os, sys
        from mlcache.localservers import PostgresServer, RedisServer

        r = RedisServer(); r.start()
        p = PostgresServer(); p.start()
        child = os.fork()
        if child == 0:
            sys.exit(0)  # a normal exit: runs the atexit hooks inherited from the parent
        os.waitpid(child, 0)
        print(json.dumps({
            "redis_alive_after_child": r.ping(),
            "redis": [r.port, r.pid, r.tmpdir],
            "postgres": [p.port, p.pid, p.tmpdir],
        }))
        # Exit without stop(): the atexit hook must clean up.
        """
    )
    src = os.path.dirname(os.path.dirname(localservers.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["redis_alive_after_child"] is True
    assert_fully_stopped(*info["redis"])
    assert_fully_stopped(*info["postgres"])
