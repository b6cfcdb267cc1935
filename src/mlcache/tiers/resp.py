"""A small asyncio Redis client for L2: RESP2 over ``asyncio.Protocol``, replies parsed by hiredis.

Why not redis-py's asyncio client for L2's commands:

- its Python layers cost ~100 µs per command on a 2-core machine (6.9K sequential GETs/s where
  ``redis-benchmark`` does 80K), which is most of an L2 hit;
- it can swallow a ``task.cancel()`` that lands mid-command, so callers had to run every call
  in a shielded task and never cancel it.

Here a command is one ``hiredis.pack_command``, one ``transport.write`` and one future.
Replies are matched to requests strictly in order (a FIFO of futures per connection), and
every reply is read whether or not anyone still waits for it.  So a caller that is cancelled
or gives up mid-command drops only its own reply: the connection stays in step, and
cancelling a caller is safe at any point (the CVE-2023-28858 desync cannot happen).

Pool: up to ``max_connections`` connections, each pipelining up to ``pipeline_depth``
commands.  A command goes to an idle connection, else behind a connection that is answering;
a new connection is opened (one at a time) only when none will do.  Callers that find every
connection full wait, at most ``socket_timeout``.  A connection that fails, is closed by the
server, or owes a reply for ``socket_timeout`` with nothing arriving, fails all its waiters
and leaves the pool.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

# (hiredis' stub types the argument as a 1-tuple; it takes a tuple of any length.)
_pack: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command
_MULTI = _pack(("MULTI",))
_EXEC = _pack(("EXEC",))
_ReplyError = hiredis.ReplyError


class RespError(Exception):
    """An error reply from Redis: ``code`` is its first word (``OOM``, ``NOSCRIPT``, ``WRONGPASS``...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = message.split(" ", 1)[0]


class ConnectionClosedError(ConnectionError):
    """The connection ended with replies still owed; every command waiting on it gets this."""


@dataclass(frozen=True)
class Address:
    """Where and how to connect, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: Optional[str] = None          # a unix socket
    tls: bool = False
    username: Optional[str] = None
    password: Optional[str] = None
    db: int = 0

    @classmethod
    def from_url(cls, url: str) -> "Address":
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("a Redis URL starts with redis://, rediss:// or unix://")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        username = unquote(parts.username) if parts.username else query.get("username")
        password = unquote(parts.password) if parts.password else query.get("password")
        db = query.get("db", "0")
        if parts.scheme == "unix":
            return cls(path=unquote(parts.path), username=username, password=password, db=int(db))
        path_db = parts.path.lstrip("/")
        return cls(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, tls=parts.scheme == "rediss",
                   username=username, password=password, db=int(path_db or db))

    def __str__(self) -> str:  # for messages: never the credentials
        return self.path if self.path else f"{self.host}:{self.port}"


def ssl_context(ca_certs: Optional[str], certfile: Optional[str], keyfile: Optional[str]) -> ssl.SSLContext:
    """Verifies the server's certificate (against ``ca_certs`` or the system's CAs) and name."""
    ctx = ssl.create_default_context(cafile=ca_certs)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


class Script:
    """A Lua script called by its SHA1 (EVALSHA), sent whole only when the server lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class Connection(asyncio.Protocol):
    """One socket: commands out in order, replies in and handed to the oldest waiter."""

    def __init__(self, pool: "Pool") -> None:
        self._pool = pool
        self._loop = pool._loop
        self._reader = hiredis.Reader()
        self._transport: Optional[asyncio.Transport] = None
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        # Commands owed a reply, a MULTI..EXEC counting once however many replies it owes: the
        # pool's measure of how busy the connection is (a 256-key transaction is one command
        # in Redis' queue, and counting its replies made the pool open connections it did not
        # need, and wait for room, under write batches: the combined bench lost a fifth).
        self.requests = 0
        self.since = 0.0        # when the last reply came, or the first owed reply was asked for
        self.closed = False
        self._watchdog: Optional[asyncio.TimerHandle] = None
        self._wbuf: Optional[list[bytes]] = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        # Stands in the reply queue for replies nobody wants (a MULTI's +OK and +QUEUED):
        # already done, so data_received drops the reply in step and fail() passes it by.
        self._discard: asyncio.Future[Any] = self._loop.create_future()
        self._discard.set_result(None)

    @property
    def is_connected(self) -> bool:
        return not self.closed

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiters = self.waiters
        got = 0
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError:
                self.fail(lambda: ConnectionClosedError(f"Redis at {self._pool.address}: bad reply, connection dropped"))
                return
            if reply is False:
                break
            if not waiters:  # a reply nobody asked for: the stream cannot be trusted
                self.fail(lambda: ConnectionClosedError(f"Redis at {self._pool.address}: unexpected reply"))
                return
            got += 1
            future = waiters.popleft()
            if future is not self._discard:
                self.requests -= 1
            if future.done():
                continue  # its caller was cancelled or gave up: the reply is dropped, in step
            if reply.__class__ is _ReplyError:
                future.set_exception(RespError(str(reply)))
            else:
                future.set_result(reply)
        if got:
            self.since = self._loop.time()
            if self._pool._room is not None:
                self._pool._wake()

    def eof_received(self) -> bool:
        # The server closed its side: fail the waiters now, not when the transport gets round
        # to connection_lost, and take no more commands meanwhile.
        self.fail(lambda: ConnectionClosedError(f"Redis at {self._pool.address} closed the connection"))
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.fail(lambda: ConnectionClosedError(f"Redis at {self._pool.address} closed the connection"))
        if not self._lost.done():
            self._lost.set_result(None)

    # -- commands ----------------------------------------------------------------------------

    def request(self, packed: bytes, replies: int = 1) -> asyncio.Future[Any]:
        """Send one packed command; the future gets its reply (or RespError, or the
        connection's failure).  Nothing awaits between write and enqueue, so replies and
        futures cannot get out of step, whatever the callers do.  ``packed`` may hold several
        commands that owe ``replies`` replies in all: the future gets the last one."""
        if self.closed:
            raise ConnectionClosedError(f"Redis at {self._pool.address}: connection already closed")
        future = self._loop.create_future()
        if not self.waiters:
            # Idle: straight out, no added step for a lone caller.
            self.since = self._loop.time()
            if self._watchdog is None:
                self._arm(self._pool.socket_timeout)
            self._transport.write(packed)  # type: ignore[union-attr]
        elif self._wbuf is None:
            # Replies are owed anyway: hold the commands of this loop iteration and send them
            # in one write (one syscall for many callers).
            self._wbuf = [packed]
            self._loop.call_soon(self._flush)
        else:
            self._wbuf.append(packed)
        for _ in range(replies - 1):
            self.waiters.append(self._discard)
        self.waiters.append(future)
        self.requests += 1
        return future

    def _flush(self) -> None:
        buf, self._wbuf = self._wbuf, None
        if buf and not self.closed:
            self._transport.write(b"".join(buf))  # type: ignore[union-attr]

    def _arm(self, delay: float) -> None:
        self._watchdog = self._loop.call_later(delay, self._check)

    def _check(self) -> None:
        # One timer per connection, re-armed rather than one per command: a command costs no
        # timer, and a connection owing a reply with nothing arriving for socket_timeout is
        # dead (a blackholed stream never recovers: a reply went missing).
        self._watchdog = None
        if not self.waiters or self.closed:
            return
        timeout = self._pool.socket_timeout
        quiet = self._loop.time() - self.since
        if quiet < timeout:
            self._arm(timeout - quiet)
            return
        self.fail(lambda: TimeoutError(f"Redis at {self._pool.address}: no reply within {timeout:g} s"))

    def fail(self, make_error: Callable[[], BaseException]) -> None:
        """Close for good: every waiter gets its own ``make_error()``; the pool forgets us."""
        if self.closed:
            return
        self.closed = True
        self.requests = 0
        self._pool._discard(self)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.waiters:
            future = self.waiters.popleft()
            if not future.done():
                future.set_exception(make_error())
        if self._transport is not None:
            self._transport.abort()

    async def aclose(self) -> None:
        self.fail(lambda: ConnectionClosedError("the Redis pool is closed"))
        if self._transport is not None:
            await asyncio.wait([self._lost], timeout=1.0)


