"""The L1 in-process cache in plain Python: the reference twin of the compiled ``mlcache._lru``.

Both classes must behave identically, down to the order of ``keys()`` and every counter; the
test suite drives them side by side with the same random operations.  This one is used on
PyPy, when ``MLCACHE_NO_EXTENSIONS`` is set, or when the extension failed to build.

Layout: a dict from key to node, plus circular doubly linked lists of those nodes, each
threaded through a sentinel.  Under the default ``"lru"`` policy there is one list (``_root``):
``_root.next`` is the most recently used entry, ``_root.prev`` the least.  Under ``"tinylfu"``
(W-TinyLFU, as in Caffeine) ``_root`` is the admission *window*, and ``_probation`` and
``_protected`` form the main segmented LRU; a node's ``queue`` says which list holds it.  The
invariant everything relies on is "a node is linked into a list if and only if the dict holds
it": removals take the node out of the dict first and unlink whatever the dict gave back.  The
compiled twin keeps its entries and their links in one C hash table instead (see
``_lru_table.h``), but follows the same steps so the two cannot drift apart, including every
integer and floating-point operation of the policy.

W-TinyLFU, as this module does it (numbers chosen by replaying real traces, see
benchmarks/hit_ratio.py and benchmarks/results/hit_ratio.md):

* New entries enter the window, an LRU list that starts at 10% of the capacity.  When it
  overflows, its least recent entry is a candidate for the main region and duels the main
  region's victim (probation's least recent entry): a count-min sketch of recent access
  frequencies (4-bit counters, four per key, halved every 20 x capacity increments, behind a
  doorkeeper Bloom filter that keeps one-hit wonders out) decides which of the two stays.
  A main-region entry that is hit again moves from probation to protected (80% of main).
  Hits on protected entries reach the sketch late, when the entry leaves protected or at the
  next aging (``_pend``): nothing reads their frequency in between.
* The window's share adapts by hill climbing, one entry at a time, towards whichever side
  would have had more hits.  Caffeine decides the direction by comparing the hit rates of
  successive samples; on the traces that signal was swamped by the workload's own swings
  (7 to 18 points between consecutive samples, against well under one point for a step),
  so the climber random-walked and lost to LRU on recency-heavy traces.  Here each side
  instead keeps a small ghost list (hashes of its last evictions, 10% of the capacity): a
  miss on a key the window just evicted is a hit a window one entry larger would have had,
  so the window grows by one; a miss on a key the main region just evicted shrinks it by one.
  The window ranges over 1 entry .. the whole capacity (pure LRU), a wider range than
  Caffeine's, because on several traces LRU itself is the best setting.  An entry that
  crosses between window and main when the window resizes joins the other region at its
  least recent end, so a resize admits nothing to main without a duel and gives main's
  victim no fresh window lifetime (``_adapt``).
* Everything is O(1) per operation: an adaptation moves at most 64 entries per insert, and
  the sketch's aging (O(capacity)) happens once per 20 x capacity increments.

Memory bound: each entry is charged ``size`` (or a shallow ``sys.getsizeof`` estimate of key
and value) plus ``ENTRY_OVERHEAD``; ``memory_bytes`` is the sum.  An insert (or an update that
grows) evicts by the policy until both the entry count and the bytes fit, never choosing the
entry being set; one larger than the whole bound is refused (``rejected``).  Under tinylfu the
window and protected regions get the same share of the bytes as of the entries.

Ghost list (``ghost_capacity``, off by default): the hashes of the keys most recently evicted
for room that have not come back, for a sizing controller's ``ghost_hits``.  Only evictions and
misses touch it, never a hit.

Expiry is lazy: an expired entry stays stored (and counts in ``len()``, ``keys()`` and
``memory_bytes``) until a ``get``/``pop``/``delete`` finds it, ``expire()`` sweeps, or
pressure evicts it.
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Hashable
from time import monotonic
from typing import Any, Final, Literal, NoReturn, final

__all__ = ["ENTRY_OVERHEAD", "LRU", "MAX_ENTRY_SIZE", "POLICIES"]

_MAX_SIZE: Final = sys.maxsize

POLICIES: Final = ("lru", "tinylfu")
# Bytes charged per entry on top of its size: what the compiled table spends per entry, a
# 56-byte entry plus its share of the index (12 to 24 bytes: 8-byte slots, 1/3 to 2/3 full).
ENTRY_OVERHEAD: Final = 80
# The largest accepted ``size``: keeps the running total of bytes far from 64-bit overflow.
MAX_ENTRY_SIZE: Final = 1 << 48

# Which list a node is in.  Under "lru" every node is in _WINDOW, the one list.
_WINDOW: Final = 0
_PROBATION: Final = 1
_PROTECTED: Final = 2

# -- W-TinyLFU tuning (the compiled twin has the same numbers) --
_WINDOW_PERCENT: Final = 0.10  # initial window share of the capacity
_PROTECTED_PERCENT: Final = 0.80  # protected share of the main region
_GHOST_PERCENT: Final = 0.10  # each climber ghost list remembers this share of the capacity
_SKETCH_SAMPLE: Final = 20  # sketch increments between agings, per entry it is sized for
_SKETCH_MAX: Final = 1 << 24  # entries the sketch is sized for at most (256 MiB with doorkeeper)
_DOOR_SALT: Final = 0x5555  # makes the doorkeeper's hash independent of the sketch's
_TRANSFER_LIMIT: Final = 64  # entries moved between regions per insert at most: O(1)
_ADMIT_HASHDOS: Final = 6  # see _admit()

_M64: Final = (1 << 64) - 1
_ABSENT: Final = object()
_RESET_MASK: Final = 0x7777777777777777
_ONE_MASK: Final = 0x1111111111111111


def _check_size(name: str, value: object, minimum: int = 1) -> int:
    # bool is an int subclass; LRU(True) is always a mistake, never "capacity 1".
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
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


def _charge(key: object, value: object, size: object) -> int:
    """Bytes an entry counts for: ``size`` (or a shallow estimate) plus the fixed overhead."""
    if size is None:
        # Shallow, like the compiled twin (which computes the same numbers without calling
        # sys.getsizeof for str, bytes, int, float and None).
        return min(sys.getsizeof(key) + sys.getsizeof(value), MAX_ENTRY_SIZE) + ENTRY_OVERHEAD
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int of bytes, or None, not {type(size).__name__}")
    if size < 0:
        raise ValueError("size must be >= 0 bytes, or None")
    if size > MAX_ENTRY_SIZE:
        raise ValueError("size must be <= 2**48 bytes")
    return int(size) + ENTRY_OVERHEAD


def _spread(h: int) -> int:
    """Mix a Python hash into 64 well-distributed bits (murmur3's finalizer)."""
    x = h & _M64
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _M64
    x ^= x >> 33
    return x


@final
class _Node:
    __slots__ = ("key", "value", "expires_at", "prev", "next", "linked", "hash", "charge", "queue", "pending",
                 "from_main")

    key: Hashable
    value: Any
    expires_at: float
    prev: _Node
    next: _Node
    linked: bool
    hash: int
    charge: int
    queue: int
    pending: int
    from_main: bool  # tinylfu: in the window because a grow took it from main (see _adapt)

    def __init__(self, key: Hashable, value: Any, expires_at: float, hash_: int, charge: int) -> None:
        self.key = key
        self.value = value
        self.expires_at = expires_at
        self.prev = self
        self.next = self
        self.linked = False
        self.hash = hash_
        self.charge = charge
        self.queue = _WINDOW
        self.pending = 0
        self.from_main = False


def _limit_bytes(max_mem: int, entries: int, capacity: int) -> int:
    """A region's share of the memory bound, in proportion to its share of the entries."""
    share = float(max_mem) * float(entries) / float(capacity)
    # The same float operations as the compiled twin, clamped where its cast would overflow.
    return _MAX_SIZE if share >= 9223372036854775807.0 else int(share)


def _door_test(door: list[int], mask: int, y: int, set_bits: bool) -> bool:
    # Two bits per key: words from bits 6.. and 38.., bits from bits 0-5 and 32-37.
    a = (y >> 6) & mask
    b = (y >> 38) & mask
    bit_a = 1 << (y & 63)
    bit_b = 1 << ((y >> 32) & 63)
    present = bool(door[a] & bit_a) and bool(door[b] & bit_b)
    if set_bits:
        door[a] |= bit_a
        door[b] |= bit_b
    return present


@final
class _Ghosts:
    """An insertion-ordered set of at most ``cap`` hashes (the compiled twin's slot list).

    Adding to a full one drops the oldest; adding one already there makes it the newest.
    """

    __slots__ = ("cap", "order")

    def __init__(self) -> None:
        self.cap = 0
        self.order: OrderedDict[int, None] = OrderedDict()  # oldest first

    @property
    def count(self) -> int:
        return len(self.order)

    def add(self, h: int) -> None:
        if self.cap == 0:
            return
        order = self.order
        if h in order:
            order.move_to_end(h)
            return
        if len(order) == self.cap:
            order.popitem(last=False)
        order[h] = None

    def forget(self, h: int) -> bool:
        return self.order.pop(h, _ABSENT) is not _ABSENT

    def resize(self, cap: int) -> None:
        """Keep the newest hashes, in order."""
        self.cap = cap
        while len(self.order) > cap:
            self.order.popitem(last=False)


@final
class LRU:
    """A bounded in-process cache with a choice of policy, optional TTLs, sizes and statistics.

    ``LRU(capacity, hit_rate_window=1000, *, policy="lru", max_memory_bytes=None)``

    ``capacity`` counts entries; ``max_memory_bytes`` (None = unbounded) bounds the sum of the
    entries' byte charges (``memory_bytes``).  ``policy`` chooses what is evicted: ``"lru"``,
    the least recently used entry, or ``"tinylfu"``, W-TinyLFU (frequency-aware admission
    behind an adaptive recency window, after Caffeine), which keeps more hits on most real
    workloads; the module docstring describes it.

    ``len()`` and ``keys()`` include expired entries that have not been collected yet; ``in``,
    ``get``, ``peek``, ``pop``, ``delete`` and ``ttl`` never return one.  ``hit_rate`` is the
    percentage of hits among the last ``hit_rate_window`` ``get()`` calls.  ``evictions``
    counts entries removed to make room (count or memory pressure, including tinylfu's refused
    candidates); ``expirations`` counts expired entries collected by ``get``, ``pop``,
    ``delete`` or ``expire()``; an expired entry pushed out by pressure counts as an eviction,
    and one overwritten by ``set`` as neither.  ``rejected`` counts ``set()`` calls whose entry
    alone exceeds ``max_memory_bytes``.  With ``ghost_capacity > 0`` the cache remembers the
    hashes of the last keys evicted, and ``ghost_hits`` counts ``get()`` misses on them.
    ``memory_bytes`` counts entries only: in the compiled class tinylfu's own structures take
    27-50 bytes per unit of capacity (sketch and doorkeeper 8-16 each, the climber's ghost
    lists 11-18), the ghost list 56-88 bytes per remembered key.

    Synchronous and not thread-safe beyond what the GIL gives; keys whose ``__hash__``/``__eq__``
    call back into the same cache are not supported.

    >>> c = LRU(2, policy="tinylfu", max_memory_bytes=10_000)
    >>> c.set("a", b"payload", size=7)
    >>> c.get("a"), c.memory_bytes
    (b'payload', 143)
    """

    __slots__ = (
        "_map",
        "_root",
        "_probation",
        "_protected",
        "_capacity",
        "_rate_window",
        "_ring",
        "_ring_pos",
        "_ring_fill",
        "_ring_hits",
        "_hits",
        "_misses",
        "_evictions",
        "_expirations",
        "_rejected",
        "_ghost_hits",
        "_tinylfu",
        "_max_mem",
        "_mem",
        "_win_n",
        "_win_bytes",
        "_prot_n",
        "_prot_bytes",
        "_win_max",
        "_prot_max",
        "_win_max_bytes",
        "_prot_max_bytes",
        "_adjust",
        "_rand",
        "_table",
        "_door",
        "_rated",
        "_sketch_sample",
        "_sketch_size",
        "_ghosts",
        "_window_ghosts",
        "_main_ghosts",
    )

    def __init_subclass__(cls, **kwargs: Any) -> NoReturn:
        # The compiled class is final; refusing subclasses here keeps code that works on the
        # pure twin from breaking once the extension is present.
        raise TypeError("mlcache LRU cannot be subclassed")

    def __init__(
        self,
        capacity: int,
        hit_rate_window: int = 1000,
        *,
        policy: str = "lru",
        max_memory_bytes: int | None = None,
    ) -> None:
        self._capacity = _check_size("capacity", capacity)
        self._rate_window = _check_size("hit_rate_window", hit_rate_window)
        if not isinstance(policy, str) or policy not in POLICIES:
            raise ValueError("policy must be 'lru' or 'tinylfu'")
        self._tinylfu = policy == "tinylfu"
        self._max_mem = None if max_memory_bytes is None else _check_size("max_memory_bytes", max_memory_bytes)
        # One byte per outcome: a bytearray costs the same memory as the compiled ring buffer.
        self._ring = bytearray(self._rate_window)
        self._ring_pos = 0
        self._ring_fill = 0
        self._ring_hits = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._rejected = 0
        self._ghost_hits = 0
        self._map: dict[Hashable, _Node] = {}
        self._root = _Node(None, None, 0.0, 0, 0)
        self._probation = _Node(None, None, 0.0, 0, 0)
        self._protected = _Node(None, None, 0.0, 0, 0)
        self._mem = 0
        self._win_n = self._win_bytes = self._prot_n = self._prot_bytes = 0
        self._adjust = 0
        self._rand = 0x9E3779B97F4A7C15
        # The sketch and doorkeeper are allocated once the cache is half full.
        self._table: list[int] = []
        self._door: list[int] = []
        self._rated = 0
        self._sketch_sample = 0
        self._sketch_size = 0
        cap = self._capacity
        self._win_max = cap - int(float(cap) * (1.0 - _WINDOW_PERCENT))
        self._prot_max = self._win_max_bytes = self._prot_max_bytes = 0
        self._set_prot_max()
        self._ghosts = _Ghosts()
        self._window_ghosts = _Ghosts()
        self._main_ghosts = _Ghosts()
        if self._tinylfu:
            self._size_climber_ghosts()

    def __reduce__(self) -> NoReturn:
        # The compiled class cannot be pickled (it holds C pointers); neither can this one, so
        # a program cannot come to depend on something that stops working with the extension.
        raise TypeError("mlcache LRU cannot be pickled or copied")

    def __repr__(self) -> str:
        return f"<mlcache LRU policy={self.policy} capacity={self._capacity} entries={len(self._map)}>"

    # -- linked lists -----------------------------------------------------------------------

    @staticmethod
    def _link_front(root: _Node, node: _Node) -> None:
        first = root.next
        node.prev = root
        node.next = first
        first.prev = node
        root.next = node

    @staticmethod
    def _unlink(node: _Node) -> None:
        prev = node.prev
        nxt = node.next
        prev.next = nxt
        nxt.prev = prev

    def _move_to_front(self, root: _Node, node: _Node) -> None:
        if root.next is node:
            return
        self._unlink(node)
        self._link_front(root, node)

    def _attach(self, node: _Node) -> None:
        """Link a new node at the window's (or the LRU's) front and count it."""
        self._link_front(self._root, node)
        node.linked = True
        node.queue = _WINDOW
        self._win_n += 1
        self._win_bytes += node.charge
        self._mem += node.charge

    def _detach(self, node: _Node) -> None:
        """Unlink a node the dict no longer holds and stop counting it."""
        self._unlink(node)
        node.linked = False
        if node.queue == _WINDOW:
            self._win_n -= 1
            self._win_bytes -= node.charge
        elif node.queue == _PROTECTED:
            self._prot_n -= 1
            self._prot_bytes -= node.charge
            if node.pending:
                self._flush_pending(node)
        self._mem -= node.charge

    def _move(self, node: _Node, queue: int) -> None:
        """Move a linked node to the front of another region's list."""
        charge = node.charge
        if node.queue == _WINDOW:
            self._win_n -= 1
            self._win_bytes -= charge
            node.from_main = False
        elif node.queue == _PROTECTED:
            self._prot_n -= 1
            self._prot_bytes -= charge
            if node.pending:
                self._flush_pending(node)
        self._unlink(node)
        if queue == _WINDOW:
            self._win_n += 1
            self._win_bytes += charge
            self._link_front(self._root, node)
        elif queue == _PROTECTED:
            self._prot_n += 1
            self._prot_bytes += charge
            self._link_front(self._protected, node)
        else:
            self._link_front(self._probation, node)
        node.queue = queue

    def _nodes(self) -> list[_Node]:
        """Every linked node in keys() order: protected, probation, window (or the one list)."""
        out = []
        for root in (self._protected, self._probation, self._root) if self._tinylfu else (self._root,):
            cur = root.next
            while cur is not root:
                out.append(cur)
                cur = cur.next
        return out

    def _discard_node(self, node: _Node) -> bool:
        """Remove this exact node (not merely its key); False if it was already gone."""
        if not node.linked:
            return False
        popped = self._map.pop(node.key, None)
        if popped is node:
            self._detach(node)
            return True
        # The node's key no longer finds it: its hash changed while stored, or it compares
        # equal to another stored key.  Whatever the dict gave back was stored, so it is linked.
        if popped is not None:
            self._detach(popped)
        self._rebuild_without(node)
        return True

    def _rebuild_without(self, node: _Node) -> None:
        # Only reached with keys that break the hash contract.  Re-hashing every stored key
        # is the one way to drop a dict entry its own key cannot reach, and without it the
        # eviction loop would spin forever on a victim it cannot remove.
        if node.linked:
            self._detach(node)
        fresh: dict[Hashable, _Node] = {}
        for n in self._nodes():
            # (A finalizer run by an allocation here may have unlinked n meanwhile.)
            if fresh.setdefault(n.key, n) is not n and n.linked:
                self._detach(n)
        self._map = fresh

    def _record(self, hit: int) -> None:
        pos = self._ring_pos
        if self._ring_fill == self._rate_window:
            self._ring_hits -= self._ring[pos]
        else:
            self._ring_fill += 1
        self._ring[pos] = hit
        self._ring_hits += hit
        pos += 1
        if pos == self._rate_window:
            pos = 0
        self._ring_pos = pos

    # -- eviction -----------------------------------------------------------------------------

    def _over(self) -> bool:
        max_mem = self._max_mem
        return len(self._map) > self._capacity or (max_mem is not None and self._mem > max_mem)

    def _evict(self, node: _Node) -> None:
        """Evict ``node`` to make room: counted, and remembered by the ghost lists."""
        # An entry a grow took from main and that has not been hit since is main's eviction:
        # main, had the window not grown, would have evicted it.
        queue = _PROBATION if node.from_main else node.queue
        if self._discard_node(node):
            self._evictions += 1
            self._ghosts.add(node.hash)
            if self._tinylfu:
                (self._window_ghosts if queue == _WINDOW else self._main_ghosts).add(node.hash)

    def _evict_overflow(self, pinned: _Node | None) -> None:
        """Evict until both bounds hold; ``pinned`` (the entry being set) is never chosen."""
        if self._tinylfu:
            self._evict_tinylfu(pinned)
            return
        while self._over():
            # The pinned entry is normally the most recent, so it is only reached when alone,
            # and then it fits; a finalizer's set() may have put others after it, though.
            node = self._lru_except(self._root, pinned)
            if node is None:
                break
            self._evict(node)
            node = None  # released here, before the lists are read again

    @staticmethod
    def _lru_except(root: _Node, pinned: _Node | None) -> _Node | None:
        """The least recent node of ``root``'s list other than ``pinned``; None if none."""
        node = root.prev
        if node is pinned:
            node = node.prev
        return None if node is root else node

    def _window_over(self) -> bool:
        return self._win_n > self._win_max or (self._max_mem is not None and self._win_bytes > self._win_max_bytes)

    def _evict_tinylfu(self, pinned: _Node | None) -> None:
        # The window's overflow are the admission candidates: while the cache is full each one
        # duels the main region's victim (probation's least recent entry), and the one the
        # sketch has seen less often goes.  Releasing an evicted value may run a finalizer
        # that calls back in, so each turn re-reads the lists and drops its references right
        # after evicting (the compiled twin holds borrowed pointers to the same effect).
        window = self._root
        while self._window_over():
            candidate = self._lru_except(window, None)
            if candidate is None or candidate is pinned:
                break
            if not self._over():
                self._move(candidate, _PROBATION)
                continue
            victim = self._lru_except(self._probation, pinned)
            loser: _Node | None
            if victim is None:
                # Nothing on probation to compare with (tiny caches, a window spanning the
                # whole capacity): the candidate goes, which is plain LRU.
                loser = candidate
            elif self._admit(candidate.hash, victim.hash):
                self._move(candidate, _PROBATION)
                loser = victim
            else:
                loser = candidate
            candidate = victim = None
            self._evict(loser)
            loser = None
        # Still over (a large entry, a lowered bound): the window's least recent entry keeps
        # duelling probation's; with probation empty the window's, then protected's, go.
        while self._over():
            victim = self._lru_except(self._probation, pinned)
            candidate = self._lru_except(window, pinned)
            if victim is None:
                victim = candidate if candidate is not None else self._lru_except(self._protected, pinned)
                if victim is None:
                    break
            elif candidate is not None and not self._admit(candidate.hash, victim.hash):
                victim = candidate
            candidate = None
            self._evict(victim)
            victim = None

    # -- W-TinyLFU: regions, sketch, admission, adaptive window ------------------------------

    def _set_prot_max(self) -> None:
        # Protected is a fixed share of main; under a memory bound each region also gets its
        # share of the bytes, in proportion to its share of the entries.
        cap = self._capacity
        self._prot_max = int(_PROTECTED_PERCENT * float(cap - self._win_max))
        max_mem = self._max_mem
        if max_mem is None:
            self._win_max_bytes = self._prot_max_bytes = 0
        else:
            self._win_max_bytes = _limit_bytes(max_mem, self._win_max, cap)
            self._prot_max_bytes = _limit_bytes(max_mem, self._prot_max, cap)

    def _size_climber_ghosts(self) -> None:
        n = max(1, int(_GHOST_PERCENT * float(self._capacity)))
        self._window_ghosts.resize(n)
        self._main_ghosts.resize(n)

    def _protected_over(self) -> bool:
        return self._prot_n > self._prot_max or (
            self._max_mem is not None and self._prot_bytes > self._prot_max_bytes
        )

    def _demote_protected(self, keep: _Node | None) -> None:
        protected = self._protected
        while self._protected_over():
            node = protected.prev
            if node is protected or node is keep:
                break
            self._move(node, _PROBATION)

    def _touch(self, node: _Node) -> None:
        """A tinylfu access to a stored entry (a get hit or a set of a stored key)."""
        queue = node.queue
        if queue == _PROTECTED:
            self._pend(node)
            self._move_to_front(self._protected, node)
            return
        self._sketch_count(node.hash)
        if queue == _WINDOW:
            self._move_to_front(self._root, node)
            node.from_main = False  # recent in its own right now
        elif self._prot_max == 0 or (self._max_mem is not None and node.charge > self._prot_max_bytes):
            # Protected has no room for it at all: it stays on probation, now the most recent.
            self._move_to_front(self._probation, node)
        else:
            self._move(node, _PROTECTED)
            self._demote_protected(node)

    def _pend(self, node: _Node) -> None:
        # A protected entry's hits wait in the entry and reach the sketch when it leaves
        # protected (demoted, moved to the window, removed) or at the next aging, whichever
        # comes first.  Nothing reads a protected key's frequency in between: admission duels
        # the window's and probation's least recent entries only.  In the compiled twin this
        # spares the common hit a random sketch block (one more cache line): get hit from
        # 0.81 to ~0.9 x the "lru" policy's.  At most 15 wait: a counter saturates at 15, so
        # k increments at once (any order) are min(15, count + k) per counter.  Each counts
        # toward the aging schedule now, as if it had been added.
        if not self._table or node.pending == 15:
            return
        node.pending += 1
        self._sketch_size += 1
        if self._sketch_size >= self._sketch_sample:
            self._sketch_age()

    def _flush_pending(self, node: _Node) -> None:
        table = self._table
        if table:
            mask = len(table) - 1
            x = _spread(node.hash)
            block = (x & (mask >> 3)) << 3
            selectors = x >> 32
            k = node.pending
            for i in range(4):
                bits = (selectors >> (i << 3)) & 0xFF
                slot = block + (bits & 1) + (i << 1)
                shift = ((bits >> 1) & 15) << 2
                count = (table[slot] >> shift) & 0xF
                table[slot] += min(k, 15 - count) << shift
        node.pending = 0

    def _sketch_ensure(self) -> None:
        """Size the sketch once the cache is half full (by entries or bytes), as Caffeine does.

        Sized for the capacity when the entry count is what fills the cache; when a memory
        bound fills it first, for the entries held, growing with them (growing starts over).
        """
        n = len(self._map)
        if n <= self._rated:
            return
        cap = self._capacity
        max_mem = self._max_mem
        if 2 * n >= cap:
            want = cap
        elif max_mem is not None and self._mem >= max_mem - max_mem // 2:
            want = n
        else:
            return
        want = min(want, _SKETCH_MAX)
        length = 8
        while length < want:
            length <<= 1
        if length > len(self._table):
            # Both built before either is published: an allocation may run a finalizer that
            # calls back in, and it must never see a table and doorkeeper of different sizes.
            table = [0] * length
            door = [0] * length
            self._table = table
            self._door = door
            self._sketch_sample = _SKETCH_SAMPLE * want
            self._sketch_size = 0
        self._rated = _MAX_SIZE if want == _SKETCH_MAX else length

    def _sketch_increment(self, h: int) -> None:
        # Caffeine's block layout: the four 4-bit counters of a key live in one 64-byte block
        # (8 words), one counter in each pair of words, chosen by 8 bits of the hash apiece.
        table = self._table
        if not table:
            return
        mask = len(table) - 1
        # A key's first sighting only sets its doorkeeper bits: one-hit wonders never reach
        # the counters.
        if not _door_test(self._door, mask, _spread(h ^ _DOOR_SALT), True):
            return
        self._sketch_count(h)

    def _sketch_count(self, h: int) -> None:
        # A hit counts here directly, past the doorkeeper: the key was stored, so it has been
        # seen before, which is all the doorkeeper checks; skipping it spares the hot path two
        # random memory reads.
        table = self._table
        if not table:
            return
        mask = len(table) - 1
        x = _spread(h)
        block = (x & (mask >> 3)) << 3
        selectors = x >> 32
        added = False
        for i in range(4):
            bits = (selectors >> (i << 3)) & 0xFF
            slot = block + (bits & 1) + (i << 1)
            shift = ((bits >> 1) & 15) << 2
            if (table[slot] >> shift) & 0xF != 0xF:
                table[slot] += 1 << shift
                added = True
        if added:
            self._sketch_size += 1
            if self._sketch_size >= self._sketch_sample:
                self._sketch_age()

    def _sketch_age(self) -> None:
        # Halve every counter so that old popularity fades (TinyLFU's "reset"), and start the
        # doorkeeper afresh.  The protected entries' pending hits join the counters first, to
        # be halved with them (O(capacity), as the halving is).
        protected = self._protected
        cur = protected.next
        while cur is not protected:
            if cur.pending:
                self._flush_pending(cur)
            cur = cur.next
        table = self._table
        odd = 0
        for i, word in enumerate(table):
            odd += (word & _ONE_MASK).bit_count()
            table[i] = (word >> 1) & _RESET_MASK
        self._sketch_size = (self._sketch_size - (odd >> 2)) >> 1
        # Sized from the current table: a finalizer run by an allocation in the loop above
        # may have grown the sketch meanwhile.
        door = [0] * len(self._table)
        self._door = door

    def _frequency(self, h: int) -> int:
        table = self._table
        if not table:
            return 0
        mask = len(table) - 1
        x = _spread(h)
        block = (x & (mask >> 3)) << 3
        selectors = x >> 32
        freq = 15
        for i in range(4):
            bits = (selectors >> (i << 3)) & 0xFF
            count = (table[block + (bits & 1) + (i << 1)] >> (((bits >> 1) & 15) << 2)) & 0xF
            if count < freq:
                freq = count
        return freq + _door_test(self._door, mask, _spread(h ^ _DOOR_SALT), False)

    def _admit(self, candidate: int, victim: int) -> bool:
        """True if the candidate (by hash) should replace the victim."""
        victim_freq = self._frequency(victim)
        candidate_freq = self._frequency(candidate)
        if candidate_freq > victim_freq:
            return True
        if candidate_freq >= _ADMIT_HASHDOS:
            # A warm candidate that ties or loses still gets in 1 time in 128, so that an
            # attacker cannot pin a victim by inflating its colliding counters (Caffeine).
            # xorshift64: deterministic, identical in both twins.
            r = self._rand
            r ^= (r << 13) & _M64
            r ^= r >> 7
            r ^= (r << 17) & _M64
            self._rand = r
            return (r & 127) == 0
        return False

    def _adapt(self) -> None:
        """Move up to _TRANSFER_LIMIT entries between window and main toward ``_adjust``.

        Growing takes main's least recent entries (probation first) into the window, as
        Caffeine does; shrinking sends the window's least recent ones to probation.  Unlike
        Caffeine, an entry that crosses joins the other region at its *least recent* end
        (after ``anchor``, that end before the moves, so a batch keeps its order), not its
        most recent: moving the boundary changes no entry's place in the eviction order.  A
        window shrink therefore admits nobody to main for free (the entry is probation's next
        victim and duels the window's next candidate), and a grow gives main's victim no
        fresh window lifetime (it is the window's next candidate).  A grown entry is marked
        ``from_main`` until it is hit or leaves the window: evicted as a losing candidate, it
        was main's eviction, so it goes to main's ghost list.  Without that, every entry a
        grow pushed out would land in the window's ghosts and ask for more growth (on
        lirs-sprite 10% the window overshot to the whole cache, -0.13 point).
        """
        moved = 0
        if self._adjust > 0:
            quota = min(self._adjust, self._capacity - self._win_max)
            anchor = self._root.prev
            while moved < quota and moved < _TRANSFER_LIMIT:
                node = self._probation.prev
                if node is self._probation:
                    node = self._protected.prev
                    if node is self._protected:
                        break
                self._move(node, _WINDOW)
                self._unlink(node)
                self._link_front(anchor, node)
                node.from_main = True
                moved += 1
            self._win_max += moved
            self._adjust = quota - moved
        else:
            quota = min(-self._adjust, self._win_max - 1)
            anchor = self._probation.prev
            while moved < quota and moved < _TRANSFER_LIMIT:
                node = self._root.prev
                if node is self._root:
                    break
                self._move(node, _PROBATION)
                self._unlink(node)
                self._link_front(anchor, node)
                moved += 1
            self._win_max -= moved
            self._adjust = -(quota - moved)
        self._set_prot_max()
        self._demote_protected(None)

    # -- lookups ------------------------------------------------------------------------------

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value for ``key`` (now the most recently used), else ``default``; counted."""
        node = self._map.get(key)
        if node is None:
            self._misses += 1
            self._record(0)
            if self._ghosts.count and self._ghosts.forget(hash(key)):
                self._ghost_hits += 1
            return default
        expires_at = node.expires_at
        if expires_at > 0.0 and monotonic() >= expires_at:
            if self._discard_node(node):
                self._expirations += 1
            self._misses += 1
            self._record(0)
            return default
        if self._tinylfu:
            self._touch(node)
        else:
            self._move_to_front(self._root, node)
        self._hits += 1
        self._record(1)
        return node.value

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """Like ``get`` but leaves recency, frequency, statistics and expired entries alone."""
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
        """Stored keys (expired-but-uncollected ones included), in a fixed order.

        ``"lru"``: most recently used first.  ``"tinylfu"``: the protected region, then
        probation, then the window, each most recently used first -- roughly the entries most
        worth keeping first, though tinylfu's next victim is not simply the last key.
        """
        return [node.key for node in self._nodes()]

    # -- updates ------------------------------------------------------------------------------

    def set(self, key: Hashable, value: Any, ttl: float | None = None, size: int | None = None) -> None:
        """Store ``value``, expiring ``ttl`` seconds from now, counting ``size`` bytes.

        ``size`` is the caller's estimate of the entry's bytes (None: ``sys.getsizeof(key) +
        sys.getsizeof(value)``, shallow); ``ENTRY_OVERHEAD`` is added to it.  An entry larger
        than ``max_memory_bytes`` is not stored (any older value of the key is dropped) and is
        counted in ``rejected``.  The entry just set is never the one evicted to make room.
        """
        expires_at = _deadline(ttl)
        charge = _charge(key, value, size)
        if self._max_mem is not None and charge > self._max_mem:
            self._reject(key)
            return
        node = self._map.get(key)
        if node is None:
            h = hash(key)
            # Set again: no longer a key the cache merely remembers.
            self._ghosts.forget(h)
            if self._tinylfu and self._table:
                # A miss on a key just evicted from one side is a hit that side, one entry
                # larger, would have had: climb one entry toward it.
                if self._window_ghosts.forget(h):
                    self._adjust += 1
                elif self._main_ghosts.forget(h):
                    self._adjust -= 1
            fresh = _Node(key, value, expires_at, h, charge)
            node = self._map.setdefault(key, fresh)
            if node is fresh:
                self._attach(fresh)
                if self._tinylfu:
                    self._sketch_ensure()
                    self._sketch_increment(h)
                    self._evict_overflow(fresh)
                    if self._adjust:
                        self._adapt()
                else:
                    self._evict_overflow(fresh)
                return
            # Otherwise the key was stored while it was being hashed (a re-entrant __hash__):
            # fall through and update that entry instead of orphaning it.
        if self._tinylfu:
            self._touch(node)
        else:
            self._move_to_front(self._root, node)
        node.expires_at = expires_at
        delta = charge - node.charge
        if delta:
            node.charge = charge
            self._mem += delta
            if node.queue == _WINDOW:
                self._win_bytes += delta
            elif node.queue == _PROTECTED:
                self._prot_bytes += delta
        # The old value is released on return, as in the compiled twin: dropping it may run
        # arbitrary code (__del__), which must find the structure consistent.
        old = node.value  # noqa: F841
        node.value = value
        if delta > 0 and self._max_mem is not None:
            if self._tinylfu:
                self._demote_protected(node)
            self._evict_overflow(node)

    def _reject(self, key: Hashable) -> None:
        h = hash(key)
        node = self._map.pop(key, None)
        self._rejected += 1
        if node is not None:
            # The old value is now out of date; dropping it is neither eviction nor expiry.
            self._detach(node)
        self._ghosts.forget(h)

    def delete(self, key: Hashable) -> bool:
        """Remove ``key``; True only if it was present and not expired."""
        node = self._map.pop(key, None)
        if node is None:
            return False
        self._detach(node)
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
        self._detach(node)
        expires_at = node.expires_at
        if expires_at > 0.0 and monotonic() >= expires_at:
            self._expirations += 1
            return default
        return node.value

    def clear(self) -> None:
        """Remove every entry; statistics, frequencies and ghosts are kept."""
        old = self._map
        # Reset the structure before the old entries are released: their values' finalizers
        # may call back into this cache and must find it empty and consistent.
        for root in (self._root, self._probation, self._protected):
            cur = root.next
            while cur is not root:
                cur.linked = False
                cur = cur.next
            root.prev = root.next = root
        self._win_n = self._win_bytes = self._prot_n = self._prot_bytes = self._mem = 0
        self._map = {}
        old.clear()

    def expire(self) -> int:
        """Remove every expired entry now (O(n)); return how many were removed."""
        now = monotonic()
        dead = [n for n in self._nodes() if n.expires_at > 0.0 and now >= n.expires_at]
        count = 0
        for node in dead:
            # Re-checked because a finalizer run by an earlier removal may have refreshed it.
            expires_at = node.expires_at
            if expires_at > 0.0 and now >= expires_at and self._discard_node(node):
                self._expirations += 1
                count += 1
        return count

    # -- sizes and statistics -----------------------------------------------------------------

    @property
    def policy(self) -> Literal["lru", "tinylfu"]:
        """``"lru"`` or ``"tinylfu"``, fixed at construction."""
        return "tinylfu" if self._tinylfu else "lru"

    @property
    def capacity(self) -> int:
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        new = _check_size("capacity", value)
        old = self._capacity
        self._capacity = new
        if self._tinylfu and new != old:
            # Keep the learned window share (Caffeine starts over at its default, but mlcache
            # resizes its L1 at run time).
            self._win_max = max(1, int(float(self._win_max) * (float(new) / float(old))))
            self._adjust = 0
            self._set_prot_max()
            self._size_climber_ghosts()
            self._demote_protected(None)
        else:
            self._set_prot_max()
        self._evict_overflow(None)

    @property
    def max_memory_bytes(self) -> int | None:
        """Bound on ``memory_bytes`` (None: unbounded); lowering it evicts at once."""
        return self._max_mem

    @max_memory_bytes.setter
    def max_memory_bytes(self, value: int | None) -> None:
        self._max_mem = None if value is None else _check_size("max_memory_bytes", value)
        self._set_prot_max()
        if self._tinylfu:
            self._demote_protected(None)
        self._evict_overflow(None)

    @property
    def memory_bytes(self) -> int:
        """Sum of the stored entries' charges (size or estimate, plus ``ENTRY_OVERHEAD``)."""
        return self._mem

    @property
    def ghost_capacity(self) -> int:
        """How many evicted keys are remembered for ``ghost_hits``; 0 (the default) = off.

        Keys are remembered by ``hash(key)`` only (8 bytes, no reference to the key): another
        key with the same hash counts as remembered, which for str keys (64-bit SipHash) has
        a negligible chance, though ``hash(-1) == hash(-2)``.  Shrinking keeps the newest.
        """
        return self._ghosts.cap

    @ghost_capacity.setter
    def ghost_capacity(self, value: int) -> None:
        self._ghosts.resize(_check_size("ghost_capacity", value, 0))

    @property
    def hit_rate_window(self) -> int:
        return self._rate_window

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
    def rejected(self) -> int:
        """``set()`` calls refused because the entry alone exceeded ``max_memory_bytes``."""
        return self._rejected

    @property
    def ghost_hits(self) -> int:
        """``get()`` misses on a remembered evicted key (a larger cache would have hit)."""
        return self._ghost_hits

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
        self._rejected = 0
        self._ghost_hits = 0
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
            "hit_rate_window": self._rate_window,
            "ghost_hits": self._ghost_hits,
            "memory_bytes": self._mem,
            "max_memory_bytes": self._max_mem,
            "policy": self.policy,
            "rejected": self._rejected,
        }
