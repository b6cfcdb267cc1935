# cython: binding=False, embedsignature=True, embedsignature.format=clinic, autotestdict=False
"""The L1 in-process cache, compiled.  ``mlcache._lru_py`` is its pure-Python twin.

Both must behave identically (the tests drive them side by side), so every method here
follows the same steps as its twin, down to each integer and floating-point operation of the
tinylfu policy; read that file for the design notes.  What differs is how it is fast:

* The list links are borrowed ``PyObject*`` pointers, not references: moving an entry to
  the front is four pointer stores with no reference counting, and the lists make no
  reference cycles for the garbage collector to find.  The dict alone owns the nodes, which
  is safe only while "a node is linked if and only if the dict holds it".  Every removal
  therefore pops from the dict first and unlinks exactly the node the dict gave back, with
  no Python code able to run in between.
* Values are replaced, and removed nodes released, only once the structure is consistent
  again, because releasing an object may run its ``__del__``, which may call back in.  For
  the same reason the eviction loops keep no borrowed pointer across an eviction.
* The clock is read only for entries that have an expiry.
* ``binding=False`` makes the methods plain C method descriptors, which CPython's
  specialising interpreter calls faster than Cython's function objects (about 14% more
  get() calls per second when measured).  ``embedsignature.format=clinic`` gives them back
  a ``__text_signature__``, so ``inspect.signature`` and stubtest still work.
* A small freelist on the node class lets insert-with-eviction churn reuse node memory.
* The "lru" get() hit pays one predictable branch for the policy and nothing else.  The
  tinylfu hit allocates nothing: the frequency sketch and its doorkeeper are C arrays of
  64-bit words, and the ghost lists C slot arrays plus C hash tables (hashes only), touched
  on inserts, evictions and misses only; all allocated with PyMem (tracemalloc sees them).
* The default size estimate computes what sys.getsizeof returns for exact ASCII str, bytes,
  int, float and None without calling it: two calls would cost five times a whole set().
"""
cimport cython
from cpython.dict cimport PyDict_GetItemWithError, PyDict_SetDefault
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.stdlib cimport calloc, free
from libc.string cimport memset

import sys

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

cdef object _getsizeof = sys.getsizeof

cdef extern from "Python.h":
    # Cython's cpython.object declares PyObject_Hash as returning long, which is 32 bits on
    # Windows; Py_hash_t is pointer-sized everywhere.
    Py_hash_t _hash "PyObject_Hash"(object o) except? -1

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


