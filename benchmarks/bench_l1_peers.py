"""mlcache's L1 LRU against other in-process caches, with ``dict`` as the floor.

Run::

    PYTHONPATH=src python -m pytest benchmarks/bench_l1_peers.py --benchmark-only -q

(``pip install -e .[bench,test]`` makes ``PYTHONPATH`` unnecessary.)  A summary at the end
prints each contestant's median ns/op and Mops/s beside the same run's floor and cachebox.

Groups, each over 100k str keys in caches that hold 100k entries:

* ``get-hit``: a Zipf(0.99) stream of 10k lookups, every one a hit.
* ``get-miss``: 10k lookups of keys never stored.
* ``set-update``: the Zipf stream stored again (every key already present).
* ``set-insert-evict``: 10k fresh keys into a full cache, so every store also evicts.

Every contestant is timed with the same loop: the operation is bound to a local, and a round
is ``for k in keys: op(k)`` (``op(k, k)`` for a store) over a pre-built list, so the harness
costs nothing per operation and the loop costs the same for all.  Only where an API lacks an
operation is a contestant left out: ``functools.lru_cache`` has no lookup that does not store
on a miss and no update, so it appears in ``get-hit`` (calling the cached function) and in
``set-insert-evict`` (calling it with new arguments: miss, call, store, evict).

A store through a bound ``__setitem__`` is a slot-wrapper call, markedly slower than the
``c[k] = v`` statement the mapping-style caches are used with, so the ``set`` groups also
show those caches through ``c[k] = v`` (marked ``[k]=v``), outside the same-shape comparison.
"""
from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

import pytest

import mlcache


@dataclass(frozen=True)
class Peer:
    name: str
    make: Callable[[int], Any]
    get: Optional[Callable[[Any], Callable[..., Any]]]
    put: Optional[Callable[[Any], Callable[..., Any]]]
    role: str = ""
    # functools.lru_cache: no separate get/set; a call is a lookup that stores on a miss.
    call: bool = False
    module: Optional[str] = None  # a third-party peer is skipped when this is not installed


def _cachebox(capacity: int) -> Any:
    import cachebox

    return cachebox.LRUCache(capacity)


def _lru_dict(capacity: int) -> Any:
    import lru

    return lru.LRU(capacity)


def _cachetools(capacity: int) -> Any:
    import cachetools

    return cachetools.LRUCache(capacity)


def _theine(capacity: int) -> Any:
    # Imported only here: theine starts a maintenance thread when it is imported.
    import theine

    return theine.Cache(capacity)


PEERS = [
    Peer("dict (floor)", lambda n: {}, lambda c: c.get, lambda c: c.__setitem__, role="floor"),
    Peer(f"mlcache.LRU ({mlcache.LRU.__module__})", mlcache.LRU, lambda c: c.get, lambda c: c.set),
    Peer("mlcache.PyLRU", mlcache.PyLRU, lambda c: c.get, lambda c: c.set),
    Peer("cachebox.LRUCache", _cachebox, lambda c: c.get, lambda c: c.insert, role="reference", module="cachebox"),
    Peer("lru-dict lru.LRU", _lru_dict, lambda c: c.get, lambda c: c.__setitem__, module="lru"),
    # str(k) returns k itself: the cached function costs next to nothing on a miss.
    Peer("functools.lru_cache", lambda n: functools.lru_cache(maxsize=n)(str), None, None, call=True),
    Peer("cachetools.LRUCache", _cachetools, lambda c: c.get, lambda c: c.__setitem__, module="cachetools"),
    Peer("theine.Cache (W-TinyLFU)", _theine, lambda c: c.get, lambda c: c.set, module="theine"),
]
# The same mapping-style caches stored into with the statement, not a bound method.
SUBSCRIPT = ["dict (floor)", "cachebox.LRUCache", "lru-dict lru.LRU", "cachetools.LRUCache"]


def _params(*, need_get: bool = False, need_put: bool = False, allow_call: bool = False) -> list[Any]:
    out = []
    for peer in PEERS:
        if peer.call and not allow_call:
            continue
        if not peer.call and ((need_get and peer.get is None) or (need_put and peer.put is None)):
            continue
        out.append(pytest.param(peer, id=peer.name.split()[0]))
    return out


@pytest.fixture
def new_cache() -> Iterator[Callable[[Peer, int], Any]]:
    """``new_cache(peer, capacity)``; theine caches are closed afterwards, or their
    maintenance tasks would keep running (and costing) in theine's thread."""
    made: list[Any] = []

    def new(peer: Peer, capacity: int) -> Any:
        if peer.module is not None:
            pytest.importorskip(peer.module)
        cache = peer.make(capacity)
        made.append(cache)
        return cache

    yield new
    for cache in made:
        if type(cache).__module__.startswith("theine"):
            cache.close()


def _fill(peer: Peer, cache: Any, keys: list[str]) -> None:
    if peer.call:
        for k in keys:
            cache(k)
        return
    assert peer.put is not None
    put = peer.put(cache)
    for k in keys:
        put(k, k)


# -- get, hit ---------------------------------------------------------------------------------


