"""Cross-process L1 invalidation over Redis pub/sub (the "backplane").

Every ``put``/``invalidate``/``clear`` of a cache publishes the keys it changed on the channel
``mlcache:{key_prefix}:l1``; every other cache on that prefix drops them from its L1.  The keys
of one event-loop iteration go out as one message.  A message is ``msgpack([1, origin, kind,
keys, sent_at])``: ``origin`` is a random id per cache instance (its own messages are ignored), ``kind``
``"k"`` (these keys), ``"p"`` (keys starting with these prefixes) or ``"c"`` (everything); a message also carries its wall-clock send time,
for the delay statistics.

Pub/sub is at-most-once: a message sent while a subscriber is disconnected is lost to it.  So
the subscriber is trusted only while its subscription is known alive:

* when it drops (an error, or no reply to a PING within ``DEAD_AFTER``), the owner is told
  ``on_trust(False)``: it flushes L1 and caps new L1 entries at ``UNTRUSTED_TTL``;
* once subscribed again, ``on_trust(True)``: it flushes L1 again (anything cached while deaf
  may be stale) and lifts the cap.

With Redis down for good, L1 therefore still works, with entries living at most a second; and
every L1 entry lives at most ``l1.max_ttl`` whatever happens.  docs/consistency.md has the
whole argument.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Callable, Optional

import msgpack
import redis.asyncio as aioredis

from .config import L2Config

log = logging.getLogger("mlcache.backplane")

PING_EVERY = 0.5      # seconds between health PINGs on an idle subscription
DEAD_AFTER = 1.5      # seconds without any reply before the subscription counts as dropped
UNTRUSTED_TTL = 1.0   # L1 lifetime cap while the subscription is down
RETRY_MAX = 2.0       # longest wait between resubscription attempts
POLL = 0.1            # get_message timeout: how often the loop looks at its stop flag


class Backplane:
    def __init__(
        self,
        redis_url: str,
        key_prefix: str,
        *,
        on_keys: Callable[[list[str]], None],
        on_clear: Callable[[], None],
        on_prefix: Callable[[str], None],
        on_trust: Callable[[bool], None],
        client_kwargs: Optional[dict[str, Any]] = None,
    ) -> None:
        self.channel = f"mlcache:{key_prefix}:l1"
        self.origin = os.urandom(8)
        self._url = redis_url
        self._client_kwargs = client_kwargs or {}
        self._on_keys, self._on_clear, self._on_trust = on_keys, on_clear, on_trust
        self._on_prefix = on_prefix
        self._client: Optional[aioredis.Redis] = None
        self._listener: Optional[asyncio.Task[None]] = None
        self._stop = asyncio.Event()
        self._outbox: set[str] = set()
        self._prefixes: list[str] = []
        self._clear_pending = False
        self._flush_scheduled = False
        # One publish in flight at a time (a stuck Redis must not make each change open a
        # connection of its own); changes meanwhile wait in the outbox and leave together.
        self._publisher: Optional[asyncio.Task[None]] = None
        self.trusted = False
        self.published = 0
        self.publish_errors = 0
        self.received = 0
        self.delays: list[float] = []  # seconds, the last few thousand messages
        self.drops = 0

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, wait: float = 1.0) -> None:
        """Subscribe in the background; wait up to ``wait`` seconds for the first subscription
        so that L1 starts trusted when Redis is up."""
        self._client = aioredis.Redis.from_url(
            self._url, socket_timeout=DEAD_AFTER, socket_connect_timeout=DEAD_AFTER,
            client_name="mlcache-backplane", **self._client_kwargs)
        self._listener = asyncio.create_task(self._listen(), name="mlcache-backplane")
        deadline = time.monotonic() + wait
        while not self.trusted and time.monotonic() < deadline and not self._listener.done():
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            # The loop notices the flag within POLL; redis-py is never cancelled mid-command.
            await asyncio.wait([self._listener], timeout=POLL + DEAD_AFTER)
            if not self._listener.done():
                self._listener.cancel()
        if self._publisher is not None:
            await asyncio.wait([self._publisher], timeout=DEAD_AFTER)
        if self._client is not None:
            try:
                await self._client.aclose()
            except Exception as exc:  # closing a dead connection may fail; nothing to do
                log.debug("backplane close: %s", exc)

    def stats(self) -> dict[str, Any]:
        return {"enabled": True, "trusted": self.trusted, "published": self.published,
                "publish_errors": self.publish_errors, "received": self.received, "drops": self.drops}

    # --- publishing -----------------------------------------------------------------------

    def publish_keys(self, keys: Any) -> None:
        """Announce changed keys; they leave with the others of this loop iteration."""
        self._outbox.update(keys)
        self._schedule()

    def publish_prefix(self, prefix: str) -> None:
        self._prefixes.append(prefix)
        self._schedule()

    def publish_clear(self) -> None:
        self._clear_pending = True
        self._schedule()

    def _schedule(self) -> None:
        if not self._flush_scheduled and self._publisher is None:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._publisher is not None or not (self._clear_pending or self._outbox or self._prefixes):
            return
        messages = []
        if self._clear_pending:
            self._clear_pending = False
            self._outbox.clear()
            messages.append(msgpack.packb([1, self.origin, "c", [], time.time()]))
        if self._prefixes:
            prefixes, self._prefixes = self._prefixes, []
            messages.append(msgpack.packb([1, self.origin, "p", prefixes, time.time()]))
        if self._outbox:
            keys, self._outbox = list(self._outbox), set()
            messages.append(msgpack.packb([1, self.origin, "k", keys, time.time()]))
        self._publisher = asyncio.get_running_loop().create_task(self._publish(messages))

    async def _publish(self, messages: list[bytes]) -> None:
        client = self._client
        try:
            for message in messages:
                if client is None or self._stop.is_set():
                    return
                try:
                    await client.publish(self.channel, message)
                    self.published += 1
                except Exception as exc:
                    # Lost: the subscribers' L1 entries still expire by l1.max_ttl.  Not
                    # retried: a late invalidation could overtake a newer put's announcement.
                    self.publish_errors += 1
                    log.debug("backplane publish failed: %s", exc)
        finally:
            self._publisher = None
            if self._outbox or self._clear_pending or self._prefixes:
                self._schedule()

    def open_connections(self) -> int:
        """Sockets the backplane holds open (its publishing and subscribing connections)."""
        if self._client is None:
            return 0
        pool = self._client.connection_pool
        conns = list(pool._available_connections) + list(pool._in_use_connections)
        # The subscription's connection comes from the same pool.
        return sum(1 for c in conns if c.is_connected)

    # --- subscribing ----------------------------------------------------------------------

    def _handle(self, data: Any) -> None:
        try:
            version, origin, kind, keys, sent_at = msgpack.unpackb(data, raw=False)
        except Exception:
            log.warning("backplane: ignoring a malformed message on %s", self.channel)
            return
        if version != 1 or origin == self.origin:
            return
        self.received += 1
        # Publish-to-handling delay, by the wall clocks of two processes (on one host: exact
        # enough; across hosts, skewed by their clock difference).  For stats and tests.
        delay = time.time() - float(sent_at)
        self.delays.append(delay)
        if len(self.delays) > 4096:
            del self.delays[:2048]
        if kind == "c":
            self._on_clear()
        elif kind == "k" and isinstance(keys, list):
            self._on_keys([k for k in keys if isinstance(k, str)])
        elif kind == "p" and isinstance(keys, list):
            for prefix in keys:
                if isinstance(prefix, str) and prefix:
                    self._on_prefix(prefix)

    def _set_trust(self, trusted: bool) -> None:
        if trusted != self.trusted:
            self.trusted = trusted
            if not trusted:
                self.drops += 1
            self._on_trust(trusted)

    async def _listen(self) -> None:
        wait = 0.05
        assert self._client is not None
        while not self._stop.is_set():
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await self._read(pubsub)
            except Exception as exc:
                self._set_trust(False)
                log.debug("backplane subscription lost: %s", exc)
            finally:
                try:
                    await asyncio.wait_for(pubsub.aclose(), DEAD_AFTER)  # type: ignore[no-untyped-call, unused-ignore]
                except BaseException as exc:  # a dead connection may not close politely
                    log.debug("backplane pubsub close: %s", exc)
            if self._stop.is_set():
                break
            try:
                await asyncio.wait_for(self._stop.wait(), wait)
            except asyncio.TimeoutError:
                pass
            wait = min(wait * 2, RETRY_MAX)

    async def _read(self, pubsub: Any) -> None:
        clock = time.monotonic
        heard = pinged = clock()
        while not self._stop.is_set():
            message = await pubsub.get_message(timeout=POLL)
            now = clock()
            if message is not None:
                heard = now
                kind = message.get("type")
                if kind == "subscribe":
                    self._set_trust(True)
                elif kind == "message":
                    self._handle(message.get("data"))
                continue
            if now - heard > DEAD_AFTER:
                raise ConnectionError(f"no reply on the backplane for {DEAD_AFTER} s")
            if now - pinged >= PING_EVERY:
                pinged = now
                await pubsub.ping()


def tls_kwargs(cfg: L2Config) -> dict[str, Any]:
    """redis-py's TLS arguments from the L2 settings (the backplane's client is redis-py)."""
    out: dict[str, Any] = {}
    if cfg.redis_url is not None and cfg.redis_url.startswith("rediss://"):
        for opt in ("keyfile", "certfile", "ca_certs"):
            value = getattr(cfg, f"redis_ssl_{opt}")
            if value is not None:
                out[f"ssl_{opt}"] = value
    return out
