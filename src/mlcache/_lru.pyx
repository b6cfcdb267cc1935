# cython: binding=False, embedsignature=True, embedsignature.format=clinic, autotestdict=False
"""The L1 in-process LRU, compiled.  ``mlcache._lru_py`` is its pure-Python twin.

Both must behave identically (the tests drive them side by side), so every method here
follows the same steps as its twin; read that file for the design notes.  What differs is
how it is fast:

* The list links are borrowed ``PyObject*`` pointers, not references: moving an entry to
  the front is four pointer stores with no reference counting, and the list makes no
  reference cycles for the garbage collector to find.  The dict alone owns the nodes, which
  is safe only while "a node is linked if and only if the dict holds it".  Every removal
  therefore pops from the dict first and unlinks exactly the node the dict gave back, with
  no Python code able to run in between.
* Values are replaced, and removed nodes released, only once the structure is consistent
  again, because releasing an object may run its ``__del__``, which may call back in.
* The clock is read only for entries that have an expiry.
* ``binding=False`` makes the methods plain C method descriptors, which CPython's
  specialising interpreter calls faster than Cython's function objects (about 14% more
  get() calls per second when measured).  ``embedsignature.format=clinic`` gives them back
  a ``__text_signature__``, so ``inspect.signature`` and stubtest still work.
* A small freelist on the node class lets insert-with-eviction churn reuse node memory.
"""
cimport cython
from cpython.dict cimport PyDict_GetItemWithError, PyDict_SetDefault
from cpython.object cimport PyObject
from libc.stdlib cimport calloc, free

import sys

# POSIX builds use clock_gettime(CLOCK_MONOTONIC), the clock behind time.monotonic() on
# Linux.  posix.time is not cimported because it does not exist on Windows, and the wheels
# are built for Windows too; macOS uses mach_absolute_time so old deployment targets that
# lack clock_gettime still link.
cdef extern from *:
    """
    #if defined(_WIN32)
    #ifndef WIN32_LEAN_AND_MEAN
    #define WIN32_LEAN_AND_MEAN
    #endif
    #include <windows.h>
    static double mlc_monotonic(void) {
        static double scale = 0.0;
        LARGE_INTEGER now;
        if (scale == 0.0) {
            LARGE_INTEGER freq;
            QueryPerformanceFrequency(&freq);
            scale = 1.0 / (double)freq.QuadPart;
        }
        QueryPerformanceCounter(&now);
        return (double)now.QuadPart * scale;
    }
    #elif defined(__APPLE__)
    #include <mach/mach_time.h>
    static double mlc_monotonic(void) {
        static double scale = 0.0;
        if (scale == 0.0) {
            mach_timebase_info_data_t tb;
            mach_timebase_info(&tb);
            scale = (double)tb.numer / (double)tb.denom * 1e-9;
        }
        return (double)mach_absolute_time() * scale;
    }
    #else
    #include <time.h>
    static double mlc_monotonic(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    #endif
    """
    double mlc_monotonic() noexcept nogil


cdef Py_ssize_t _check_size(str name, object value) except -1:
    # bool is an int subclass; LRU(True) is always a mistake, never "capacity 1".
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1")
    if value > sys.maxsize:
        raise ValueError(f"{name} must be <= sys.maxsize")
    return value


cdef double _deadline(object ttl) except -1.0:
    """Absolute monotonic expiry time for ``ttl`` seconds from now; 0.0 means never."""
    cdef double seconds
    if ttl is None:
        return 0.0
    # Exact-type tests first: they are pointer compares (bool is its own type, so it is not
    # let through), while the isinstance() checks below cost more than the rest of set().
    if type(ttl) is float or type(ttl) is int:
        seconds = ttl
    elif isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be an int or float of seconds, or None, not {type(ttl).__name__}")
    else:
        seconds = float(ttl)
    # Written as "not >" so that NaN is refused too.
    if not seconds > 0.0:
        raise ValueError("ttl must be > 0 seconds, or None")
    return mlc_monotonic() + seconds


