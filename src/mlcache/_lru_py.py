"""The L1 in-process LRU in plain Python: the reference twin of the compiled ``mlcache._lru``.

Both classes must behave identically, down to the order of ``keys()`` and every counter; the
test suite drives them side by side with the same random operations.  This one is used on
PyPy, when ``MLCACHE_NO_EXTENSIONS`` is set, or when the extension failed to build.

Layout: a dict from key to node, plus a circular doubly linked list of those nodes threaded
through a sentinel (``_root``).  ``_root.next`` is the most recently used entry, ``_root.prev``
the least.  The invariant everything relies on is "a node is linked into the list if and only
if the dict holds it": removals therefore take the node out of the dict first and unlink
whatever the dict actually gave back.  The compiled twin links nodes with borrowed C pointers,
so there a broken invariant would be a use-after-free rather than a wrong answer; this file
follows the same steps so the two cannot drift apart.

Expiry is lazy: an expired entry stays stored (and counts in ``len()`` and ``keys()``) until
a ``get``/``pop``/``delete`` finds it, ``expire()`` sweeps, or capacity pressure evicts it.
"""
from __future__ import annotations

import sys
from collections.abc import Hashable
from time import monotonic
from typing import Any, Final, NoReturn, final

__all__ = ["LRU"]

_MAX_SIZE: Final = sys.maxsize


def _check_size(name: str, value: object) -> int:
    # bool is an int subclass; LRU(True) is always a mistake, never "capacity 1".
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1")
    # The compiled twin stores sizes as Py_ssize_t; refusing larger ones here keeps parity.
    if value > _MAX_SIZE:
        raise ValueError(f"{name} must be <= sys.maxsize")
    return int(value)


def _deadline(ttl: object) -> float:
    """Absolute monotonic expiry time for ``ttl`` seconds from now; 0.0 means never."""
    if ttl is None:
        return 0.0
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be an int or float of seconds, or None, not {type(ttl).__name__}")
    seconds = float(ttl)
    # Written as "not >" so that NaN is refused too.
    if not seconds > 0.0:
        raise ValueError("ttl must be > 0 seconds, or None")
    return monotonic() + seconds


@final
class _Node:
    __slots__ = ("key", "value", "expires_at", "prev", "next", "linked")

    key: Hashable
    value: Any
    expires_at: float
    prev: _Node
    next: _Node
    linked: bool

    def __init__(self, key: Hashable, value: Any, expires_at: float) -> None:
        self.key = key
        self.value = value
        self.expires_at = expires_at
        self.prev = self
        self.next = self
        self.linked = False


