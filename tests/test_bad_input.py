"""Every bad input raises the named error before any level is touched."""
from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from mlcache import MultiLevelCache, SerializationError, _keys_py, keys, validation

BAD_KEYS = [
    (123, TypeError, "str"),
    (b"bytes", TypeError, "str"),
    (None, TypeError, "str"),
    ("", ValueError, "empty"),
    ("a\x00b", ValueError, "NUL"),
    ("bad\ud800", ValueError, "UTF-8"),
    ("x" * 1025, ValueError, "1024"),
    ("é" * 513, ValueError, "1026 bytes"),
]
BAD_TTLS = [
    (0, ValueError),
    (-1, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (10 * 365 * 24 * 3600 + 1, ValueError),
    (True, TypeError),
    ("60", TypeError),
]


class Obj:
    pass


def nested(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth):
        node.append([])
        node = node[0]
    return root


BAD_VALUES = [
    ({1, 2}, "set"),
    (Obj(), "Obj"),
    ({1: "a"}, "str"),
    (dt.datetime(2024, 1, 1), "naive"),
    (nested(2000), "deep"),
    ("x" * (8 * 1024 * 1024 + 1), "limit"),
    (2**64, "64-bit"),
    ({"a": {"b": frozenset()}}, "frozenset"),
]


async def assert_untouched(cache: MultiLevelCache, direct: Any) -> None:
    assert len(cache.l1_cache) == 0
    assert await direct.redis_keys() == []
    assert await direct.rows() == 0


@pytest.mark.parametrize("key,exc,words", BAD_KEYS)
async def test_bad_keys(cache: MultiLevelCache, direct: Any, key: Any, exc: type, words: str) -> None:
    for call in (
        lambda: cache.put(key, 1),
        lambda: cache.get(key),
        lambda: cache.invalidate(key),
        lambda: cache.lookup(key),
    ):
        with pytest.raises(exc, match=words):
            await call()
    await assert_untouched(cache, direct)


async def test_key_at_the_limit_is_fine(cache: MultiLevelCache) -> None:
    await cache.put("k" * 1024, 1)
    assert await cache.get("k" * 1024) == 1


@pytest.mark.parametrize("ttl,exc", BAD_TTLS)
async def test_bad_ttls(cache: MultiLevelCache, direct: Any, ttl: Any, exc: type) -> None:
    with pytest.raises(exc, match="ttl_seconds"):
        await cache.put("k", 1, ttl_seconds=ttl)
    await assert_untouched(cache, direct)


@pytest.mark.parametrize("value,words", BAD_VALUES, ids=[w for _, w in BAD_VALUES])
async def test_bad_values(cache: MultiLevelCache, direct: Any, value: Any, words: str) -> None:
    with pytest.raises(SerializationError, match="'k'") as info:
        await cache.put("k", value)
    assert isinstance(info.value, TypeError)
    await assert_untouched(cache, direct)


async def test_bad_value_error_never_shows_the_value(cache: MultiLevelCache) -> None:
    with pytest.raises(SerializationError) as info:
        await cache.put("k", {"password": {"hunter2-secret"}})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("level", ["L4", "l1", "", None, 1])
async def test_bad_level(cache: MultiLevelCache, direct: Any, level: Any) -> None:
    with pytest.raises(ValueError, match="level"):
        await cache.put("k", 1, level=level)
    await assert_untouched(cache, direct)


class StrSub(str):
    pass


@pytest.mark.parametrize(
    "key",
    [k for k, _, _ in BAD_KEYS] + ["k", "k" * 1024, "é" * 512, "日本", "a b\tc", StrSub("k"), "\x00", "x\x00" * 600],
    ids=repr,
)
def test_compiled_key_check_agrees_with_the_python_one(key: Any) -> None:
    # keys.check_key decides plain ASCII keys in C and hands every other key to the Python
    # check: same answer, same error, for every key.
    def outcome(check: Any) -> Any:
        try:
            return check(key)
        except (TypeError, ValueError) as exc:
            return type(exc), str(exc)

    assert outcome(keys.check_key) == outcome(validation._check_key)
    assert outcome(_keys_py.check_key) == outcome(validation._check_key)
