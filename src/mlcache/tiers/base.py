"""The Tier protocol every shared level implements, and the exception boundary."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Iterator, NamedTuple, Optional, Protocol, Sequence

from ..errors import TierError, TierTimeoutError, TierUnavailableError


class Entry(NamedTuple):
    """What a tier returns on a hit: the stored bytes and the seconds they have left to live."""

    data: bytes
    ttl: Optional[float]  # None: no expiry


class Tier(Protocol):
    """A shared level.  Every method raises only :class:`TierError` subclasses (or CancelledError)."""

    name: str

    async def start(self) -> None: ...
    async def get(self, key: str) -> Optional[Entry]: ...
    async def set(self, key: str, data: bytes, ttl: Optional[float]) -> None: ...
    async def delete(self, key: str) -> bool: ...
    async def get_many(self, keys: Sequence[str]) -> list[Optional[Entry]]: ...
    async def set_many(self, items: Sequence[tuple[str, bytes, Optional[float]]]) -> None: ...
    async def delete_many(self, keys: Sequence[str]) -> int: ...
    async def clear(self) -> int: ...
    async def count(self) -> int: ...
    async def size_bytes(self) -> int: ...
    async def close(self) -> None: ...
    # Groups (docs/consistency.md): tags kept beside the values, and literal-prefix deletes.
    async def tag_many(self, pairs: Sequence[tuple[str, str]], ttl: Optional[float]) -> None: ...
    async def keys_for_tag(self, tag: str) -> list[str]: ...
    async def untag(self, tag: str, keys: Sequence[str]) -> None: ...
    async def delete_prefix(self, prefix: str) -> int: ...


def mapped(level: str, action: str, exc: Exception) -> TierError:
    """The TierError that ``map_exceptions`` turns ``exc`` into, for hot paths that catch
    inline (entering a generator-based context manager costs about a microsecond)."""
    if isinstance(exc, TierError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return TierTimeoutError(level, f"{action} timed out")
    name = type(exc).__name__
    if "Timeout" in name:
        return TierTimeoutError(level, f"{action} timed out ({name})")
    return TierUnavailableError(level, f"{action} failed ({name})")


@contextlib.contextmanager
def map_exceptions(level: str, action: str) -> Iterator[None]:
    """Turn any driver exception into mlcache's own, so none escapes the package.

    Every ``Exception`` is caught, not only the drivers' documented ones: a driver can leak
    OSError, ssl errors or internal errors during a server restart.  CancelledError is a
    BaseException and passes through untouched.
    """
    try:
        yield
    except TierError:
        raise
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise TierTimeoutError(level, f"{action} timed out") from exc
    except Exception as exc:
        name = type(exc).__name__
        if "Timeout" in name:
            raise TierTimeoutError(level, f"{action} timed out ({name})") from exc
        raise TierUnavailableError(level, f"{action} failed ({name})") from exc
