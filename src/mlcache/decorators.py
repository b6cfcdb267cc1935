"""``cache_result``: cache an async function's results in a MultiLevelCache.

    @cache_result(cache, ttl_seconds=1800, cache_level="L2")
    async def expensive_operation(param1, param2): ...

The key is the function's module and qualified name plus a digest of its bound arguments
(defaults applied, so ``f(1)`` and ``f(1, b=2)`` with ``b=2`` the default share a key), made
with the same msgpack rules as values: stable across processes and Python runs, never
``hash()``.  Concurrent calls with the same arguments in one process run the function once
and share its result (single-flight).
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, ParamSpec, TypeVar

from .errors import SerializationError
from .serialization import _pack
from .validation import DEFAULT_TTL, check_level, check_ttl

if TYPE_CHECKING:
    from .cache import MultiLevelCache

P = ParamSpec("P")
R = TypeVar("R")
_MISS: Any = object()


def cache_result(
    cache: "MultiLevelCache",
    ttl_seconds: Any = DEFAULT_TTL,
    cache_level: str = "L3",
    *,
    key_builder: Optional[Callable[..., str]] = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an ``async def`` so its results are cached under a key built from its arguments.

    ``key_builder(*args, **kwargs) -> str`` replaces the default key (use it when arguments
    are not msgpack-serializable, e.g. ``self``).  A result that cannot be cached raises
    SerializationError rather than silently not caching.
    """
    depth = check_level(cache_level, "cache_level")
    check_ttl(ttl_seconds, None)

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"cache_result decorates async functions; {fn.__qualname__} is not one")
        signature = inspect.signature(fn)
        name = f"{fn.__module__}.{fn.__qualname__}"
        pending: dict[str, asyncio.Future[Any]] = {}
        level = ("L1", "L2", "L3")[depth - 1]

        def make_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            if key_builder is not None:
                return key_builder(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            try:
                packed = _pack(list(bound.arguments.items()))
            except (TypeError, ValueError, OverflowError) as exc:
                raise SerializationError(
                    f"arguments of {name} cannot form a cache key ({exc}); pass key_builder="
                ) from None
            return f"mlcache.fn:{name}:{hashlib.blake2b(packed, digest_size=16).hexdigest()}"

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            key = make_key(args, kwargs)
            while True:
                value = await cache.get(key, _MISS)
                if value is not _MISS:
                    return value  # type: ignore[no-any-return]
                shared = pending.get(key)
                if shared is None:
                    break
                try:
                    # shield: a waiter being cancelled must not cancel the shared call.
                    result: R = await asyncio.shield(shared)
                    return result
                except asyncio.CancelledError:
                    if not shared.cancelled():
                        raise  # this waiter itself was cancelled
                    # The leader was cancelled, not us: look again and perhaps lead.
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            pending[key] = future
            try:
                result = await fn(*args, **kwargs)
                await cache.put(key, result, ttl_seconds=ttl_seconds, level=level)
            except asyncio.CancelledError:
                future.cancel()
                raise
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters may be none
                raise
            else:
                future.set_result(result)
                return result
            finally:
                if pending.get(key) is future:
                    del pending[key]

        return wrapper

    return decorate
