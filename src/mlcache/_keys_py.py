"""The pure twin of ``mlcache._keys``: same answers, used when the extension is not built."""
from __future__ import annotations

from typing import Any, Callable

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK = (1 << 64) - 1


def configure(max_key_bytes: int, explain: Callable[[Any], str]) -> None:
    # The pure build has no fast path to configure: check_key is the Python check itself.
    return None


def check_key(key: Any) -> str:
    from .validation import _check_key

    return _check_key(key)


def key_digest(key: str) -> bytes:
    h = FNV_OFFSET
    for byte in key.encode("utf-8"):
        h = ((h ^ byte) * FNV_PRIME) & MASK
    return h.to_bytes(8, "little")


def envelope_matches(data: bytes, key: str, prefix: bytes) -> bool:
    return len(data) >= 11 and data[:3] == prefix and data[3:11] == key_digest(key)