# The frequency sketch, its doorkeeper and the ghost lists: plain arithmetic on 64-bit words,
# which the pure twin reproduces with masks.
cdef extern from *:
    """
    #include <stdint.h>

    /* murmur3's 64-bit finalizer: Python's hashes of small ints are the ints themselves. */
    static inline uint64_t mlc_spread(uint64_t x) {
        x ^= x >> 33;
        x *= 0xFF51AFD7ED558CCDULL;
        x ^= x >> 33;
        x *= 0xC4CEB9FE1A85EC53ULL;
        x ^= x >> 33;
        return x;
    }

    /* Count-min sketch, Caffeine's layout: a key's four 4-bit counters share one 64-byte
       block (8 words); counter i is in word block + 2i + one selector bit, at the nibble the
       next 4 selector bits name.  The block comes from the low bits, selectors from the high. */
    static inline int mlc_sketch_frequency(const uint64_t *table, uint64_t mask, uint64_t x) {
        uint64_t block = (x & mask) << 3, sel = x >> 32;
        int i, freq = 15;
        for (i = 0; i < 4; i++) {
            unsigned bits = (unsigned)((sel >> (i << 3)) & 0xFF);
            int count = (int)((table[block + (bits & 1) + (i << 1)] >> (((bits >> 1) & 15) << 2)) & 0xF);
            if (count < freq) freq = count;
        }
        return freq;
    }

    static inline int mlc_sketch_increment(uint64_t *table, uint64_t mask, uint64_t x) {
        uint64_t block = (x & mask) << 3, sel = x >> 32;
        int i, added = 0;
        for (i = 0; i < 4; i++) {
            unsigned bits = (unsigned)((sel >> (i << 3)) & 0xFF);
            uint64_t *word = &table[block + (bits & 1) + (i << 1)];
            unsigned shift = ((bits >> 1) & 15) << 2;
            if (((*word >> shift) & 0xF) != 0xF) {
                *word += (uint64_t)1 << shift;
                added = 1;
            }
        }
        return added;
    }

    static inline int mlc_popcount64(uint64_t x) {
    #if defined(__GNUC__) || defined(__clang__)
        return __builtin_popcountll(x);
    #else
        x = x - ((x >> 1) & 0x5555555555555555ULL);
        x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
        x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
        return (int)((x * 0x0101010101010101ULL) >> 56);
    #endif
    }

    /* Halve every counter; return how many were odd (what the halving rounded away). */
    static Py_ssize_t mlc_sketch_age(uint64_t *table, Py_ssize_t n) {
        Py_ssize_t i, odd = 0;
        for (i = 0; i < n; i++) {
            odd += mlc_popcount64(table[i] & 0x1111111111111111ULL);
            table[i] = (table[i] >> 1) & 0x7777777777777777ULL;
        }
        return odd;
    }

    /* Doorkeeper: a Bloom filter with two bits per key (word from bits 6.. and 38.., bit
       from bits 0-5 and 32-37 of its own hash).  Returns whether both were already set. */
    static inline int mlc_door_test(const uint64_t *bits, uint64_t mask, uint64_t y) {
        uint64_t a = (y >> 6) & mask, b = (y >> 38) & mask;
        return ((bits[a] >> (y & 63)) & 1) && ((bits[b] >> ((y >> 32) & 63)) & 1);
    }

    static inline int mlc_door_test_set(uint64_t *bits, uint64_t mask, uint64_t y) {
        uint64_t a = (y >> 6) & mask, b = (y >> 38) & mask;
        int present = ((bits[a] >> (y & 63)) & 1) && ((bits[b] >> ((y >> 32) & 63)) & 1);
        bits[a] |= (uint64_t)1 << (y & 63);
        bits[b] |= (uint64_t)1 << ((y >> 32) & 63);
        return present;
    }

    /* Ghost list: an insertion-ordered set of at most `cap` hashes; adding to a full one
       drops the oldest, adding one already there makes it the newest.  Each hash lives in a
       slot of a fixed array, the slots in use form a doubly linked list (oldest to newest),
       the free ones a stack, and a linear-probing table (at most half full) maps a hash to
       its slot.  Slots never move, so table deletions can shift entries back freely (no
       tombstones), and every operation is O(1) with no allocation. */
    typedef struct { Py_hash_t hash; Py_ssize_t slot; } mlc_gentry;
    typedef struct { Py_hash_t hash; Py_ssize_t prev, next; } mlc_gslot;

    typedef struct {
        mlc_gslot *slots;
        mlc_gentry *table;
        Py_ssize_t cap, count, mask, oldest, newest, free;
    } mlc_ghosts;

    static Py_ssize_t mlc_ghost_find(const mlc_ghosts *g, Py_hash_t h) {
        Py_ssize_t i = (Py_ssize_t)(mlc_spread((uint64_t)h) & (uint64_t)g->mask);
        while (g->table[i].slot >= 0) {
            if (g->table[i].hash == h) return i;
            i = (i + 1) & g->mask;
        }
        return -1;
    }

    static void mlc_ghost_delete(mlc_ghosts *g, Py_ssize_t i) {
        Py_ssize_t j = i, k;
        for (;;) {
            j = (j + 1) & g->mask;
            if (g->table[j].slot < 0) break;
            k = (Py_ssize_t)(mlc_spread((uint64_t)g->table[j].hash) & (uint64_t)g->mask);
            /* t[j] stays unless its home slot k lies cyclically outside (i, j]. */
            if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) continue;
            g->table[i] = g->table[j];
            i = j;
        }
        g->table[i].slot = -1;
    }

    static void mlc_ghost_unlink(mlc_ghosts *g, Py_ssize_t s) {
        Py_ssize_t p = g->slots[s].prev, n = g->slots[s].next;
        if (p >= 0) g->slots[p].next = n; else g->oldest = n;
        if (n >= 0) g->slots[n].prev = p; else g->newest = p;
    }

    static void mlc_ghost_link_newest(mlc_ghosts *g, Py_ssize_t s) {
        g->slots[s].prev = g->newest;
        g->slots[s].next = -1;
        if (g->newest >= 0) g->slots[g->newest].next = s; else g->oldest = s;
        g->newest = s;
    }

    static void mlc_ghosts_add(mlc_ghosts *g, Py_hash_t h) {
        Py_ssize_t i, s;
        if (g->cap == 0) return;
        i = mlc_ghost_find(g, h);
        if (i >= 0) {
            s = g->table[i].slot;
            mlc_ghost_unlink(g, s);
            mlc_ghost_link_newest(g, s);
            return;
        }
        if (g->count == g->cap) {
            s = g->oldest;
            mlc_ghost_unlink(g, s);
            mlc_ghost_delete(g, mlc_ghost_find(g, g->slots[s].hash));
        } else {
            s = g->free;
            g->free = g->slots[s].next;
            g->count++;
        }
        g->slots[s].hash = h;
        mlc_ghost_link_newest(g, s);
        i = (Py_ssize_t)(mlc_spread((uint64_t)h) & (uint64_t)g->mask);
        while (g->table[i].slot >= 0) i = (i + 1) & g->mask;
        g->table[i].hash = h;
        g->table[i].slot = s;
    }

    static int mlc_ghosts_forget(mlc_ghosts *g, Py_hash_t h) {
        Py_ssize_t i, s;
        if (g->count == 0) return 0;
        i = mlc_ghost_find(g, h);
        if (i < 0) return 0;
        s = g->table[i].slot;
        mlc_ghost_delete(g, i);
        mlc_ghost_unlink(g, s);
        g->slots[s].next = g->free;
        g->free = s;
        g->count--;
        return 1;
    }

    static void mlc_ghosts_free(mlc_ghosts *g) {
        PyMem_Free(g->slots);
        PyMem_Free(g->table);
        g->slots = NULL;
        g->table = NULL;
        g->cap = g->count = g->mask = 0;
        g->oldest = g->newest = g->free = -1;
    }

    /* Resize, keeping the newest hashes in order; -1 (g untouched) if out of memory. */
    static int mlc_ghosts_resize(mlc_ghosts *g, Py_ssize_t cap) {
        mlc_ghosts n;
        Py_ssize_t i, s, length = 2, skip;
        n.slots = NULL; n.table = NULL; n.cap = cap; n.count = 0; n.mask = 0;
        n.oldest = n.newest = n.free = -1;
        if (cap > 0) {
            while (length < 2 * cap) length <<= 1;
            n.slots = (mlc_gslot *)PyMem_Malloc((size_t)cap * sizeof(mlc_gslot));
            n.table = (mlc_gentry *)PyMem_Malloc((size_t)length * sizeof(mlc_gentry));
            if (n.slots == NULL || n.table == NULL) { PyMem_Free(n.slots); PyMem_Free(n.table); return -1; }
            for (i = 0; i < length; i++) n.table[i].slot = -1;
            for (i = 0; i < cap; i++) n.slots[i].next = i + 1 < cap ? i + 1 : -1;
            n.free = 0;
            n.mask = length - 1;
            skip = g->count > cap ? g->count - cap : 0;
            for (s = g->oldest; s >= 0; s = g->slots[s].next) {
                if (skip) { skip--; continue; }
                mlc_ghosts_add(&n, g->slots[s].hash);
            }
        }
        mlc_ghosts_free(g);
        *g = n;
        return 0;
    }

    /* sys.getsizeof(o) for a few exact types, without the call; -1 = not one of them.  The
       tests compare it with sys.getsizeof on every supported version. */
    static Py_ssize_t mlc_sizeof_fast(PyObject *o) {
        PyTypeObject *t = Py_TYPE(o);
        if (t == &PyUnicode_Type) {
            if (PyUnicode_IS_COMPACT_ASCII(o)
    #if PY_VERSION_HEX < 0x030C0000
                /* a wchar_t copy, if one was ever made, is counted by str.__sizeof__ */
                && ((PyASCIIObject *)o)->wstr == NULL
    #endif
            )
                return (Py_ssize_t)sizeof(PyASCIIObject) + PyUnicode_GET_LENGTH(o) + 1;
            return -1;
        }
    #if PY_VERSION_HEX < 0x030C0000
        /* Nonzero ints only: 0 counts one digit from 3.11 on, none before; 3.12 changed
           the int layout, and there the call is made. */
        if (t == &PyLong_Type && Py_SIZE(o) != 0)
            return (Py_ssize_t)offsetof(PyLongObject, ob_digit)
                   + Py_ABS(Py_SIZE(o)) * (Py_ssize_t)sizeof(digit);
    #endif
        if (t == &PyBytes_Type)
            return t->tp_basicsize + Py_SIZE(o);
        if (t == &PyFloat_Type || o == Py_None)
            return t->tp_basicsize;
        return -1;
    }
    """
    uint64_t mlc_spread(uint64_t x) noexcept nogil
    int mlc_sketch_frequency(const uint64_t* table, uint64_t mask, uint64_t x) noexcept nogil
    int mlc_sketch_increment(uint64_t* table, uint64_t mask, uint64_t x) noexcept nogil
    Py_ssize_t mlc_sketch_age(uint64_t* table, Py_ssize_t n) noexcept nogil
    int mlc_door_test(const uint64_t* bits, uint64_t mask, uint64_t y) noexcept nogil
    int mlc_door_test_set(uint64_t* bits, uint64_t mask, uint64_t y) noexcept nogil
    ctypedef struct mlc_ghosts:
        Py_ssize_t cap
        Py_ssize_t count
    void mlc_ghosts_add(mlc_ghosts* g, Py_hash_t h) noexcept nogil
    int mlc_ghosts_forget(mlc_ghosts* g, Py_hash_t h) noexcept nogil
    void mlc_ghosts_free(mlc_ghosts* g) noexcept nogil
    int mlc_ghosts_resize(mlc_ghosts* g, Py_ssize_t cap) noexcept nogil
    Py_ssize_t mlc_sizeof_fast(PyObject* o) noexcept


