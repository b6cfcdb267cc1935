"""The bytes L2 and L3 hold: msgpack inside a small versioned envelope.  Never pickle.

Envelope layout (11 header bytes, then the payload)::

    b"ml"  version(1 byte)  digest(key)(8 bytes)  msgpack(value)

The key digest lets a reader reject bytes that were stored under another key (a shared
Redis or a copied row must not hand one key's value to another).  The version byte lets a
later format live beside this one: version 2 (written now) digests with FNV-1a 64 (see
_keys.pyx), version 1 with blake2b-64, twenty times slower per read; both are read.

Only values that come back *equal* are accepted, checked at ``put`` before any level is
written: None, bool, int (64-bit), float, str, bytes, list, tuple, dict with str (or bytes)
keys, and timezone-aware ``datetime`` (it comes back in UTC, equal to the original);
``bytearray`` and ``memoryview`` come back as (equal) ``bytes``.  Sets,
arbitrary objects, subclasses of the built-in types (they would come back as the base type),
naive datetimes (their meaning depends on the reader's zone), dicts with other keys, nesting
deeper than msgpack can read back, and payloads over ``max_value_bytes`` raise
:class:`~mlcache.errors.SerializationError`.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any

import msgpack

from .errors import SerializationError
from .keys import envelope_matches, key_digest

MAGIC = b"ml"
VERSION = 2
HEADER_SIZE = len(MAGIC) + 1 + 8
_PREFIX = MAGIC + bytes([VERSION])
_PREFIX_V1 = MAGIC + b"\x01"
_EXT_TUPLE = 1


_blake2b = hashlib.blake2b


def _digest_v1(key: str) -> bytes:
    return _blake2b(key.encode(), digest_size=8).digest()


def _default(obj: Any) -> Any:
    # strict_types sends every non-exact type here, so subclasses of str/int/dict are refused
    # instead of silently coming back as their base type.
    if type(obj) is tuple:
        return msgpack.ExtType(_EXT_TUPLE, _pack(list(obj)))
    if isinstance(obj, _dt.datetime) and obj.tzinfo is None:
        raise TypeError("naive datetime (give it a tzinfo)")
    raise TypeError(f"type {type(obj).__name__} is not supported")


_PACK_OPTIONS: dict[str, Any] = {"use_bin_type": True, "strict_types": True, "datetime": True, "default": _default}


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, **_PACK_OPTIONS)
    return packed


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_TUPLE:
        return tuple(_unpack(data))
    raise ValueError(f"unknown msgpack extension type {code}")


_unpackb = msgpack.unpackb


def _unpack(payload: bytes) -> Any:
    # raw=False and strict_map_key=True are unpackb's defaults, and so are its size limits:
    # every max_*_len is len(payload), the tightest bound any real value meets (a str or bin
    # of n bytes, an array of n items, a map of n pairs all take at least n bytes).  Callers
    # have already held the payload to max_value_bytes.  Passing the eight keywords cost
    # ~70 ns of the ~250 ns an L2 hit spent here.
    return _unpackb(payload, timestamp=3, ext_hook=_ext_hook)


class Serializer:
    """Encodes values for one cache: the size limit is the cache's ``max_value_bytes``."""

    __slots__ = ("max_value_bytes", "_packer")

    def __init__(self, max_value_bytes: int) -> None:
        self.max_value_bytes = max_value_bytes
        # One Packer per cache: msgpack.packb builds a Packer per call, which was 0.56 of the
        # 0.70 us a 100-byte value took to pack.  A cache lives on one event loop, so one
        # thread; _default packs nested tuples with a Packer of their own, and a Packer
        # empties its buffer when a pack fails, so a refused value leaves nothing behind.
        self._packer = msgpack.Packer(**_PACK_OPTIONS)

    def dumps(self, key: str, value: Any) -> bytes:
        """Return the envelope for ``value`` stored under ``key``, or raise SerializationError."""
        try:
            payload: bytes = self._packer.pack(value)
            if len(payload) > self.max_value_bytes:
                raise SerializationError(
                    f"value for key {key!r} is {len(payload)} bytes serialized; "
                    f"the limit (max_value_bytes) is {self.max_value_bytes}"
                )
            # Reading it back is the honest test of "comes back equal": it catches dicts with
            # non-str keys and nesting msgpack cannot read, whatever the writer accepted.
            _unpack(payload)
        except SerializationError:
            raise
        except (TypeError, ValueError, OverflowError, RecursionError, msgpack.StackError) as exc:
            raise SerializationError(f"value for key {key!r} cannot be cached: {_reason(exc)}") from None
        return _PREFIX + key_digest(key) + payload

    def loads(self, key: str, data: bytes) -> Any:
        """Decode an envelope read for ``key``; SerializationError if it is not ours or not intact."""
        if not envelope_matches(data, key, _PREFIX):
            _check_header(key, data)  # a version 1 envelope, or say what is wrong
        if len(data) - HEADER_SIZE > self.max_value_bytes:
            raise SerializationError(f"stored bytes for key {key!r} exceed max_value_bytes")
        try:
            return _unpackb(data[HEADER_SIZE:], timestamp=3, ext_hook=_ext_hook)  # = _unpack, inlined
        except Exception as exc:  # msgpack raises many types on hostile input; all mean "corrupt"
            raise SerializationError(f"stored bytes for key {key!r} are corrupt: {type(exc).__name__}") from None


def _check_header(key: str, data: bytes) -> None:
    """Accept a version 1 envelope of ``key``; raise SerializationError for anything else."""
    if len(data) < HEADER_SIZE or data[:3] not in (_PREFIX, _PREFIX_V1):
        raise SerializationError(f"stored bytes for key {key!r} are not an mlcache envelope")
    digest = key_digest(key) if data[:3] == _PREFIX else _digest_v1(key)
    if data[3:HEADER_SIZE] != digest:
        raise SerializationError(f"stored bytes for key {key!r} belong to another key")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (RecursionError, msgpack.StackError)) or "recursion" in str(exc):
        return "nested too deeply"
    if isinstance(exc, OverflowError):
        return "int outside the 64-bit range"
    if isinstance(exc, UnicodeError):
        return "str is not valid UTF-8"
    if "map key" in str(exc):
        return "dict keys must be str"
    if isinstance(exc, TypeError) and str(exc).startswith(("type ", "naive")):
        return str(exc)
    return type(exc).__name__
