"""Throwaway Redis and PostgreSQL servers on free loopback ports.

Used by ``mlcache bench`` and by the test suite, so that neither depends on a
system service (Debian's packages start one on 6379 / 5432 that we must not
touch) nor on anything but the server binaries.  Standard library only: this
module must import before redis-py or asyncpg are installed.

Every server lives in its own temporary directory, listens on 127.0.0.1 only,
and is stopped by the instance that started it -- by pid, never by name, so
several test runs or benchmarks on one machine cannot stop each other's
servers.  An ``atexit`` hook stops whatever is still running when the
interpreter exits (a crashed or interrupted test run), but only in the process
that started it: a forked child exiting must not take the parent's servers down.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

__all__ = [
    "LocalServerError",
    "PostgresServer",
    "RedisServer",
    "find_postgres_bindir",
    "free_port",
]

REDIS_INSTALL_HINT = "apt-get install redis-server"
POSTGRES_INSTALL_HINT = "apt-get install postgresql"

# Where Debian/Ubuntu put each major version's server binaries; pg_ctl & co are
# not on PATH there (only the postgresql-common wrappers are).  A module-level
# name so tests can point it at an empty place to simulate a missing install.
POSTGRES_BINDIR_GLOB = "/usr/lib/postgresql/*/bin"

_HOST = "127.0.0.1"
_LOG_TAIL_CHARS = 3000
# Attempts when *we* picked the port: free_port() can only say the port was free
# a moment ago, so another process may take it before the server binds it.
_PORT_ATTEMPTS = 3


class LocalServerError(RuntimeError):
    """A local server could not be found, started, or stopped."""


# --------------------------------------------------------------------------- ports

_ports_lock = threading.Lock()
_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Ports already handed out by this process are never repeated: the kernel may
    give the same ephemeral port to two bind(0) calls in a row once the first
    socket is closed, and two servers started back to back would then collide.
    """
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((_HOST, 0))
                port: int = s.getsockname()[1]
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise LocalServerError("could not find a free TCP port on 127.0.0.1")


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------ registry/atexit

_live_lock = threading.Lock()
_live: dict[int, tuple[int, Any]] = {}  # id(server) -> (owner pid, server)


def _register(server: Any) -> None:
    with _live_lock:
        _live[id(server)] = (os.getpid(), server)


def _unregister(server: Any) -> None:
    with _live_lock:
        _live.pop(id(server), None)


@atexit.register
def _stop_all_at_exit() -> None:
    me = os.getpid()
    with _live_lock:
        mine = [server for owner, server in _live.values() if owner == me]
    for server in mine:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit, keep stopping the rest
            pass


# ------------------------------------------------------------------------ helpers