POLICIES = ("lru", "tinylfu")
# The pure twin documents these numbers; both modules define the same values.
ENTRY_OVERHEAD = 136
MAX_ENTRY_SIZE = 1 << 48
cdef Py_ssize_t _OVERHEAD = 136
cdef long long _MAX_ENTRY = 1LL << 48

cdef enum:
    _WINDOW = 0
    _PROBATION = 1
    _PROTECTED = 2

# W-TinyLFU tuning, explained in the pure twin.
cdef double _WINDOW_PERCENT = 0.10
cdef double _PROTECTED_PERCENT = 0.80
cdef double _GHOST_PERCENT = 0.10
cdef Py_ssize_t _SKETCH_SAMPLE = 20
cdef Py_ssize_t _SKETCH_MAX = 1 << 24
cdef uint64_t _DOOR_SALT = 0x5555
cdef Py_ssize_t _TRANSFER_LIMIT = 64
cdef int _ADMIT_HASHDOS = 6


cdef Py_ssize_t _check_size(str name, object value, Py_ssize_t minimum=1) except -1:
    # bool is an int subclass; LRU(True) is always a mistake, never "capacity 1".
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
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


cdef inline Py_ssize_t _shallow_size(object o) except -1:
    cdef Py_ssize_t n = mlc_sizeof_fast(<PyObject*>o)
    if n >= 0:
        return n
    return _getsizeof(o)


cdef inline Py_ssize_t _charge(object key, object value, object size) except -1:
    """Bytes an entry counts for: ``size`` (or a shallow estimate) plus the fixed overhead."""
    cdef Py_ssize_t a, b
    cdef long long n
    cdef int overflow = 0
    if size is None:
        a = _shallow_size(key)
        b = _shallow_size(value)
        # min(a + b, MAX_ENTRY_SIZE) without overflowing.
        if a > _MAX_ENTRY or b > _MAX_ENTRY or a + b > _MAX_ENTRY:
            return <Py_ssize_t>_MAX_ENTRY + _OVERHEAD
        return a + b + _OVERHEAD
    if type(size) is not int:
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"size must be an int of bytes, or None, not {type(size).__name__}")
        size = int(size)
    n = PyLong_AsLongLongAndOverflow(size, &overflow)
    if overflow < 0 or (overflow == 0 and n < 0):
        raise ValueError("size must be >= 0 bytes, or None")
    if overflow > 0 or n > _MAX_ENTRY:
        raise ValueError("size must be <= 2**48 bytes")
    return <Py_ssize_t>n + _OVERHEAD


cdef inline Py_ssize_t _limit_bytes(Py_ssize_t max_mem, Py_ssize_t entries, Py_ssize_t capacity) noexcept:
    """A region's share of the memory bound, in proportion to its share of the entries."""
    cdef double share = <double>max_mem * <double>entries / <double>capacity
    # 2**63 and above would overflow the cast (the pure twin clamps the same way).
    return PY_SSIZE_T_MAX if share >= 9223372036854775807.0 else <Py_ssize_t>share


