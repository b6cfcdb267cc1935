"""The envelope: what comes back equal is accepted, everything else is refused at put."""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import msgpack
import pytest

from mlcache import SerializationError, _keys_py, keys
from mlcache.serialization import HEADER_SIZE, Serializer

S = Serializer(1024 * 1024)

GOOD = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, -0.0, "", "text ✓", b"\x00\xff",
    [], [1, [2, [3]]], (), (1, "a", (2.5, None)), {"a": 1, "b": [1, {"c": (1, 2)}]}, {b"raw": 1},
    dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
]


@pytest.mark.parametrize("value", GOOD, ids=repr)
def test_round_trip_equal_and_same_type(value: Any) -> None:
    back = S.loads("k", S.dumps("k", value))
    assert back == value
    assert type(back) is type(value)


class MyStr(str):
    pass


@pytest.mark.parametrize(
    "value", [{1}, frozenset(), object(), {1: 2}, {(1, 2): 3}, dt.datetime(2024, 1, 1), MyStr("a"),
              2**64, -(2**63) - 1, "\udc80", dt.date(2024, 1, 1), [1, {2}]],
    ids=repr,
)
def test_refused(value: Any) -> None:
    with pytest.raises(SerializationError, match="key 'k'"):
        S.dumps("k", value)



def test_a_refused_value_leaves_nothing_behind_for_the_next() -> None:
    # The serializer reuses one msgpack Packer: a pack that fails half way (after the list
    # header and the 1) must not leave those bytes in front of the next value.
    s = Serializer(1024)
    with pytest.raises(SerializationError):
        s.dumps("k", [1, object()])
    with pytest.raises(SerializationError):
        s.dumps("k", [1, (2, object())])  # fails inside a nested tuple's own Packer
    assert s.dumps("k", {"a": (1, 2)}) == Serializer(1024).dumps("k", {"a": (1, 2)})
    assert s.loads("k", s.dumps("k", {"a": (1, 2)})) == {"a": (1, 2)}

def test_size_limit_counts_serialized_bytes() -> None:
    small = Serializer(1024)
    small.dumps("k", b"x" * 1000)
    with pytest.raises(SerializationError, match="max_value_bytes"):
        small.dumps("k", b"x" * 1024)


def test_envelope_is_versioned_and_bound_to_its_key() -> None:
    data = S.dumps("k", {"a": 1})
    assert data[:3] == b"ml\x02" and len(data) > HEADER_SIZE
    with pytest.raises(SerializationError, match="another key"):
        S.loads("other", data)
    with pytest.raises(SerializationError, match="envelope"):
        S.loads("k", b"\x02" + data[1:])
    with pytest.raises(SerializationError, match="envelope"):
        S.loads("k", data[:2] + b"\x03" + data[3:])
    with pytest.raises(SerializationError, match="envelope"):
        S.loads("k", data[:HEADER_SIZE - 1])


def test_version_1_envelopes_are_still_read() -> None:
    # Written by mlcache before the digest became FNV-1a: blake2b-64 of the key.
    payload = S.dumps("k", {"a": 1})[HEADER_SIZE:]
    v1 = b"ml\x01" + hashlib.blake2b(b"k", digest_size=8).digest() + payload
    assert S.loads("k", v1) == {"a": 1}
    with pytest.raises(SerializationError, match="another key"):
        S.loads("other", v1)
    # A version 2 header with a version 1 digest is not accepted, nor the reverse.
    with pytest.raises(SerializationError, match="another key"):
        S.loads("k", b"ml\x02" + v1[3:])
    with pytest.raises(SerializationError, match="another key"):
        S.loads("k", b"ml\x01" + S.dumps("k", {"a": 1})[3:])


KEYS = ["k", "user:42", "héllo", "日本語", "\U0001f600 smile", "x" * 1024, "tab\tand\nnewline"]


@pytest.mark.parametrize("key", KEYS, ids=lambda k: repr(k)[:20])
def test_compiled_digest_is_fnv1a_64_like_the_pure_twin(key: str) -> None:
    h = 0xCBF29CE484222325
    for byte in key.encode():
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    expected = h.to_bytes(8, "little")
    assert _keys_py.key_digest(key) == expected
    assert keys.key_digest(key) == expected
    data = S.dumps(key, 1)
    assert data[3:HEADER_SIZE] == expected
    for impl in (keys, _keys_py):
        assert impl.envelope_matches(data, key, b"ml\x02")
        assert not impl.envelope_matches(data, key + "x", b"ml\x02")
        assert not impl.envelope_matches(data[:10], key, b"ml\x02")
        assert not impl.envelope_matches(data, key, b"ml\x01")


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\xdb\xff\xff\xff\xff", msgpack.packb(msgpack.ExtType(42, b"x")), b"\x92\x01"],
    ids=["empty", "never-used", "huge-length", "unknown-ext", "truncated"],
)
def test_hostile_bytes_are_a_serialization_error(payload: bytes) -> None:
    data = S.dumps("k", 1)[:HEADER_SIZE] + payload
    with pytest.raises(SerializationError, match="key 'k'"):
        S.loads("k", data)


def test_never_pickles() -> None:
    import pickle

    data = S.dumps("k", {"a": [1, 2]})
    assert pickle.PROTO not in data[HEADER_SIZE:HEADER_SIZE + 1]
    with pytest.raises(SerializationError):
        S.loads("k", data[:HEADER_SIZE] + pickle.dumps({"a": 1}))