def _tail(path: str | None, offset: int = 0, chars: int = _LOG_TAIL_CHARS) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").strip()
    if len(text) > chars:
        text = "..." + text[-chars:]
    return text


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie.

    A postmaster started by pg_ctl is not our child: after it exits it may stay
    a zombie until init reaps it (or forever in a container whose pid 1 doesn't
    reap), and kill(pid, 0) succeeds on zombies.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The state follows the parenthesised command name, which may contain spaces.
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _clean_env(home: str | None = None) -> dict[str, str]:
    """The environment for our server tools.

    PG* variables are dropped so a developer's PGPORT/PGHOST/PGDATA/PGOPTIONS
    cannot redirect or reconfigure the throwaway server.  Messages are forced to
    English so the log checks below ("Address already in use") work anywhere.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_MESSAGES"] = "C"
    env.pop("LC_ALL", None)
    if home is not None:
        env["HOME"] = home
    return env


def _rmtree(path: str | None) -> None:
    if path and os.path.exists(path):
        shutil.rmtree(path, ignore_errors=True)


# -------------------------------------------------------------------------- Redis


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 with no persistence, in a temp dir.

    ``with RedisServer() as r: ... r.url ...`` or ``start()`` / ``stop()``.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        executable: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        if password is not None and ("\r" in password or "\n" in password):
            raise ValueError("password must not contain CR or LF")
        self._requested_port = port
        self._port: int | None = port
        self.password = password
        self.extra_args = tuple(extra_args)
        self._executable = executable
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.tmpdir: str | None = None
        self.log_path: str | None = None
        self._paused = False

    # -- properties

    @property
    def port(self) -> int:
        if self._port is None:
            raise LocalServerError("RedisServer has no port yet: call start() first")
        return self._port

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise LocalServerError("RedisServer is not running")
        return self._proc.pid

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis://{auth}{_HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid}" if self._proc is not None else "stopped"
        return f"<RedisServer {_HOST}:{self._port} {state}>"

    # -- lifecycle

    def _find_executable(self) -> str:
        exe = self._executable or shutil.which("redis-server")
        if not exe or not os.access(exe, os.X_OK):
            raise LocalServerError(
                f"redis-server not found ({self._executable or 'not on PATH'}); "
                f"install it: {REDIS_INSTALL_HINT}"
            )
        return exe

    def start(self) -> None:
        if self._proc is not None:
            raise LocalServerError(f"{self!r} is already started")
        exe = self._find_executable()
        self.tmpdir = tempfile.mkdtemp(prefix="mlcache-redis-")
        self.log_path = os.path.join(self.tmpdir, "redis.log")
        _register(self)
        try:
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                self._port = self._requested_port or free_port()
                if self._launch(exe, last_attempt=attempt == _PORT_ATTEMPTS):
                    return
        except BaseException:
            # Leave nothing behind on failure (also on KeyboardInterrupt).
            self.stop()
            raise

    def _launch(self, exe: str, *, last_attempt: bool) -> bool:
        """Start redis-server once; False if the port was taken and we may retry."""
        assert self.tmpdir is not None and self.log_path is not None
        args = [
            exe,
            "--port", str(self._port),
            "--bind", _HOST,
            # A cache server that must start empty and never write to disk.
            "--save", "",
            "--appendonly", "no",
            "--dir", self.tmpdir,
            "--daemonize", "no",
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        args += list(self.extra_args)  # last, so they can override ours
        offset = _file_size(self.log_path)
        with open(self.log_path, "ab") as log:
            # A new session: Ctrl-C on the test run must not kill the server
            # under the fixtures, which then stop it cleanly themselves.
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                log_text = _tail(self.log_path, offset)
                self._proc = None
                if (
                    self._requested_port is None
                    and not last_attempt
                    and "already in use" in log_text
                ):
                    return False
                raise LocalServerError(
                    f"redis-server exited during startup on port {self._port} "
                    f"(log {self.log_path}):\n{log_text}"
                )
            if self._ping(timeout=0.5):
                return True
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"redis-server on port {self._port} did not answer PING within "
                    f"{self.start_timeout:.0f} s (log {self.log_path}):\n"
                    f"{_tail(self.log_path, offset)}"
                )
            time.sleep(0.05)

    def ping(self, timeout: float = 1.0) -> bool:
        """True if the server answers PING (after AUTH if it has a password)."""
        return self._port is not None and self._ping(timeout)

    def _ping(self, timeout: float) -> bool:
        # Raw RESP so this works without redis-py (bench/test deps may be absent).
        cmds = []
        if self.password is not None:
            cmds.append(_resp("AUTH", self.password))
        cmds.append(_resp("PING"))
        try:
            with socket.create_connection((_HOST, self.port), timeout=timeout) as s:
                s.sendall(b"".join(cmds))
                buf = b""
                want = len(cmds)
                while buf.count(b"\r\n") < want:
                    chunk = s.recv(4096)
                    if not chunk:
                        return False
                    buf += chunk
        except OSError:
            return False
        expected = (b"+OK\r\n" if self.password is not None else b"") + b"+PONG\r\n"
        return buf == expected

    def stop(self) -> None:
        """Stop the process this instance started and remove its temp dir.  Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                # A SIGSTOPped process would not act on SIGTERM until continued.
                try:
                    proc.send_signal(signal.SIGCONT)
                    proc.terminate()
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            else:
                proc.wait()
        self._paused = False
        _rmtree(self.tmpdir)
        self.tmpdir = None
        _unregister(self)

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open but nothing is answered."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT a paused server."""
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _resp(*parts: str) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        b = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


# --------------------------------------------------------------------- PostgreSQL


