"""``cache_result``: cache an async function's results in a MultiLevelCache.

    @cache_result(cache, ttl_seconds=1800, cache_level="L2")
    async def expensive_operation(param1, param2): ...

The key is the function's module and qualified name plus a digest of its bound arguments
(defaults applied, so ``f(1)`` and ``f(1, b=2)`` with ``b=2`` the default share a key), made
with the same msgpack rules as values: stable across processes and Python runs, never
``hash()``.  Calls go through :meth:`MultiLevelCache.get_or_set` (loading.py), so the
function runs once per key however many callers wait (single-flight), and the loading
options -- ``lease``, ``early_refresh``, ``jitter``, ``max_stale``, ``load_timeout``... --
mean the same here.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, ParamSpec, TypeVar

from .errors import SerializationError
from .loading import load_options
from .serialization import _pack
from .validation import DEFAULT_TTL, check_level

if TYPE_CHECKING:
    from .cache import MultiLevelCache

P = ParamSpec("P")
R = TypeVar("R")


def cache_result(
    cache: "MultiLevelCache",
    ttl_seconds: Any = DEFAULT_TTL,
    cache_level: str = "L3",
    *,
    key_builder: Optional[Callable[..., str]] = None,
    **load_opts: Any,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an ``async def`` so its results are cached under a key built from its arguments.

    ``key_builder(*args, **kwargs) -> str`` replaces the default key (use it when arguments
    are not msgpack-serializable, e.g. ``self``).  A result that cannot be cached raises
    SerializationError rather than silently not caching.  Further keyword arguments are
    :meth:`MultiLevelCache.get_or_set`'s options, e.g. ``max_stale=60, lease=True``.
    """
    check_level(cache_level, "cache_level")
    opts = load_options(ttl_seconds, cache_level, cache.config.default_ttl, **load_opts)

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"cache_result decorates async functions; {fn.__qualname__} is not one")
        signature = inspect.signature(fn)
        name = f"{fn.__module__}.{fn.__qualname__}"

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
            result: R = await cache.loading.get_or_set(key, functools.partial(fn, *args, **kwargs), opts)
            return result

        return wrapper

    return decorate