@cython.final
@cython.freelist(64)
cdef class _Node:
    cdef object key
    cdef object value
    cdef double expires_at
    # Borrowed: the owning LRU's dict (or, for the sentinel, the LRU itself) keeps nodes alive.
    cdef PyObject* prev
    cdef PyObject* next
    cdef bint linked


# Pointer-level helpers: no reference counting and no Python code, so nothing can observe
# the list half-updated.
cdef inline void _link_after(PyObject* root, PyObject* node) noexcept:
    cdef PyObject* first = (<_Node>root).next
    (<_Node>node).prev = root
    (<_Node>node).next = first
    (<_Node>first).prev = node
    (<_Node>root).next = node


cdef inline void _unlink(PyObject* node) noexcept:
    cdef PyObject* prev = (<_Node>node).prev
    cdef PyObject* nxt = (<_Node>node).next
    (<_Node>prev).next = nxt
    (<_Node>nxt).prev = prev
    (<_Node>node).linked = False


cdef inline void _move_to_front(PyObject* root, PyObject* node) noexcept:
    cdef PyObject* prev
    cdef PyObject* nxt
    if (<_Node>root).next == node:
        return
    prev = (<_Node>node).prev
    nxt = (<_Node>node).next
    (<_Node>prev).next = nxt
    (<_Node>nxt).prev = prev
    _link_after(root, node)


cdef inline bint _is_expired(double expires_at) noexcept:
    return expires_at > 0.0 and mlc_monotonic() >= expires_at