@final
class LRU:
    """A bounded least-recently-used map with optional per-entry TTL and hit statistics.

    ``capacity`` counts entries.  ``len()`` and ``keys()`` include expired entries that have
    not been collected yet; ``in``, ``get``, ``peek``, ``pop``, ``delete`` and ``ttl`` never
    return one.  ``hit_rate`` is the percentage of hits among the last ``hit_rate_window``
    ``get()`` calls.  ``expirations`` counts expired entries collected by ``get``, ``pop``,
    ``delete`` or ``expire()``; an expired entry pushed out by capacity counts as an eviction,
    and one overwritten by ``set`` as neither.  Synchronous and not thread-safe beyond what the
    GIL gives; keys whose ``__hash__``/``__eq__`` call back into the same LRU are not supported.
    """

    __slots__ = (
        "_map",
        "_root",
        "_capacity",
        "_window",
        "_ring",
        "_ring_pos",
        "_ring_fill",
        "_ring_hits",
        "_hits",
        "_misses",
        "_evictions",
        "_expirations",
    )

    def __init_subclass__(cls, **kwargs: Any) -> NoReturn:
        # The compiled class is final; refusing subclasses here keeps code that works on the
        # pure twin from breaking once the extension is present.
        raise TypeError("mlcache LRU cannot be subclassed")

    def __init__(self, capacity: int, hit_rate_window: int = 1000) -> None:
        self._capacity = _check_size("capacity", capacity)
        self._window = _check_size("hit_rate_window", hit_rate_window)
        # One byte per outcome: a bytearray costs the same memory as the compiled ring buffer.
        self._ring = bytearray(self._window)
        self._ring_pos = 0
        self._ring_fill = 0
        self._ring_hits = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._map: dict[Hashable, _Node] = {}
        root = _Node(None, None, 0.0)
        self._root = root

    def __reduce__(self) -> NoReturn:
        # The compiled class cannot be pickled (it holds C pointers); neither can this one, so
        # a program cannot come to depend on something that stops working with the extension.
        raise TypeError("mlcache LRU cannot be pickled or copied")

    def __repr__(self) -> str:
        return f"<mlcache LRU capacity={self._capacity} entries={len(self._map)}>"

    # -- linked list ----------------------------------------------------------------------

    def _link_front(self, node: _Node) -> None:
        root = self._root
        first = root.next
        node.prev = root
        node.next = first
        first.prev = node
        root.next = node
        node.linked = True

    def _unlink(self, node: _Node) -> None:
        prev = node.prev
        nxt = node.next
        prev.next = nxt
        nxt.prev = prev
        node.linked = False

    def _move_to_front(self, node: _Node) -> None:
        root = self._root
        if root.next is node:
            return
        prev = node.prev
        nxt = node.next
        prev.next = nxt
        nxt.prev = prev
        first = root.next
        node.prev = root
        node.next = first
        first.prev = node
        root.next = node

    def _discard_node(self, node: _Node) -> bool:
        """Remove this exact node (not merely its key); False if it was already gone."""
        if not node.linked:
            return False
        popped = self._map.pop(node.key, None)
        if popped is node:
            self._unlink(node)
            return True
        # The node's key no longer finds it: its hash changed while stored, or it compares
        # equal to another stored key.  Whatever the dict gave back was stored, so it is linked.
        if popped is not None:
            self._unlink(popped)
        self._rebuild_without(node)
        return True

    def _rebuild_without(self, node: _Node) -> None:
        # Only reached with keys that break the hash contract.  Re-hashing every stored key
        # is the one way to drop a dict entry its own key cannot reach, and without it the
        # eviction loop would spin forever on a tail it cannot remove.
        if node.linked:
            self._unlink(node)
        nodes = []
        cur = self._root.next
        while cur is not self._root:
            nodes.append(cur)
            cur = cur.next
        fresh: dict[Hashable, _Node] = {}
        for n in nodes:
            if fresh.setdefault(n.key, n) is not n:
                self._unlink(n)
        self._map = fresh

    def _evict_overflow(self) -> None:
        root = self._root
        while len(self._map) > self._capacity and root.prev is not root:
            if self._discard_node(root.prev):
                self._evictions += 1

    def _record(self, hit: int) -> None:
        pos = self._ring_pos
        if self._ring_fill == self._window:
            self._ring_hits -= self._ring[pos]
        else:
            self._ring_fill += 1
        self._ring[pos] = hit
        self._ring_hits += hit
        pos += 1
        if pos == self._window:
            pos = 0
        self._ring_pos = pos

    # -- lookups --------------------------------------------------------------------------

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value for ``key`` (now the most recently used), else ``default``; counted."""
        node = self._map.get(key)
        if node is None:
            self._misses += 1
            self._record(0)
            return default
        expires_at = node.expires_at
        if expires_at > 0.0 and monotonic() >= expires_at:
            if self._discard_node(node):
                self._expirations += 1
            self._misses += 1
            self._record(0)
            return default
        self._move_to_front(node)
        self._hits += 1
        self._record(1)
        return node.value

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """Like ``get`` but leaves recency, statistics and expired entries alone."""
        node = self._map.get(key)
        if node is None:
            return default
        expires_at = node.expires_at
        if expires_at > 0.0 and monotonic() >= expires_at:
            return default
        return node.value

    def __contains__(self, key: object, /) -> bool:
        node = self._map.get(key)
        if node is None:
            return False
        expires_at = node.expires_at
        return not (expires_at > 0.0 and monotonic() >= expires_at)

    def ttl(self, key: Hashable) -> float | None:
        """Seconds ``key`` has left, or None if it never expires; KeyError if absent/expired."""
        node = self._map.get(key)
        if node is None:
            raise KeyError(key)
        expires_at = node.expires_at
        if expires_at <= 0.0:
            return None
        remaining = expires_at - monotonic()
        if remaining <= 0.0:
            raise KeyError(key)
        return remaining

    def __len__(self) -> int:
        return len(self._map)

    def keys(self) -> list[Hashable]:
        """Stored keys, most recently used first (expired-but-uncollected ones included)."""
        out = []
        root = self._root
        cur = root.next
        while cur is not root:
            out.append(cur.key)
            cur = cur.next
        return out

    # -- updates --------------------------------------------------------------------------

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` as the most recently used entry, expiring ``ttl`` seconds from now."""
        expires_at = _deadline(ttl)
        node = self._map.get(key)
        if node is None:
            fresh = _Node(key, value, expires_at)
            node = self._map.setdefault(key, fresh)
            if node is fresh:
                self._link_front(fresh)
                self._evict_overflow()
                return
            # Otherwise the key was stored while it was being hashed (a re-entrant __hash__):
            # fall through and update that entry instead of orphaning it.
        self._move_to_front(node)
        node.expires_at = expires_at
        # Replacing the value last: dropping the old one may run arbitrary code (__del__), and
        # by then the structure is already consistent.
        node.value = value

    def delete(self, key: Hashable) -> bool:
        """Remove ``key``; True only if it was present and not expired."""
        node = self._map.pop(key, None)
        if node is None:
            return False
        self._unlink(node)
        expires_at = node.expires_at
        if expires_at > 0.0 and monotonic() >= expires_at:
            self._expirations += 1
            return False
        return True

    def pop(self, key: Hashable, default: Any = None) -> Any:
        """Remove ``key`` and return its value; ``default`` if absent or expired."""
        node = self._map.pop(key, None)
        if node is None:
            return default
        self._unlink(node)
        expires_at = node.expires_at
        if expires_at > 0.0 and monotonic() >= expires_at:
            self._expirations += 1
            return default
        return node.value

    def clear(self) -> None:
        """Remove every entry; statistics are kept."""
        old = self._map
        root = self._root
        # Reset the structure before the old entries are released: their values' finalizers
        # may call back into this LRU and must find it empty and consistent.
        cur = root.next
        while cur is not root:
            cur.linked = False
            cur = cur.next
        root.prev = root
        root.next = root
        self._map = {}
        old.clear()

    def expire(self) -> int:
        """Remove every expired entry now (O(n)); return how many were removed."""
        now = monotonic()
        dead = []
        root = self._root
        cur = root.next
        while cur is not root:
            expires_at = cur.expires_at
            if expires_at > 0.0 and now >= expires_at:
                dead.append(cur)
            cur = cur.next
        count = 0
        for node in dead:
            # Re-checked because a finalizer run by an earlier removal may have refreshed it.
            expires_at = node.expires_at
            if expires_at > 0.0 and now >= expires_at and self._discard_node(node):
                self._expirations += 1
                count += 1
        return count

    # -- sizes and statistics -------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        self._capacity = _check_size("capacity", value)
        self._evict_overflow()

    @property
    def hit_rate_window(self) -> int:
        return self._window

    @property
    def hits(self) -> int:
        return self._hits

    @property
    def misses(self) -> int:
        return self._misses

    @property
    def evictions(self) -> int:
        return self._evictions

    @property
    def expirations(self) -> int:
        return self._expirations

    @property
    def hit_rate(self) -> float:
        """Percent (0.0-100.0) of hits among the last ``hit_rate_window`` ``get()`` calls."""
        if self._ring_fill == 0:
            return 0.0
        return 100.0 * self._ring_hits / self._ring_fill

    def reset_stats(self) -> None:
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._ring_pos = 0
        self._ring_fill = 0
        self._ring_hits = 0
        # The ring's old bytes need no zeroing: slots are only read once refilled.

    def stats(self) -> dict[str, Any]:
        return {
            "capacity": self._capacity,
            "entries": len(self._map),
            "hits": self._hits,
            "misses": self._misses,
            "evictions": self._evictions,
            "expirations": self._expirations,
            "hit_rate": self.hit_rate,
            "hit_rate_window": self._window,
        }