@cython.final
@cython.freelist(64)
cdef class _Node:
    cdef object key
    cdef object value
    cdef double expires_at
    # Borrowed: the owning LRU's dict (or, for the sentinels, the LRU itself) keeps nodes alive.
    cdef PyObject* prev
    cdef PyObject* next
    cdef Py_hash_t hash
    cdef Py_ssize_t charge
    cdef bint linked
    cdef unsigned char queue


# Pointer-level helpers: no reference counting and no Python code, so nothing can observe
# the lists half-updated.
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


cdef _Node _sentinel():
    cdef _Node root = _Node.__new__(_Node)
    root.prev = <PyObject*>root
    root.next = <PyObject*>root
    return root


@cython.final
cdef class LRU:
    # The first lines are a signature in Argument Clinic form, from which CPython derives
    # __text_signature__, so inspect.signature(LRU) and stubtest work on the compiled class.
    """LRU(capacity, hit_rate_window=1000, *, policy='lru', max_memory_bytes=None)
--

A bounded in-process cache with a choice of policy, optional TTLs, sizes and statistics.

    ``capacity`` counts entries; ``max_memory_bytes`` (None = unbounded) bounds the sum of the
    entries' byte charges (``memory_bytes``).  ``policy`` chooses what is evicted: ``"lru"``,
    the least recently used entry, or ``"tinylfu"``, W-TinyLFU (frequency-aware admission
    behind an adaptive recency window, after Caffeine), which keeps more hits on most real
    workloads; see ``mlcache._lru_py`` for the design.

    ``len()`` and ``keys()`` include expired entries that have not been collected yet; ``in``,
    ``get``, ``peek``, ``pop``, ``delete`` and ``ttl`` never return one.  ``hit_rate`` is the
    percentage of hits among the last ``hit_rate_window`` ``get()`` calls.  ``evictions``
    counts entries removed to make room (count or memory pressure, including tinylfu's refused
    candidates); ``expirations`` counts expired entries collected by ``get``, ``pop``,
    ``delete`` or ``expire()``; an expired entry pushed out by pressure counts as an eviction,
    and one overwritten by ``set`` as neither.  ``rejected`` counts ``set()`` calls whose entry
    alone exceeds ``max_memory_bytes``.  With ``ghost_capacity > 0`` the cache remembers the
    hashes of the last keys evicted, and ``ghost_hits`` counts ``get()`` misses on them.
    ``memory_bytes`` counts entries only: tinylfu's own structures take 27-50 bytes per unit
    of capacity, the ghost list 56-88 bytes per remembered key.

    Synchronous and not thread-safe beyond what the GIL gives; keys whose ``__hash__``/``__eq__``
    call back into the same cache are not supported.
    """

    cdef dict _map
    cdef _Node _root            # the one list under "lru"; the window under "tinylfu"
    cdef _Node _probation
    cdef _Node _protected
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _rate_window
    cdef unsigned char* _ring
    cdef Py_ssize_t _ring_pos
    cdef Py_ssize_t _ring_fill
    cdef Py_ssize_t _ring_hits
    cdef unsigned long long _hits
    cdef unsigned long long _misses
    cdef unsigned long long _evictions
    cdef unsigned long long _expirations
    cdef unsigned long long _rejected
    cdef unsigned long long _ghost_hits
    cdef bint _tinylfu
    cdef Py_ssize_t _max_mem    # -1: unbounded
    # Unsigned: with a bound near sys.maxsize a total may pass it for an instant.
    cdef unsigned long long _mem
    # W-TinyLFU regions: counts, bytes and limits (probation holds the rest).
    cdef Py_ssize_t _win_n
    cdef unsigned long long _win_bytes
    cdef Py_ssize_t _prot_n
    cdef unsigned long long _prot_bytes
    cdef Py_ssize_t _win_max
    cdef Py_ssize_t _prot_max
    cdef Py_ssize_t _win_max_bytes
    cdef Py_ssize_t _prot_max_bytes
    cdef Py_ssize_t _adjust     # window entries still to move (+ grow, - shrink)
    cdef uint64_t _rand
    # Frequency sketch and doorkeeper: NULL until the cache is half full.
    cdef uint64_t* _table
    cdef uint64_t* _door
    cdef Py_ssize_t _table_len
    cdef Py_ssize_t _rated
    cdef Py_ssize_t _sketch_sample
    cdef Py_ssize_t _sketch_size
    # Hashes of keys evicted for room (public), and from each side for the window's climber.
    cdef mlc_ghosts _ghosts
    cdef mlc_ghosts _window_ghosts
    cdef mlc_ghosts _main_ghosts

    # __cinit__ rather than __init__: it runs exactly once, so the ring buffer and the
    # sentinels exist before any method can be called, even via LRU.__new__.
    def __cinit__(self, capacity, hit_rate_window=1000, *, policy="lru", max_memory_bytes=None):
        cdef Py_ssize_t cap
        # Empty ghost lists first (zeroed memory is not one: its list ends would be slot 0).
        mlc_ghosts_free(&self._ghosts)
        mlc_ghosts_free(&self._window_ghosts)
        mlc_ghosts_free(&self._main_ghosts)
        self._capacity = _check_size("capacity", capacity)
        self._rate_window = _check_size("hit_rate_window", hit_rate_window)
        if not isinstance(policy, str) or policy not in POLICIES:
            raise ValueError("policy must be 'lru' or 'tinylfu'")
        self._tinylfu = policy == "tinylfu"
        self._max_mem = -1 if max_memory_bytes is None else _check_size("max_memory_bytes", max_memory_bytes)
        self._ring = <unsigned char*>calloc(<size_t>self._rate_window, 1)
        if self._ring is NULL:
            raise MemoryError()
        self._map = {}
        self._root = _sentinel()
        self._probation = _sentinel()
        self._protected = _sentinel()
        self._rand = 0x9E3779B97F4A7C15ULL
        cap = self._capacity
        self._win_max = cap - <Py_ssize_t>(<double>cap * (1.0 - _WINDOW_PERCENT))
        self._set_prot_max()
        if self._tinylfu:
            self._size_climber_ghosts()

    def __dealloc__(self):
        free(self._ring)
        PyMem_Free(self._table)
        PyMem_Free(self._door)
        mlc_ghosts_free(&self._ghosts)
        mlc_ghosts_free(&self._window_ghosts)
        mlc_ghosts_free(&self._main_ghosts)

    def __reduce__(self):
        raise TypeError("mlcache LRU cannot be pickled or copied")

    def __repr__(self):
        return f"<mlcache LRU policy={self.policy} capacity={self._capacity} entries={len(self._map)}>"

    # -- internals ------------------------------------------------------------------------

    cdef inline void _record(self, unsigned char hit) noexcept:
        cdef Py_ssize_t pos = self._ring_pos
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

    cdef void _attach(self, _Node node) noexcept:
        """Link a new node at the window's (or the LRU's) front and count it."""
        _link_after(<PyObject*>self._root, <PyObject*>node)
        node.linked = True
        node.queue = _WINDOW
        self._win_n += 1
        self._win_bytes += <unsigned long long>node.charge
        self._mem += <unsigned long long>node.charge

    cdef void _detach(self, _Node node) noexcept:
        """Unlink a node the dict no longer holds and stop counting it."""
        _unlink(<PyObject*>node)
        node.linked = False
        if node.queue == _WINDOW:
            self._win_n -= 1
            self._win_bytes -= <unsigned long long>node.charge
        elif node.queue == _PROTECTED:
            self._prot_n -= 1
            self._prot_bytes -= <unsigned long long>node.charge
        self._mem -= <unsigned long long>node.charge

    cdef void _move(self, PyObject* node, unsigned char queue) noexcept:
        """Move a linked node to the front of another region's list."""
        cdef unsigned long long charge = <unsigned long long>(<_Node>node).charge
        cdef unsigned char old = (<_Node>node).queue
        if old == _WINDOW:
            self._win_n -= 1
            self._win_bytes -= charge
        elif old == _PROTECTED:
            self._prot_n -= 1
            self._prot_bytes -= charge
        _unlink(node)
        if queue == _WINDOW:
            self._win_n += 1
            self._win_bytes += charge
            _link_after(<PyObject*>self._root, node)
        elif queue == _PROTECTED:
            self._prot_n += 1
            self._prot_bytes += charge
            _link_after(<PyObject*>self._protected, node)
        else:
            _link_after(<PyObject*>self._probation, node)
        (<_Node>node).queue = queue

    cdef list _nodes(self):
        """Every linked node in keys() order: protected, probation, window (or the one list)."""
        cdef list out = []
        cdef _Node root
        cdef PyObject* cur
        for root in ((self._protected, self._probation, self._root) if self._tinylfu else (self._root,)):
            cur = root.next
            while cur != <PyObject*>root:
                out.append(<_Node>cur)
                cur = (<_Node>cur).next
        return out

    cdef bint _discard_node(self, _Node node) except -1:
        """Remove this exact node (not merely its key); False if it was already gone."""
        cdef object popped
        if not node.linked:
            return False
        popped = self._map.pop(node.key, None)
        if popped is node:
            self._detach(node)
            return True
        # The node's key no longer finds it: its hash changed while stored, or it compares
        # equal to another stored key.  Whatever the dict gave back was stored, so it is linked.
        if popped is not None:
            self._detach(<_Node>popped)
        self._rebuild_without(node)
        return True

    cdef int _rebuild_without(self, _Node node) except -1:
        # Only reached with keys that break the hash contract.  Re-hashing every stored key
        # is the one way to drop a dict entry its own key cannot reach; without it the
        # eviction loop would spin forever on a victim it cannot remove.
        cdef dict fresh = {}
        cdef _Node n
        if node.linked:
            self._detach(node)
        for n in self._nodes():
            # (A finalizer run by an allocation here may have unlinked n meanwhile.)
            if fresh.setdefault(n.key, n) is not n and n.linked:
                self._detach(n)
        self._map = fresh
        return 0

    # -- eviction ---------------------------------------------------------------------------

    cdef inline bint _over(self) noexcept:
        return len(self._map) > self._capacity or (
            self._max_mem >= 0 and self._mem > <unsigned long long>self._max_mem)

    cdef int _evict(self, _Node node) except -1:
        """Evict ``node`` to make room: counted, and remembered by the ghost lists."""
        # Callers pass borrowed pointers: own the node until the bookkeeping below is done,
        # so that it (and its value's finalizer) goes only as this method returns.
        cdef _Node keep = node
        cdef unsigned char queue = node.queue
        if self._discard_node(keep):
            self._evictions += 1
            if self._ghosts.cap:
                mlc_ghosts_add(&self._ghosts, keep.hash)
            if self._tinylfu:
                mlc_ghosts_add(&self._window_ghosts if queue == _WINDOW else &self._main_ghosts, keep.hash)
        return 0

    cdef int _evict_overflow(self, _Node pinned) except -1:
        """Evict until both bounds hold; ``pinned`` (the entry being set) is never chosen."""
        cdef PyObject* pin = NULL if pinned is None else <PyObject*>pinned
        cdef PyObject* node
        if self._tinylfu:
            return self._evict_tinylfu(pin)
        while self._over():
            # The pinned entry is normally the most recent, so it is only reached when alone,
            # and then it fits; a finalizer's set() may have put others after it, though.
            node = self._lru_except(self._root, pin)
            if node == NULL:
                break
            self._evict(<_Node>node)
        return 0

    cdef inline PyObject* _lru_except(self, _Node root, PyObject* pinned) noexcept:
        """The least recent node of ``root``'s list other than ``pinned``; NULL if none."""
        cdef PyObject* node = root.prev
        if node == pinned:
            node = (<_Node>node).prev
        return NULL if node == <PyObject*>root else node

    cdef inline bint _window_over(self) noexcept:
        return self._win_n > self._win_max or (
            self._max_mem >= 0 and self._win_bytes > <unsigned long long>self._win_max_bytes)

    cdef int _evict_tinylfu(self, PyObject* pin) except -1:
        # Borrowed pointers, re-read every turn; _evict() owns the node it is given until it
        # returns.  Releasing an evicted value may run a finalizer that calls back in, after
        # which no pointer read before is used.
        cdef PyObject* candidate
        cdef PyObject* victim
        while self._window_over():
            candidate = self._lru_except(self._root, NULL)
            if candidate == NULL or candidate == pin:
                break
            if not self._over():
                self._move(candidate, _PROBATION)
                continue
            victim = self._lru_except(self._probation, pin)
            if victim == NULL:
                self._evict(<_Node>candidate)
            elif self._admit((<_Node>candidate).hash, (<_Node>victim).hash):
                self._move(candidate, _PROBATION)
                self._evict(<_Node>victim)
            else:
                self._evict(<_Node>candidate)
        while self._over():
            victim = self._lru_except(self._probation, pin)
            candidate = self._lru_except(self._root, pin)
            if victim == NULL:
                victim = candidate if candidate != NULL else self._lru_except(self._protected, pin)
                if victim == NULL:
                    break
            elif candidate != NULL and not self._admit((<_Node>candidate).hash, (<_Node>victim).hash):
                victim = candidate
            self._evict(<_Node>victim)
        return 0

    # -- W-TinyLFU: regions, sketch, admission, adaptive window ---------------------------

    cdef void _set_prot_max(self) noexcept:
        self._prot_max = <Py_ssize_t>(_PROTECTED_PERCENT * <double>(self._capacity - self._win_max))
        if self._max_mem < 0:
            self._win_max_bytes = 0
            self._prot_max_bytes = 0
        else:
            self._win_max_bytes = _limit_bytes(self._max_mem, self._win_max, self._capacity)
            self._prot_max_bytes = _limit_bytes(self._max_mem, self._prot_max, self._capacity)

    cdef int _size_climber_ghosts(self) except -1:
        cdef Py_ssize_t n = <Py_ssize_t>(_GHOST_PERCENT * <double>self._capacity)
        if n < 1:
            n = 1
        if mlc_ghosts_resize(&self._window_ghosts, n) or mlc_ghosts_resize(&self._main_ghosts, n):
            raise MemoryError()
        return 0

    cdef inline bint _protected_over(self) noexcept:
        return self._prot_n > self._prot_max or (
            self._max_mem >= 0 and self._prot_bytes > <unsigned long long>self._prot_max_bytes)

    cdef void _demote_protected(self, PyObject* keep) noexcept:
        cdef PyObject* protected = <PyObject*>self._protected
        cdef PyObject* node
        while self._protected_over():
            node = (<_Node>protected).prev
            if node == protected or node == keep:
                break
            self._move(node, _PROBATION)

    cdef inline void _touch(self, PyObject* node) noexcept:
        """A tinylfu access to a stored entry (a get hit or a set of a stored key)."""
        cdef unsigned char queue = (<_Node>node).queue
        self._sketch_increment((<_Node>node).hash)
        if queue == _WINDOW:
            _move_to_front(<PyObject*>self._root, node)
        elif queue == _PROTECTED:
            _move_to_front(<PyObject*>self._protected, node)
        elif self._prot_max == 0 or (
                self._max_mem >= 0 and (<_Node>node).charge > self._prot_max_bytes):
            _move_to_front(<PyObject*>self._probation, node)
        else:
            self._move(node, _PROTECTED)
            self._demote_protected(node)

    cdef int _sketch_ensure(self) except -1:
        cdef Py_ssize_t n = len(self._map)
        cdef Py_ssize_t want, length
        cdef uint64_t* table
        cdef uint64_t* door
        if n <= self._rated:
            return 0
        if 2 * n >= self._capacity:
            want = self._capacity
        elif self._max_mem >= 0 and self._mem >= <unsigned long long>(self._max_mem - self._max_mem // 2):
            want = n
        else:
            return 0
        if want > _SKETCH_MAX:
            want = _SKETCH_MAX
        length = 8
        while length < want:
            length <<= 1
        if length > self._table_len:
            table = <uint64_t*>PyMem_Calloc(<size_t>length, sizeof(uint64_t))
            door = <uint64_t*>PyMem_Calloc(<size_t>length, sizeof(uint64_t))
            if table is NULL or door is NULL:
                PyMem_Free(table)
                PyMem_Free(door)
                raise MemoryError()
            PyMem_Free(self._table)
            PyMem_Free(self._door)
            self._table = table
            self._door = door
            self._table_len = length
            self._sketch_sample = _SKETCH_SAMPLE * want
            self._sketch_size = 0
        self._rated = PY_SSIZE_T_MAX if want == _SKETCH_MAX else length
        return 0

    cdef inline void _sketch_increment(self, Py_hash_t h) noexcept:
        cdef uint64_t mask = <uint64_t>self._table_len - 1
        if self._table is NULL:
            return
        # A key's first sighting only sets its doorkeeper bits: one-hit wonders never reach
        # the counters.
        if not mlc_door_test_set(self._door, mask, mlc_spread(<uint64_t>h ^ _DOOR_SALT)):
            return
        if mlc_sketch_increment(self._table, mask >> 3, mlc_spread(<uint64_t>h)):
            self._sketch_size += 1
            if self._sketch_size >= self._sketch_sample:
                # Aging: O(table) once per _SKETCH_SAMPLE x rated increments, O(1) amortized.
                self._sketch_size = (self._sketch_size - (mlc_sketch_age(self._table, self._table_len) >> 2)) >> 1
                memset(self._door, 0, <size_t>self._table_len * sizeof(uint64_t))

    cdef inline int _frequency(self, Py_hash_t h) noexcept:
        cdef uint64_t mask = <uint64_t>self._table_len - 1
        if self._table is NULL:
            return 0
        return mlc_sketch_frequency(self._table, mask >> 3, mlc_spread(<uint64_t>h)) + mlc_door_test(
            self._door, mask, mlc_spread(<uint64_t>h ^ _DOOR_SALT))

    cdef bint _admit(self, Py_hash_t candidate, Py_hash_t victim) noexcept:
        cdef int victim_freq = self._frequency(victim)
        cdef int candidate_freq = self._frequency(candidate)
        cdef uint64_t r
        if candidate_freq > victim_freq:
            return True
        if candidate_freq >= _ADMIT_HASHDOS:
            r = self._rand
            r ^= r << 13
            r ^= r >> 7
            r ^= r << 17
            self._rand = r
            return (r & 127) == 0
        return False

    cdef void _adapt(self) noexcept:
        cdef Py_ssize_t quota, moved = 0
        cdef PyObject* node
        if self._adjust > 0:
            quota = self._capacity - self._win_max
            if self._adjust < quota:
                quota = self._adjust
            while moved < quota and moved < _TRANSFER_LIMIT:
                node = self._probation.prev
                if node == <PyObject*>self._probation:
                    node = self._protected.prev
                    if node == <PyObject*>self._protected:
                        break
                self._move(node, _WINDOW)
                moved += 1
            self._win_max += moved
        else:
            quota = self._win_max - 1
            if -self._adjust < quota:
                quota = -self._adjust
            while moved < quota and moved < _TRANSFER_LIMIT:
                node = self._root.prev
                if node == <PyObject*>self._root:
                    break
                self._move(node, _PROBATION)
                moved += 1
            self._win_max -= moved
        self._adjust = (quota - moved) if self._adjust > 0 else -(quota - moved)
        self._set_prot_max()
        self._demote_protected(NULL)

    # -- lookups --------------------------------------------------------------------------

    def get(self, key, default=None):
        """The value for ``key`` (now the most recently used), else ``default``; counted."""
        # The hit path works on the dict's borrowed pointer: nothing in it can run Python
        # code, so the node cannot go away before the value is returned (and increfed).
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        if found is NULL:
            self._misses += 1
            self._record(0)
            if self._ghosts.count:
                self._ghost_check(key)
            return default
        if _is_expired((<_Node>found).expires_at):
            self._collect_expired(found)
            return default
        if self._tinylfu:
            self._touch(found)
        else:
            _move_to_front(<PyObject*>self._root, found)
        self._hits += 1
        self._record(1)
        return (<_Node>found).value

    cdef int _ghost_check(self, object key) except -1:
        # Hashing again is cheap (str caches its hash) and happens only on misses with ghosts.
        if mlc_ghosts_forget(&self._ghosts, _hash(key)):
            self._ghost_hits += 1
        return 0

    cdef int _collect_expired(self, PyObject* found) except -1:
        # Off the hot path.  ``node`` is a real reference: removal releases the dict's.
        cdef _Node node = <_Node>found
        if self._discard_node(node):
            self._expirations += 1
        self._misses += 1
        self._record(0)
        return 0

    def peek(self, key, default=None):
        """Like ``get`` but leaves recency, frequency, statistics and expired entries alone."""
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
        """Stored keys (expired-but-uncollected ones included), in a fixed order.

        ``"lru"``: most recently used first.  ``"tinylfu"``: the protected region, then
        probation, then the window, each most recently used first.
        """
        return [(<_Node>n).key for n in self._nodes()]

    # -- updates --------------------------------------------------------------------------

    def set(self, key, value, ttl=None, size=None):
        """Store ``value``, expiring ``ttl`` seconds from now, counting ``size`` bytes.

        ``size`` is the caller's estimate of the entry's bytes (None: ``sys.getsizeof(key) +
        sys.getsizeof(value)``, shallow); ``ENTRY_OVERHEAD`` is added to it.  An entry larger
        than ``max_memory_bytes`` is not stored (any older value of the key is dropped) and is
        counted in ``rejected``.  The entry just set is never the one evicted to make room.
        """
        cdef double expires_at = _deadline(ttl)
        cdef Py_ssize_t charge = _charge(key, value, size)
        cdef PyObject* found
        cdef _Node node, fresh
        cdef object old
        cdef Py_hash_t h
        cdef Py_ssize_t delta
        if self._max_mem >= 0 and charge > self._max_mem:
            self._reject(key)
            return None
        found = PyDict_GetItemWithError(self._map, key)
        if found is NULL:
            h = _hash(key)
            if self._ghosts.count:
                mlc_ghosts_forget(&self._ghosts, h)
            if self._tinylfu and self._table is not NULL:
                # A miss on a key just evicted from one side is a hit that side, one entry
                # larger, would have had: climb one entry toward it.
                if mlc_ghosts_forget(&self._window_ghosts, h):
                    self._adjust += 1
                elif mlc_ghosts_forget(&self._main_ghosts, h):
                    self._adjust -= 1
            fresh = _Node.__new__(_Node)
            fresh.key = key
            fresh.value = value
            fresh.expires_at = expires_at
            fresh.hash = h
            fresh.charge = charge
            # setdefault rather than a plain store: if a re-entrant __hash__ stored the key
            # meanwhile, a store would release that node while it is still linked.
            found = PyDict_SetDefault(self._map, key, fresh)
            if found == <PyObject*>fresh:
                self._attach(fresh)
                if self._tinylfu:
                    self._sketch_ensure()
                    self._sketch_increment(h)
                    self._evict_overflow(fresh)
                    if self._adjust:
                        self._adapt()
                else:
                    self._evict_overflow(fresh)
                return None
        node = <_Node>found
        if self._tinylfu:
            self._touch(found)
        else:
            _move_to_front(<PyObject*>self._root, found)
        node.expires_at = expires_at
        delta = charge - node.charge
        if delta:
            node.charge = charge
            self._mem += <unsigned long long>delta
            if node.queue == _WINDOW:
                self._win_bytes += <unsigned long long>delta
            elif node.queue == _PROTECTED:
                self._prot_bytes += <unsigned long long>delta
        # Keep the old value alive in a local until return: Cython releases the old attribute
        # value before storing the new one, and its __del__ could otherwise see a dangling
        # pointer.
        old = node.value
        node.value = value
        if delta > 0 and self._max_mem >= 0:
            if self._tinylfu:
                self._demote_protected(<PyObject*>node)
            self._evict_overflow(node)
        return None

    cdef int _reject(self, object key) except -1:
        cdef Py_hash_t h = _hash(key)
        cdef object popped = self._map.pop(key, None)
        self._rejected += 1
        if popped is not None:
            # The old value is now out of date; dropping it is neither eviction nor expiry.
            self._detach(<_Node>popped)
        mlc_ghosts_forget(&self._ghosts, h)
        return 0

    def delete(self, key):
        """Remove ``key``; True only if it was present and not expired."""
        cdef object popped = self._map.pop(key, None)
        cdef _Node node
        if popped is None:
            return False
        node = <_Node>popped
        self._detach(node)
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
        self._detach(node)
        if _is_expired(node.expires_at):
            self._expirations += 1
            return default
        return node.value

    def clear(self):
        """Remove every entry; statistics, frequencies and ghosts are kept."""
        cdef dict old = self._map
        cdef _Node root
        cdef PyObject* cur
        # Reset the structure before the old entries are released: their values' finalizers
        # may call back into this cache and must find it empty and consistent.  The walk
        # allocates nothing, so no finalizer can run during it.
        for root in (self._root, self._probation, self._protected):
            cur = root.next
            while cur != <PyObject*>root:
                (<_Node>cur).linked = False
                cur = (<_Node>cur).next
            root.prev = <PyObject*>root
            root.next = <PyObject*>root
        self._win_n = 0
        self._prot_n = 0
        self._win_bytes = 0
        self._prot_bytes = 0
        self._mem = 0
        self._map = {}
        old.clear()

    def expire(self):
        """Remove every expired entry now (O(n)); return how many were removed."""
        cdef double now = mlc_monotonic()
        cdef list dead = []
        cdef double expires_at
        cdef _Node node
        cdef Py_ssize_t count = 0
        for node in self._nodes():
            expires_at = node.expires_at
            if expires_at > 0.0 and now >= expires_at:
                dead.append(node)
        for node in dead:
            # Re-checked because a finalizer run by an earlier removal may have refreshed it.
            expires_at = node.expires_at
            if expires_at > 0.0 and now >= expires_at and self._discard_node(node):
                self._expirations += 1
                count += 1
        return count

    # -- sizes and statistics -------------------------------------------------------------

    @property
    def policy(self):
        """``"lru"`` or ``"tinylfu"``, fixed at construction."""
        return "tinylfu" if self._tinylfu else "lru"

    @property
    def capacity(self):
        return self._capacity

    @capacity.setter
    def capacity(self, value):
        cdef Py_ssize_t new = _check_size("capacity", value)
        cdef Py_ssize_t old = self._capacity
        self._capacity = new
        if self._tinylfu and new != old:
            self._win_max = <Py_ssize_t>(<double>self._win_max * (<double>new / <double>old))
            if self._win_max < 1:
                self._win_max = 1
            self._adjust = 0
            self._set_prot_max()
            self._size_climber_ghosts()
            self._demote_protected(NULL)
        else:
            self._set_prot_max()
        self._evict_overflow(None)

    @property
    def max_memory_bytes(self):
        """Bound on ``memory_bytes`` (None: unbounded); lowering it evicts at once."""
        return None if self._max_mem < 0 else self._max_mem

    @max_memory_bytes.setter
    def max_memory_bytes(self, value):
        self._max_mem = -1 if value is None else _check_size("max_memory_bytes", value)
        self._set_prot_max()
        if self._tinylfu:
            self._demote_protected(NULL)
        self._evict_overflow(None)

    @property
    def memory_bytes(self):
        """Sum of the stored entries' charges (size or estimate, plus ``ENTRY_OVERHEAD``)."""
        return self._mem

    @property
    def ghost_capacity(self):
        """How many evicted keys are remembered for ``ghost_hits``; 0 (the default) = off.

        Keys are remembered by ``hash(key)`` only (8 bytes, no reference to the key): another
        key with the same hash counts as remembered, which for str keys (64-bit SipHash) has
        a negligible chance, though ``hash(-1) == hash(-2)``.  Shrinking keeps the newest.
        """
        return self._ghosts.cap

    @ghost_capacity.setter
    def ghost_capacity(self, value):
        if mlc_ghosts_resize(&self._ghosts, _check_size("ghost_capacity", value, 0)):
            raise MemoryError()

    @property
    def hit_rate_window(self):
        return self._rate_window

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
    def rejected(self):
        """``set()`` calls refused because the entry alone exceeded ``max_memory_bytes``."""
        return self._rejected

    @property
    def ghost_hits(self):
        """``get()`` misses on a remembered evicted key (a larger cache would have hit)."""
        return self._ghost_hits

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
        self._rejected = 0
        self._ghost_hits = 0
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
            "hit_rate_window": self._rate_window,
            "ghost_hits": self._ghost_hits,
            "memory_bytes": self._mem,
            "max_memory_bytes": self.max_memory_bytes,
            "policy": self.policy,
            "rejected": self._rejected,
        }
