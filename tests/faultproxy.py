"""A small asyncio TCP proxy on 127.0.0.1 that breaks the network in front of a real server.

    proxy = await FaultProxy.start(server.port)      # listens on a free loopback port
    url = f"redis://127.0.0.1:{proxy.port}/0"
    proxy.latency(0.02)      # every chunk, both ways, arrives 20 ms late (not cumulative)
    proxy.blackhole()        # connections are accepted and read, nothing is ever answered
    proxy.reset()            # open connections get an RST; new ones are reset on accept
    await proxy.refuse()     # stop listening (connects refused); open connections are closed
    await proxy.pass_through()                       # heal: forward everything again
    await proxy.close()

A connection that lost bytes to a blackhole stays black after healing: its byte stream is
broken for good (a reply went missing), exactly what a driver must detect and discard.  The
proxy counts the connections it has open, an outside view of the client's pool.

Loopback only; no third-party code, so it cannot be mistaken for the servers it stands in front of.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Optional

HOST = "127.0.0.1"
PASS, LATENCY, BLACKHOLE, RESET, REFUSE = "pass", "latency", "blackhole", "reset", "refuse"
_CHUNK = 65536


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN: SO_LINGER on with a zero timeout."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class _Link:
    """One client connection and its upstream connection, pumped both ways."""

    def __init__(self, proxy: "FaultProxy", client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client_r, self.client_w = client_r, client_w
        self.up_w: Optional[asyncio.StreamWriter] = None
        self.black = False  # lost bytes once: black for good
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        proxy = self.proxy
        if proxy.mode == RESET:
            _rst(self.client_w)
            return
        if proxy.mode == BLACKHOLE:
            self.black = True
        else:
            try:
                up_r, self.up_w = await asyncio.open_connection(proxy.target_host, proxy.target_port)
            except OSError:
                _rst(self.client_w)  # the server is not there: as the server's kernel would
                return
            self.tasks.append(asyncio.create_task(self._pump(up_r, self.client_w)))
        self.tasks.append(asyncio.create_task(self._pump(self.client_r, self.up_w)))
        try:
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: Optional[asyncio.StreamWriter]) -> None:
        # Chunks are stamped when read and delivered at stamp + latency by a second task, so
        # latency delays each chunk once instead of adding up along a pipelined stream.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(queue, writer))
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if self.black or self.proxy.mode == BLACKHOLE:
                    self.black = True
                    continue  # read and dropped: never forwarded, never answered
                queue.put_nowait((time.monotonic() + self.proxy.delay, data))
        except (ConnectionError, OSError):
            pass
        finally:
            deliver.cancel()
            await asyncio.gather(deliver, return_exceptions=True)

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes]], writer: Optional[asyncio.StreamWriter]) -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.black or writer is None:
                continue
            writer.write(data)
            await writer.drain()

    def close(self, *, rst: bool = False) -> None:
        for task in self.tasks:
            task.cancel()
        for w in (self.client_w, self.up_w):
            if w is None:
                continue
            if rst:
                _rst(w)
            else:
                w.close()
        self.proxy._links.discard(self)


class FaultProxy:
    def __init__(self, target_port: int, *, target_host: str = HOST) -> None:
        self.target_host, self.target_port = target_host, target_port
        self.mode = PASS
        self.delay = 0.0
        self.port = 0
        self.accepted = 0
        self._server: Optional[asyncio.base_events.Server] = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, target_port: int, *, target_host: str = HOST) -> "FaultProxy":
        proxy = cls(target_port, target_host=target_host)
        await proxy._listen()
        return proxy

    @classmethod
    async def in_front_of(cls, url: str) -> "FaultProxy":
        """A proxy to the loopback server of ``url`` (redis://host:port/db, postgresql://...@host:port/db)."""
        return await cls.start(int(url.rsplit(":", 1)[1].split("/")[0]))

    @property
    def open_connections(self) -> int:
        """Client connections the proxy holds open now (what the client's pools really hold)."""
        return len(self._links)

    def url(self, scheme: str, rest: str = "") -> str:
        return f"{scheme}://{rest}{HOST}:{self.port}"

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(self, reader, writer)
        self._links.add(link)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await link.run()
        finally:
            self._links.discard(link)
            self._handlers.discard(task)

    # --- modes, switchable at any time ----------------------------------------------------

    async def pass_through(self) -> None:
        """Heal: forward everything, no delay, listening again if it had stopped."""
        self.mode, self.delay = PASS, 0.0
        if self._server is None:
            await self._listen()

    def latency(self, seconds: float) -> None:
        self.mode, self.delay = LATENCY, seconds

    def blackhole(self) -> None:
        self.mode = BLACKHOLE

    def reset(self) -> None:
        """RST every open connection; connections made while in this mode are reset at once."""
        self.mode = RESET
        for link in list(self._links):
            link.close(rst=True)

    async def refuse(self) -> None:
        """Stop listening, so connects are refused, and close the open connections (FIN), as
        the kernel does for a server process that died."""
        self.mode = REFUSE
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.close(rst=True)
        # The handlers end once their links are closed; cancelling them instead would make
        # asyncio's stream callback log the CancelledError as an error (Python 3.11).
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5)