@pytest.mark.benchmark(group="get-hit")
@pytest.mark.parametrize("peer", _params(need_get=True, allow_call=True))
def test_get_hit(measure: Any, new_cache: Any, peer: Peer, keys: list[str], zipf_keys: list[str]) -> None:
    cache = new_cache(peer, len(keys))
    _fill(peer, cache, keys)
    get = cache if peer.call else peer.get(cache)  # type: ignore[misc]
    stream = zipf_keys

    def run() -> None:
        for k in stream:
            get(k)

    measure(run, len(stream), peer.name, peer.role)
    _check_hits(peer, cache, zipf_keys)


def _check_hits(peer: Peer, cache: Any, stream: list[str]) -> None:
    # A contestant that missed would have been timed on another path than the others.
    if peer.call:
        assert cache.cache_info().misses == cache.cache_info().currsize
    elif peer.name.startswith("theine"):
        assert all(cache.get(k)[1] for k in stream[:1000])
    else:
        assert all(cache.get(k) == k for k in stream[:1000])


# -- get, miss --------------------------------------------------------------------------------


@pytest.mark.benchmark(group="get-miss")
@pytest.mark.parametrize("peer", _params(need_get=True))
def test_get_miss(measure: Any, new_cache: Any, peer: Peer, keys: list[str], absent_keys: list[str]) -> None:
    cache = new_cache(peer, len(keys))
    _fill(peer, cache, keys)
    get = peer.get(cache)  # type: ignore[misc]
    stream = absent_keys

    def run() -> None:
        for k in stream:
            get(k)

    measure(run, len(stream), peer.name, peer.role)


# -- set, update of a stored key ----------------------------------------------------------------


@pytest.mark.benchmark(group="set-update")
@pytest.mark.parametrize("peer", _params(need_put=True))
def test_set_update(measure: Any, new_cache: Any, peer: Peer, keys: list[str], zipf_keys: list[str]) -> None:
    cache = new_cache(peer, len(keys))
    _fill(peer, cache, keys)
    put = peer.put(cache)  # type: ignore[misc]
    stream = zipf_keys

    def run() -> None:
        for k in stream:
            put(k, k)

    measure(run, len(stream), peer.name, peer.role)


@pytest.mark.benchmark(group="set-update")
@pytest.mark.parametrize("name", SUBSCRIPT, ids=[n.split()[0] for n in SUBSCRIPT])
def test_set_update_subscript(measure: Any, new_cache: Any, name: str, keys: list[str], zipf_keys: list[str]) -> None:
    peer = next(p for p in PEERS if p.name == name)
    cache = new_cache(peer, len(keys))
    _fill(peer, cache, keys)
    stream = zipf_keys

    def run() -> None:
        for k in stream:
            cache[k] = k

    measure(run, len(stream), f"{name} [k]=v")


# -- set, insert that evicts ----------------------------------------------------------------------


def _churned(new_cache: Callable[[Peer, int], Any], peer: Peer, chunks: list[list[str]]) -> Any:
    """A cache of half as many entries as there are churn keys, after one full cycle: from
    then on every store is of a key evicted long ago.  (A dict does not evict: it ends up
    holding every churn key, so its floor is a store of a key it holds.)"""
    cache = new_cache(peer, len(chunks) * len(chunks[0]) // 2)
    for chunk in chunks:
        _fill(peer, cache, chunk)
    return cache


@pytest.mark.benchmark(group="set-insert-evict")
@pytest.mark.parametrize("peer", _params(need_put=True, allow_call=True))
def test_set_insert_evict(measure: Any, new_cache: Any, peer: Peer, churn_chunks: list[list[str]]) -> None:
    cache = _churned(new_cache, peer, churn_chunks)
    rounds = itertools.cycle(churn_chunks)
    name = peer.name if peer.role != "floor" else "dict (floor: store, no eviction)"
    if peer.call:
        call = cache

        def run() -> None:
            for k in next(rounds):
                call(k)

    else:
        assert peer.put is not None
        put = peer.put(cache)

        def run() -> None:
            for k in next(rounds):
                put(k, k)

    measure(run, len(churn_chunks[0]), name, peer.role)
    capacity = len(churn_chunks) * len(churn_chunks[0]) // 2
    if peer.call:
        assert cache.cache_info().currsize == capacity
    elif peer.role != "floor" and not type(cache).__module__.startswith("theine"):
        assert len(cache) == capacity


@pytest.mark.benchmark(group="set-insert-evict")
@pytest.mark.parametrize("name", SUBSCRIPT[1:], ids=[n.split()[0] for n in SUBSCRIPT[1:]])
def test_set_insert_evict_subscript(measure: Any, new_cache: Any, name: str, churn_chunks: list[list[str]]) -> None:
    peer = next(p for p in PEERS if p.name == name)
    cache = _churned(new_cache, peer, churn_chunks)
    rounds = itertools.cycle(churn_chunks)

    def run() -> None:
        for k in next(rounds):
            cache[k] = k

    measure(run, len(churn_chunks[0]), f"{name} [k]=v")
    assert len(cache) == len(churn_chunks) * len(churn_chunks[0]) // 2