@cython.final
cdef class LRU:
    # The first lines are a signature in Argument Clinic form, from which CPython derives
    # __text_signature__, so inspect.signature(LRU) and stubtest work on the compiled class.
    """LRU(capacity, hit_rate_window=1000)
--

A bounded least-recently-used map with optional per-entry TTL and hit statistics.

    ``capacity`` counts entries.  ``len()`` and ``keys()`` include expired entries that have
    not been collected yet; ``in``, ``get``, ``peek``, ``pop``, ``delete`` and ``ttl`` never
    return one.  ``hit_rate`` is the percentage of hits among the last ``hit_rate_window``
    ``get()`` calls.  ``expirations`` counts expired entries collected by ``get``, ``pop``,
    ``delete`` or ``expire()``; an expired entry pushed out by capacity counts as an eviction,
    and one overwritten by ``set`` as neither.  Synchronous and not thread-safe beyond what the
    GIL gives; keys whose ``__hash__``/``__eq__`` call back into the same LRU are not supported.
    """

    cdef dict _map
    cdef _Node _root
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _window
    cdef unsigned char* _ring
    cdef Py_ssize_t _ring_pos
    cdef Py_ssize_t _ring_fill
    cdef Py_ssize_t _ring_hits
    cdef unsigned long long _hits
    cdef unsigned long long _misses
    cdef unsigned long long _evictions
    cdef unsigned long long _expirations

    # __cinit__ rather than __init__: it runs exactly once, so the ring buffer and the
    # sentinel exist before any method can be called, even via LRU.__new__.
    def __cinit__(self, capacity, hit_rate_window=1000):
        cdef _Node root
        self._capacity = _check_size("capacity", capacity)
        self._window = _check_size("hit_rate_window", hit_rate_window)
        self._ring = <unsigned char*>calloc(<size_t>self._window, 1)
        if self._ring is NULL:
            raise MemoryError()
        self._map = {}
        root = _Node.__new__(_Node)
        root.prev = <PyObject*>root
        root.next = <PyObject*>root
        self._root = root

    def __dealloc__(self):
        free(self._ring)

    def __reduce__(self):
        raise TypeError("mlcache LRU cannot be pickled or copied")

    def __repr__(self):
        return f"<mlcache LRU capacity={self._capacity} entries={len(self._map)}>"

    # -- internals ------------------------------------------------------------------------

    cdef inline void _record(self, unsigned char hit) noexcept:
        cdef Py_ssize_t pos = self._ring_pos
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

    cdef bint _discard_node(self, _Node node) except -1:
        """Remove this exact node (not merely its key); False if it was already gone."""
        cdef object popped
        if not node.linked:
            return False
        popped = self._map.pop(node.key, None)
        if popped is node:
            _unlink(<PyObject*>node)
            return True
        # The node's key no longer finds it: its hash changed while stored, or it compares
        # equal to another stored key.  Whatever the dict gave back was stored, so it is linked.
        if popped is not None:
            _unlink(<PyObject*>popped)
        self._rebuild_without(node)
        return True

    cdef int _rebuild_without(self, _Node node) except -1:
        # Only reached with keys that break the hash contract.  Re-hashing every stored key
        # is the one way to drop a dict entry its own key cannot reach; without it the
        # eviction loop would spin forever on a tail it cannot remove.
        cdef PyObject* root = <PyObject*>self._root
        cdef PyObject* cur
        cdef list nodes = []
        cdef dict fresh = {}
        cdef _Node n
        if node.linked:
            _unlink(<PyObject*>node)
        cur = (<_Node>root).next
        while cur != root:
            nodes.append(<_Node>cur)
            cur = (<_Node>cur).next
        for n in nodes:
            if fresh.setdefault(n.key, n) is not n:
                _unlink(<PyObject*>n)
        self._map = fresh
        return 0

    cdef int _evict_overflow(self) except -1:
        cdef _Node root = self._root
        while len(self._map) > self._capacity and root.prev != <PyObject*>root:
            if self._discard_node(<_Node>root.prev):
                self._evictions += 1
        return 0

    # -- lookups --------------------------------------------------------------------------

    def get(self, key, default=None):
        """The value for ``key`` (now the most recently used), else ``default``; counted."""
        # The hit path works on the dict's borrowed pointer: nothing in it can run Python
        # code, so the node cannot go away before the value is returned (and increfed).
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        if found is NULL:
            self._misses += 1
            self._record(0)
            return default
        if _is_expired((<_Node>found).expires_at):
            self._collect_expired(found)
            return default
        _move_to_front(<PyObject*>self._root, found)
        self._hits += 1
        self._record(1)
        return (<_Node>found).value

    cdef int _collect_expired(self, PyObject* found) except -1:
        # Off the hot path.  ``node`` is a real reference: removal releases the dict's.
        cdef _Node node = <_Node>found
        if self._discard_node(node):
            self._expirations += 1
        self._misses += 1
        self._record(0)
        return 0

    def peek(self, key, default=None):
        """Like ``get`` but leaves recency, statistics and expired entries alone."""
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        if found is NULL or _is_expired((<_Node>found).expires_at):
            return default
        return (<_Node>found).value

    def __contains__(self, key):
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        return found is not NULL and not _is_expired((<_Node>found).expires_at)

    def ttl(self, key):
        """Seconds ``key`` has left, or None if it never expires; KeyError if absent/expired."""
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        cdef double expires_at, remaining
        if found is NULL:
            raise KeyError(key)
        expires_at = (<_Node>found).expires_at
        if expires_at <= 0.0:
            return None
        remaining = expires_at - mlc_monotonic()
        if remaining <= 0.0:
            raise KeyError(key)
        return remaining

    def __len__(self):
        return len(self._map)

    def keys(self):
        """Stored keys, most recently used first (expired-but-uncollected ones included)."""
        cdef list out = []
        cdef PyObject* root = <PyObject*>self._root
        cdef PyObject* cur = (<_Node>root).next
        while cur != root:
            out.append((<_Node>cur).key)
            cur = (<_Node>cur).next
        return out

    # -- updates --------------------------------------------------------------------------

    def set(self, key, value, ttl=None):
        """Store ``value`` as the most recently used entry, expiring ``ttl`` seconds from now."""
        cdef double expires_at = _deadline(ttl)
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        cdef _Node node, fresh
        cdef object old
        if found is NULL:
            fresh = _Node.__new__(_Node)
            fresh.key = key
            fresh.value = value
            fresh.expires_at = expires_at
            # setdefault rather than a plain store: if a re-entrant __hash__ stored the key
            # meanwhile, a store would release that node while it is still linked.
            found = PyDict_SetDefault(self._map, key, fresh)
            if found == <PyObject*>fresh:
                _link_after(<PyObject*>self._root, found)
                fresh.linked = True
                self._evict_overflow()
                return None
        node = <_Node>found
        _move_to_front(<PyObject*>self._root, found)
        node.expires_at = expires_at
        # Keep the old value alive in a local until return: Cython releases the old attribute
        # value before storing the new one, and its __del__ could otherwise see a dangling
        # pointer.
        old = node.value
        node.value = value
        return None

    def delete(self, key):
        """Remove ``key``; True only if it was present and not expired."""
        cdef object popped = self._map.pop(key, None)
        cdef _Node node
        if popped is None:
            return False
        node = <_Node>popped
        _unlink(<PyObject*>node)
        if _is_expired(node.expires_at):
            self._expirations += 1
            return False
        return True

    def pop(self, key, default=None):
        """Remove ``key`` and return its value; ``default`` if absent or expired."""
        cdef object popped = self._map.pop(key, None)
        cdef _Node node
        if popped is None:
            return default
        node = <_Node>popped
        _unlink(<PyObject*>node)
        if _is_expired(node.expires_at):
            self._expirations += 1
            return default
        return node.value

    def clear(self):
        """Remove every entry; statistics are kept."""
        cdef dict old = self._map
        cdef PyObject* root = <PyObject*>self._root
        cdef PyObject* cur = (<_Node>root).next
        # Reset the structure before the old entries are released: their values' finalizers
        # may call back into this LRU and must find it empty and consistent.
        while cur != root:
            (<_Node>cur).linked = False
            cur = (<_Node>cur).next
        (<_Node>root).prev = root
        (<_Node>root).next = root
        self._map = {}
        old.clear()

    def expire(self):
        """Remove every expired entry now (O(n)); return how many were removed."""
        cdef double now = mlc_monotonic()
        cdef list dead = []
        cdef PyObject* root = <PyObject*>self._root
        cdef PyObject* cur = (<_Node>root).next
        cdef double expires_at
        cdef _Node node
        cdef Py_ssize_t count = 0
        while cur != root:
            expires_at = (<_Node>cur).expires_at
            if expires_at > 0.0 and now >= expires_at:
                dead.append(<_Node>cur)
            cur = (<_Node>cur).next
        for node in dead:
            # Re-checked because a finalizer run by an earlier removal may have refreshed it.
            expires_at = node.expires_at
            if expires_at > 0.0 and now >= expires_at and self._discard_node(node):
                self._expirations += 1
                count += 1
        return count

    # -- sizes and statistics -------------------------------------------------------------

    @property
    def capacity(self):
        return self._capacity

    @capacity.setter
    def capacity(self, value):
        self._capacity = _check_size("capacity", value)
        self._evict_overflow()

    @property
    def hit_rate_window(self):
        return self._window

    @property
    def hits(self):
        return self._hits

    @property
    def misses(self):
        return self._misses

    @property
    def evictions(self):
        return self._evictions

    @property
    def expirations(self):
        return self._expirations

    @property
    def hit_rate(self):
        """Percent (0.0-100.0) of hits among the last ``hit_rate_window`` ``get()`` calls."""
        if self._ring_fill == 0:
            return 0.0
        return 100.0 * <double>self._ring_hits / <double>self._ring_fill

    def reset_stats(self):
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._ring_pos = 0
        self._ring_fill = 0
        self._ring_hits = 0

    def stats(self):
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
