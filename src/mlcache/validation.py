"""Checks on keys, TTLs and level names, made once at the public API.

Every level agrees on what is legal because the strictest rule is applied here, before any
level is touched: PostgreSQL ``text`` cannot hold NUL, Redis and PostgreSQL both want valid
UTF-8, and a key's byte length is bounded so an index entry stays small.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

from . import keys
from .config import MAX_TTL_SECONDS

MAX_KEY_BYTES = 1024
LEVELS = ("L1", "L2", "L3")


class _Default:
    """Marks "use the configured default TTL" apart from an explicit ``None`` (no expiry)."""

    _instance: Optional["_Default"] = None

    def __new__(cls) -> "_Default":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT_TTL"


DEFAULT_TTL: Any = _Default()


def _check_key(key: Any) -> str:
    """Return ``key`` if it is a legal cache key; raise TypeError/ValueError saying why not.
    (The full check: ``check_key`` below decides plain ASCII keys in C and sends the rest here.)"""
    if type(key) is not str:
        raise TypeError(f"cache key must be a str, not {type(key).__name__}")
    if not key:
        raise ValueError("cache key must not be empty")
    # Cheap pre-check first: only keys that might be too long or odd pay for encoding.
    if "\x00" in key:
        raise ValueError(f"cache key {_show(key)} contains a NUL character")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"cache key {_show(key)} is not valid UTF-8 (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise ValueError(f"cache key {_show(key)} is {size} bytes; the limit is {MAX_KEY_BYTES}")
    return key


keys.configure(MAX_KEY_BYTES, _check_key)
# Once per L1 miss, so compiled (see keys.py); the same answers and errors as _check_key.
check_key = keys.check_key if keys.COMPILED else _check_key


def check_tags(tags: Any) -> tuple[str, ...]:
    """Tags follow the key rules (they are stored beside keys in both shared levels)."""
    if tags is None:
        return ()
    if isinstance(tags, (str, bytes)):
        raise TypeError("tags must be an iterable of str, not a single str")
    out = []
    for tag in tags:
        if type(tag) is not str:
            raise TypeError(f"tag must be a str, not {type(tag).__name__}")
        try:
            check_key(tag)
        except ValueError as exc:
            raise ValueError(str(exc).replace("cache key", "tag", 1)) from None
        out.append(tag)
    return tuple(dict.fromkeys(out))


def check_prefix(prefix: Any) -> str:
    """A key prefix for invalidate_prefix: a non-empty str, taken literally."""
    if type(prefix) is not str:
        raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
    try:
        return check_key(prefix)
    except ValueError as exc:
        raise ValueError(str(exc).replace("cache key", "prefix", 1)) from None


def check_keys(keys: Iterable[Any]) -> list[str]:
    if isinstance(keys, (str, bytes)):
        raise TypeError("keys must be an iterable of str, not a single str")
    return [check_key(k) for k in keys]


def check_ttl(ttl: Any, default: Optional[float], name: str = "ttl_seconds") -> Optional[float]:
    """Normalise a TTL to float seconds or None (no expiry)."""
    if ttl is DEFAULT_TTL:
        return default
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"{name} must be an int or float of seconds, or None")
    f = float(ttl)
    if math.isnan(f) or f <= 0 or f > MAX_TTL_SECONDS:
        raise ValueError(f"{name} must be > 0 and at most {MAX_TTL_SECONDS} seconds")
    return f


def check_level(level: Any, name: str = "level") -> int:
    """Return the 1-based depth of a level name: "L1" -> 1, "L3" -> 3."""
    if level not in LEVELS:
        raise ValueError(f"{name} must be one of {', '.join(LEVELS)}")
    return LEVELS.index(level) + 1


def _show(key: str) -> str:
    # Name the key in errors, but keep the message bounded and printable.
    shown = key if len(key) <= 64 else key[:61] + "..."
    return repr(shown)
