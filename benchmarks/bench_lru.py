"""Micro-benchmarks of the L1 LRU: compiled vs pure Python, with ``dict.get`` as the yardstick.

Run::

    PYTHONPATH=src python -m pytest benchmarks/bench_lru.py --benchmark-only -q

Each benchmark round performs ``ops_per_round`` operations (recorded in ``extra_info``) in a
plain ``for`` loop over a pre-built key list, through a pre-bound method, so what is measured
is the call itself plus the same loop overhead the ``dict.get`` baseline pays.  Operations per
second are therefore ``ops_per_round / median`` (pytest-benchmark's own "OPS" column counts
rounds).  ``--benchmark-json`` output carries ``extra_info.mops_median`` for each benchmark.

Lookups follow a Zipf-like distribution over the stored keys, as cache traffic does; keys are
``str`` because the multi-level cache only ever stores string keys.  Each LRU benchmark runs
under both policies (ids ``compiled-lru``, ``compiled-tinylfu``, ...); the ``-sized`` ones pass
``size=`` as the multi-level cache does, the others let the LRU estimate it.

Compare a change with its baseline in the same run, e.g. build the old extension into another
checkout and run both there; pytest-benchmark's ``--benchmark-compare`` reads saved runs.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from mlcache.lru import ENTRY_OVERHEAD, PyLRU

try:
    from mlcache._lru import LRU as CLRU
except ImportError:  # benchmarks report what exists; tests/test_lru.py insists on the build
    CLRU = None

CAPACITY = 1024
OPS = 1000

_rng = random.Random(1234)
STORED = [f"user:{i:06d}" for i in range(CAPACITY)]
ABSENT = [f"nope:{i:06d}" for i in range(OPS)]
# Zipf-like (s = 1.1): a few hot keys, a long tail, every lookup a hit.
_weights = [1.0 / (rank + 1) ** 1.1 for rank in range(CAPACITY)]
ZIPF = _rng.choices(STORED, weights=_weights, k=OPS)
# Twice the capacity, inserted in a cycle: each key was evicted long before it comes back,
# so every set() is an insert that also evicts.
CHURN = [f"churn:{i:06d}" for i in range(2 * CAPACITY)]

IMPLS: list[Any] = [pytest.param(PyLRU, id="py")]
IMPLS.append(
    pytest.param(CLRU, id="compiled")
    if CLRU is not None
    else pytest.param(None, id="compiled", marks=pytest.mark.skip(reason="mlcache._lru not built"))
)
POLICY = pytest.mark.parametrize("policy", ["lru", "tinylfu"])


def _filled(cls: Any, policy: str, size: int | None = None) -> Any:
    cache = cls(CAPACITY, policy=policy)
    for key in STORED:
        cache.set(key, key, None, size)
    return cache


def _run(benchmark: Any, fn: Callable[[], None], ops: int) -> None:
    benchmark.extra_info["ops_per_round"] = ops
    benchmark(fn)
    median = benchmark.stats.stats.median
    benchmark.extra_info["mops_median"] = round(ops / median / 1e6, 3)


# -- get, hit ---------------------------------------------------------------------------


@pytest.mark.benchmark(group="get-hit")
def test_dict_get_hit(benchmark: Any) -> None:
    get = {key: key for key in STORED}.get
    keys = ZIPF

    def run() -> None:
        for k in keys:
            get(k)

    _run(benchmark, run, len(keys))


@pytest.mark.benchmark(group="get-hit")
@POLICY
@pytest.mark.parametrize("cls", IMPLS)
def test_lru_get_hit(benchmark: Any, cls: Any, policy: str) -> None:
    cache = _filled(cls, policy)
    get = cache.get
    keys = ZIPF

    def run() -> None:
        for k in keys:
            get(k)

    _run(benchmark, run, len(keys))
    assert cache.misses == 0


@pytest.mark.benchmark(group="get-hit")
@POLICY
@pytest.mark.parametrize("cls", IMPLS)
def test_lru_get_hit_with_ttl(benchmark: Any, cls: Any, policy: str) -> None:
    # Entries with an expiry make every hit read the monotonic clock.
    cache = cls(CAPACITY, policy=policy)
    for key in STORED:
        cache.set(key, key, 3600.0)
    get = cache.get
    keys = ZIPF

    def run() -> None:
        for k in keys:
            get(k)

    _run(benchmark, run, len(keys))
    assert cache.misses == 0


# -- get, miss --------------------------------------------------------------------------


@pytest.mark.benchmark(group="get-miss")
def test_dict_get_miss(benchmark: Any) -> None:
    get = {key: key for key in STORED}.get
    keys = ABSENT

    def run() -> None:
        for k in keys:
            get(k)

    _run(benchmark, run, len(keys))


@pytest.mark.benchmark(group="get-miss")
@POLICY
@pytest.mark.parametrize("cls", IMPLS)
def test_lru_get_miss(benchmark: Any, cls: Any, policy: str) -> None:
    cache = _filled(cls, policy)
    get = cache.get
    keys = ABSENT

    def run() -> None:
        for k in keys:
            get(k)

    _run(benchmark, run, len(keys))
    assert cache.hits == 0


# -- set, update of a stored key ----------------------------------------------------------


@pytest.mark.benchmark(group="set-update")
@POLICY
@pytest.mark.parametrize("cls", IMPLS)
def test_lru_set_update(benchmark: Any, cls: Any, policy: str) -> None:
    cache = _filled(cls, policy)
    put = cache.set
    keys = ZIPF

    def run() -> None:
        for k in keys:
            put(k, 1)

    _run(benchmark, run, len(keys))
    assert len(cache) == CAPACITY and cache.evictions == 0


@pytest.mark.benchmark(group="set-update")
@POLICY
@pytest.mark.parametrize("cls", IMPLS)
def test_lru_set_update_sized(benchmark: Any, cls: Any, policy: str) -> None:
    cache = _filled(cls, policy, 64)
    put = cache.set
    keys = ZIPF

    def run() -> None:
        for k in keys:
            put(k, 1, None, 64)

    _run(benchmark, run, len(keys))
    assert cache.memory_bytes == CAPACITY * (64 + ENTRY_OVERHEAD)


@pytest.mark.benchmark(group="set-update")
@POLICY
@pytest.mark.parametrize("cls", IMPLS)
def test_lru_set_update_with_ttl(benchmark: Any, cls: Any, policy: str) -> None:
    cache = _filled(cls, policy)
    put = cache.set
    keys = ZIPF

    def run() -> None:
        for k in keys:
            put(k, 1, 300.0)

    _run(benchmark, run, len(keys))


# -- set, insert that evicts ----------------------------------------------------------------


@pytest.mark.benchmark(group="set-insert-evict")
@POLICY
@pytest.mark.parametrize("cls", IMPLS)
def test_lru_set_insert_evict(benchmark: Any, cls: Any, policy: str) -> None:
    cache = cls(CAPACITY, policy=policy)
    put = cache.set
    keys = CHURN

    def run() -> None:
        for k in keys:
            put(k, 1)

    _run(benchmark, run, len(keys))
    # Every insert beyond the first CAPACITY evicted one entry (under tinylfu, the candidate
    # or the victim).
    assert len(cache) == CAPACITY and cache.evictions > 0 and cache.hits == 0


@pytest.mark.benchmark(group="set-insert-evict")
@POLICY
@pytest.mark.parametrize("cls", IMPLS)
def test_lru_set_insert_evict_sized(benchmark: Any, cls: Any, policy: str) -> None:
    # As the multi-level cache inserts: with the serialized length, under a memory bound.
    cache = cls(CAPACITY, policy=policy, max_memory_bytes=CAPACITY * (64 + ENTRY_OVERHEAD))
    put = cache.set
    keys = CHURN

    def run() -> None:
        for k in keys:
            put(k, 1, None, 64)

    _run(benchmark, run, len(keys))
    assert len(cache) == CAPACITY and cache.evictions > 0
