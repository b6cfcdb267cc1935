"""The envelope: what comes back equal is accepted, everything else is refused at put."""
from __future__ import annotations

import datetime as dt
from typing import Any

import msgpack
import pytest

from mlcache import SerializationError
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
    assert data[:3] == b"ml\x01" and len(data) > HEADER_SIZE
    with pytest.raises(SerializationError, match="another key"):
        S.loads("other", data)
    with pytest.raises(SerializationError, match="envelope"):
        S.loads("k", b"\x02" + data[1:])


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