class Pool:
    """Connections to one Redis server.

    >>> pool = Pool("redis://:secret@localhost:6379/0")      # doctest: +SKIP
    >>> await pool.execute("SET", "k", b"v", "PX", 1000)     # doctest: +SKIP
    b'OK'
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 50,
        socket_timeout: float = 1.0,
        connect_timeout: float = 1.0,
        ssl_keyfile: Optional[str] = None,
        ssl_certfile: Optional[str] = None,
        ssl_ca_certs: Optional[str] = None,
        client_name: Optional[str] = "mlcache",
        pipeline_depth: int = 32,
    ) -> None:
        self.address = Address.from_url(url)
        self.max_connections = max_connections
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.pipeline_depth = pipeline_depth
        # Queue behind a busy connection only while it answers within this; else open another
        # (a connection stuck on a slow or lost reply must not take new commands with it).
        self.stall = min(0.02, socket_timeout / 10)
        self._ssl = ssl_context(ssl_ca_certs, ssl_certfile, ssl_keyfile) if self.address.tls else None
        self._handshake = self._handshake_commands(client_name)
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # bound on first use
        self.connections: list[Connection] = []
        self._opening: Optional[asyncio.Task[Connection]] = None
        self._room: Optional[asyncio.Future[None]] = None  # set when a full pool frees up
        self.closed = False

    def __repr__(self) -> str:
        return f"<mlcache.tiers.resp.Pool {self.address} db={self.address.db} {len(self.connections)} connections>"

    def _handshake_commands(self, client_name: Optional[str]) -> list[bytes]:
        a = self.address
        out = []
        if a.password is not None:
            out.append(_pack(("AUTH", a.username, a.password) if a.username else ("AUTH", a.password)))
        if a.db:
            out.append(_pack(("SELECT", a.db)))
        if client_name:
            out.append(_pack(("CLIENT", "SETNAME", client_name)))
        return out

    # -- commands ----------------------------------------------------------------------------

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply; an error reply raises RespError."""
        return await self._request(_pack(args))

    async def transaction(self, *commands: tuple[Any, ...]) -> Any:
        """``MULTI``, the commands, ``EXEC`` in one write; returns EXEC's reply (the list of
        the commands' replies).  A command the server refuses to queue makes EXEC fail with
        EXECABORT, which raises RespError like any error reply."""
        packed = b"".join([_MULTI, *(_pack(c) for c in commands), _EXEC])
        return await self._request(packed, len(commands) + 2)

    async def _request(self, packed: bytes, replies: int = 1) -> Any:
        conn = self._pick()
        if conn is None:
            conn = await self._acquire()
        return await conn.request(packed, replies)

    async def evalsha(self, script: Script, keys: Sequence[Any], args: Sequence[Any] = ()) -> Any:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except RespError as exc:
            if exc.code != "NOSCRIPT":
                raise
        # The server lost its script cache (a restart, SCRIPT FLUSH): EVAL also reloads it.
        return await self.execute("EVAL", script.source, len(keys), *keys, *args)

    # -- connections -------------------------------------------------------------------------

    def _pick(self) -> Optional[Connection]:
        """An idle connection, else the least busy one that is answering and has room."""
        best: Optional[Connection] = None
        best_n = self.pipeline_depth
        for conn in self.connections:
            n = conn.requests
            if n == 0:
                return conn
            if n < best_n:
                best, best_n = conn, n
        if best is not None and (self._loop.time() - best.since < self.stall
                                 or len(self.connections) >= self.max_connections):
            return best
        return None

    async def _acquire(self) -> Connection:
        """Slow path: open a connection (one at a time, shared by everyone who needs one),
        or wait for room, bounded by ``socket_timeout``."""
        if self.closed:
            raise ConnectionClosedError("the Redis pool is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        deadline = self._loop.time() + max(self.socket_timeout, self.connect_timeout)
        while True:
            conn = self._pick()
            if conn is not None:
                return conn
            left = deadline - self._loop.time()
            if left <= 0:
                raise TimeoutError(f"Redis at {self.address}: no connection free within {self.socket_timeout:g} s")
            if len(self.connections) < self.max_connections:
                if self._opening is None:
                    self._opening = self._loop.create_task(self._open())
                    self._opening.add_done_callback(self._opened)
                # Shielded: a caller that gives up does not abort a connect others wait for.
                # Then pick again: the new connection takes pipeline_depth of its waiters.
                await asyncio.wait_for(asyncio.shield(self._opening), left)
                continue
            # Full: every connection has pipeline_depth commands owed.  Wait for a reply.
            if self._room is None:
                self._room = self._loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._room), left)
            except asyncio.TimeoutError:
                pass  # the loop's deadline check raises

    def _opened(self, task: asyncio.Task[Connection]) -> None:
        self._opening = None
        if not task.cancelled():
            task.exception()  # retrieved: every caller waiting for it may have gone

    def _wake(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    def _discard(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)
            self._wake()  # room for a new connection

    async def _open(self) -> Connection:
        conn = Connection(self)
        handshake: list[asyncio.Future[Any]] = []
        try:
            await asyncio.wait_for(self._setup(conn, handshake), self.connect_timeout)
        except BaseException:
            conn.fail(lambda: ConnectionClosedError("connection setup failed"))
            for future in handshake:  # the replies after the first failure: nobody reads them
                if not future.cancelled():
                    future.exception()
            raise
        if self.closed:
            await conn.aclose()
            raise ConnectionClosedError("the Redis pool is closed")
        self.connections.append(conn)
        return conn

    async def _setup(self, conn: Connection, handshake: list[asyncio.Future[Any]]) -> None:
        a = self.address
        if a.path:
            await self._loop.create_unix_connection(lambda: conn, a.path)
        else:
            await self._loop.create_connection(lambda: conn, a.host, a.port, ssl=self._ssl,
                                               server_hostname=a.host if self._ssl else None)
        # AUTH, SELECT and CLIENT SETNAME in one write; each reply checked in turn.
        handshake.extend(conn.request(cmd) for cmd in self._handshake)
        for future in handshake:
            await future

    def stats(self) -> dict[str, int]:
        """Connections open, and those owing replies (``in_use``)."""
        return {"connected": len(self.connections), "in_use": sum(1 for c in self.connections if c.waiters)}

    async def aclose(self) -> None:
        """Close every connection; commands still waiting get ConnectionClosedError."""
        self.closed = True
        if self._opening is not None:
            self._opening.cancel()
        for conn in list(self.connections):
            await conn.aclose()
