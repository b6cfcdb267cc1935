"""A short Redis lease: which process runs a key's loader when several want to at once.

``SET {prefix}!lease:{key} token NX PX ttl`` takes the lease; a compare-and-delete script
releases it, so a holder whose lease already expired (and was taken by another process) can
never release the newcomer's.  A holder that dies simply lets the lease expire.

The lease rides on L2's own RESP pool (one set of sockets, one failure behaviour) and
answers ``None`` on any failure: a lease is an optimisation, so an unreachable Redis means
"no lease", and the caller falls back to per-process single-flight (fail-open).
"""
from __future__ import annotations

import asyncio
import math
import os
from typing import TYPE_CHECKING, Any, Optional

from .tiers.resp import Script

if TYPE_CHECKING:
    from .levels import SharedLevel

# Delete the lease only if it still holds our token (Redis' recommended unlock).
_RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
""")


def new_token() -> str:
    return os.urandom(16).hex()


class RedisLease:
    def __init__(self, level: "SharedLevel") -> None:
        tier: Any = level.tier
        self._pool = tier.pool
        self._breaker = level.breaker
        self._timeout = level.read_timeout
        # "!" rather than ":" keeps leases out of the cache's own "{prefix}:*" key space, so
        # count() and SCAN-based clear() of the values never see them.
        self._prefix = tier.config.key_prefix + "!lease:"
        self.errors = 0

    def _usable(self) -> bool:
        # An open breaker means L2 is known down: do not spend a deadline finding out again.
        return self._breaker.state != "open"

    async def acquire(self, key: str, token: str, ttl: float) -> Optional[bool]:
        """True if we now hold the lease, False if another process does, None if unknown."""
        if not self._usable():
            return None
        try:
            reply = await asyncio.wait_for(
                self._pool.execute("SET", self._prefix + key, token, "NX", "PX", max(1, math.ceil(ttl * 1000))),
                self._timeout,
            )
        except Exception:  # CancelledError is a BaseException and passes
            self.errors += 1
            return None
        return reply is not None

    async def release(self, key: str, token: str) -> None:
        try:
            await asyncio.wait_for(self._pool.evalsha(_RELEASE, [self._prefix + key], [token]), self._timeout)
        except Exception:
            self.errors += 1  # not fatal: the lease expires by itself