def _bindir_ok(d: str) -> bool:
    return all(os.access(os.path.join(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres"))


def _version_key(path: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,), .../9.6/bin -> (9, 6): numeric, so 15 > 9.6.
    name = os.path.basename(os.path.dirname(path))
    return tuple(int(x) for x in re.findall(r"\d+", name)) or (0,)


def find_postgres_bindir() -> str:
    """The directory holding initdb, pg_ctl and postgres.

    PATH's pg_ctl first (resolving symlinks, since e.g. /usr/local/bin may hold
    only links to the real bindir), else the newest /usr/lib/postgresql/*/bin.
    """
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        for d in (os.path.dirname(os.path.realpath(pg_ctl)), os.path.dirname(pg_ctl)):
            if _bindir_ok(d):
                return d
    candidates = [d for d in glob.glob(POSTGRES_BINDIR_GLOB) if _bindir_ok(d)]
    if candidates:
        return max(candidates, key=_version_key)
    raise LocalServerError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH "
        f"nor under {POSTGRES_BINDIR_GLOB}; install them: {POSTGRES_INSTALL_HINT}"
    )


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _traversable_by(path: str, uid: int, gid: int) -> bool:
    """True if every directory from / down to ``path`` can be entered by uid/gid."""
    path = os.path.realpath(path)
    parts = [path]
    while True:
        parent = os.path.dirname(parts[-1])
        if parent == parts[-1]:
            break
        parts.append(parent)
    for p in parts:
        try:
            st = os.stat(p)
        except OSError:
            return False
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1, tuned for speed over durability.

    ``user`` is the cluster's bootstrap superuser (it may terminate other
    backends, which fault tests want) with ``password``; TCP connections must
    authenticate with it, the unix socket (in the temp dir) is trusted.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        user: str = "mlcache",
        password: str = "mlcache",
        database: str = "mlcache",
        bindir: str | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        if "\n" in password or "\r" in password or not password:
            raise ValueError("password must be non-empty and on one line")
        self._requested_port = port
        self._port: int | None = port
        self.user = user
        self.password = password
        self.database = database
        self._bindir = bindir
        self.start_timeout = start_timeout
        self.tmpdir: str | None = None
        self.datadir: str | None = None
        self.log_path: str | None = None
        self._pid: int | None = None
        self._run_as: dict[str, Any] = {}
        self._env: dict[str, str] = {}
        self._bin = ""

    # -- properties

    @property
    def port(self) -> int:
        if self._port is None:
            raise LocalServerError("PostgresServer has no port yet: call start() first")
        return self._port

    @property
    def pid(self) -> int:
        """The postmaster's pid (it changes on restart())."""
        if self._pid is None:
            raise LocalServerError("PostgresServer is not running")
        return self._pid

    @property
    def url(self) -> str:
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{_HOST}:{self.port}/{quote(self.database, safe='')}"
        )

    @property
    def running(self) -> bool:
        return self._pid is not None and _pid_alive(self._pid)

    def __repr__(self) -> str:
        state = f"pid={self._pid}" if self._pid is not None else "stopped"
        return f"<PostgresServer {_HOST}:{self._port} {state}>"

    # -- helpers

    def _tool(self, name: str) -> str:
        return os.path.join(self._bin, name)

    def _run(
        self, args: list[str], *, input: bytes | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a PostgreSQL tool as the cluster's OS user, capturing its output."""
        try:
            return subprocess.run(
                args,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                env=self._env,
                timeout=timeout,
                check=False,
                **self._run_as,
            )
        except subprocess.TimeoutExpired as e:
            raise LocalServerError(
                f"{os.path.basename(args[0])} timed out after {timeout:.0f} s:\n"
                f"{(e.output or b'').decode('utf-8', 'replace')}"
            ) from None

    def _check(self, what: str, res: subprocess.CompletedProcess[bytes], offset: int | None = None) -> None:
        if res.returncode == 0:
            return
        msg = f"{what} failed (exit {res.returncode}):\n{res.stdout.decode('utf-8', 'replace').strip()}"
        if offset is not None:
            msg += f"\n--- server log {self.log_path} ---\n{_tail(self.log_path, offset)}"
        raise LocalServerError(msg)

    def _setup_user(self) -> tuple[int, int] | None:
        """(uid, gid) to run PostgreSQL as, or None for the current user.

        PostgreSQL refuses to run as root, so under root we drop to the
        ``postgres`` account (Debian's package creates it), else ``nobody``.
        """
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                continue
            return pw.pw_uid, pw.pw_gid
        raise LocalServerError(
            "running as root, but neither a 'postgres' nor a 'nobody' user exists "
            "to run PostgreSQL as (it refuses to run as root)"
        )

    def _make_tmpdir(self, ids: tuple[int, int] | None) -> str:
        base = tempfile.gettempdir()
        if ids is not None and not _traversable_by(base, *ids):
            # e.g. TMPDIR=/root/tmp: the postgres user couldn't reach its data dir.
            base = next(
                (d for d in ("/tmp", "/var/tmp") if os.path.isdir(d) and _traversable_by(d, *ids)),
                "",
            )
            if not base:
                raise LocalServerError(
                    f"no temp directory the PostgreSQL user (uid {ids[0]}) can reach"
                )
        path = tempfile.mkdtemp(prefix="mlcache-pg-", dir=base)
        # 0755 so clients of other users can reach the unix socket dir; the data
        # dir inside is created 0700 by initdb.
        os.chmod(path, 0o755)
        if ids is not None:
            os.chown(path, *ids)
        return path

    def _write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(path, mode)
        if self._run_as:
            os.chown(path, self._run_as["user"], self._run_as["group"])

    def _write_conf(self) -> None:
        assert self.datadir is not None and self.tmpdir is not None
        # Our settings live in their own file, included from postgresql.conf,
        # so a port retry can rewrite it and ALTER SYSTEM stays usable.
        self._write_file(
            os.path.join(self.datadir, "mlcache.conf"),
            "\n".join(
                [
                    "# Written by mlcache.localservers: a throwaway cache server.",
                    f"port = {self._port}",
                    f"listen_addresses = '{_HOST}'",
                    f"unix_socket_directories = '{self.tmpdir}'",
                    # The socket is trusted (no password): only its owner (and root) may use it.
                    "unix_socket_permissions = 0700",
                    # Durability is worthless for a server whose data dies with it.
                    "fsync = off",
                    "synchronous_commit = off",
                    "full_page_writes = off",
                    "max_connections = 200",
                    "shared_buffers = 128MB",
                    "",
                ]
            ),
        )

    # -- lifecycle

    def start(self) -> None:
        if self._pid is not None:
            raise LocalServerError(f"{self!r} is already started")
        self._bin = self._bindir or find_postgres_bindir()
        if not _bindir_ok(self._bin):
            raise LocalServerError(
                f"{self._bin} lacks initdb/pg_ctl/postgres; install them: {POSTGRES_INSTALL_HINT}"
            )
        ids = self._setup_user()
        self._run_as = (
            {"user": ids[0], "group": ids[1], "extra_groups": []} if ids is not None else {}
        )
        self.tmpdir = self._make_tmpdir(ids)
        self._env = _clean_env(home=self.tmpdir)
        self.datadir = os.path.join(self.tmpdir, "data")
        self.log_path = os.path.join(self.tmpdir, "postgres.log")
        _register(self)
        try:
            self._port = self._requested_port or free_port()
            self._initdb()
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                if attempt > 1:
                    self._port = free_port()  # only reached when we picked the port
                self._write_conf()
                if self._pg_ctl_start(last_attempt=attempt == _PORT_ATTEMPTS):
                    break
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _major_version(self) -> int:
        res = self._run([self._tool("initdb"), "--version"])
        m = re.search(rb"(\d+)", res.stdout)
        return int(m.group(1)) if m else 0

    def _initdb(self) -> None:
        assert self.tmpdir is not None and self.datadir is not None
        # md5 before PG 14: scram-sha-256 auth needs scram-stored passwords,
        # the default only from 14 on.
        host_auth = "scram-sha-256" if self._major_version() >= 14 else "md5"
        pwfile = os.path.join(self.tmpdir, "pwfile")
        self._write_file(pwfile, self.password + "\n", mode=0o600)
        try:
            res = self._run(
                [
                    self._tool("initdb"),
                    "-D", self.datadir,
                    # The bootstrap superuser *is* our role: no separate CREATE ROLE step.
                    "-U", self.user,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    f"--auth-host={host_auth}",
                    "-E", "UTF8",
                    # C works with any encoding and needs no OS locales installed.
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            os.unlink(pwfile)
        self._check("initdb", res)
        with open(os.path.join(self.datadir, "postgresql.conf"), "a", encoding="utf-8") as f:
            f.write("\ninclude 'mlcache.conf'\n")
        if self.database not in ("postgres", "template0", "template1"):
            # Single-user mode before the first start: no client binary (psql) or
            # driver needed.  exit_on_error turns an ERROR into a non-zero exit.
            self._write_conf()
            res = self._run(
                [
                    self._tool("postgres"), "--single", "-D", self.datadir,
                    "-c", "exit_on_error=on", "postgres",
                ],
                input=f"CREATE DATABASE {_quote_ident(self.database)};\n".encode(),
            )
            self._check(f"creating database {self.database!r}", res)

    def _pg_ctl_start(self, *, last_attempt: bool) -> bool:
        assert self.datadir is not None and self.log_path is not None
        offset = _file_size(self.log_path)
        # -l is essential: without it the postmaster would inherit our stdout
        # pipe and subprocess.run would wait for it forever.
        res = self._run(
            [
                self._tool("pg_ctl"), "-D", self.datadir, "-l", self.log_path,
                "-w", "-t", str(int(self.start_timeout)), "start",
            ],
            timeout=self.start_timeout + 30,
        )
        if res.returncode != 0:
            log_text = _tail(self.log_path, offset)
            if self._requested_port is None and not last_attempt and "already in use" in log_text:
                return False
        self._check(f"pg_ctl start on port {self._port}", res, offset)
        self._pid = self._read_pid()
        return True

    def _read_pid(self) -> int:
        assert self.datadir is not None
        try:
            with open(os.path.join(self.datadir, "postmaster.pid"), encoding="utf-8") as f:
                return int(f.readline().strip())
        except (OSError, ValueError) as e:
            raise LocalServerError(f"cannot read the postmaster's pid: {e}") from None

    def _wait_ready(self) -> None:
        """Wait until the postmaster answers on TCP.

        pg_ctl -w already waited for "ready"; this checks the TCP listener the
        clients will use with an SSLRequest packet, which any PostgreSQL
        answers with one byte ('S' or 'N') -- no client library needed.
        """
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((_HOST, self.port), timeout=1) as s:
                    s.sendall(struct.pack("!ii", 8, 80877103))
                    if s.recv(1) in (b"S", b"N"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"PostgreSQL on port {self._port} does not answer on TCP "
                    f"(log {self.log_path}):\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def restart(self, mode: str = "fast") -> None:
        """pg_ctl restart: same port and data, new postmaster pid.

        ``mode`` is pg_ctl's shutdown mode: "fast" (the default) or "immediate", which kills
        the backends without a clean shutdown, as a crash would (crash recovery on start).
        """
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown pg_ctl shutdown mode {mode!r}")
        if self._pid is None or self.datadir is None or self.log_path is None:
            raise LocalServerError(f"{self!r} is not started")
        offset = _file_size(self.log_path)
        res = self._run(
            [
                self._tool("pg_ctl"), "-D", self.datadir, "-l", self.log_path,
                "-m", mode, "-w", "-t", str(int(self.start_timeout)), "restart",
            ],
            timeout=self.start_timeout + 60,
        )
        self._check("pg_ctl restart", res, offset)
        self._pid = self._read_pid()
        self._wait_ready()

    def stop(self) -> None:
        """pg_ctl stop -m fast, then remove the temp dir.  Idempotent."""
        pid, self._pid = self._pid, None
        if pid is not None and self.datadir is not None and _pid_alive(pid):
            try:
                self._run(
                    [self._tool("pg_ctl"), "-D", self.datadir, "-m", "fast", "-w", "-t", "30", "stop"],
                    timeout=60,
                )
            except LocalServerError:
                pass
            # If pg_ctl could not stop it, escalate on exactly that pid:
            # SIGQUIT is PostgreSQL's immediate shutdown, SIGKILL the last resort.
            for sig, wait in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
                if not _pid_alive(pid):
                    break
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        _rmtree(self.tmpdir)
        self.tmpdir = None
        _unregister(self)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
