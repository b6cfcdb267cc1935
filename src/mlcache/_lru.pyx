# cython: binding=False, embedsignature=True, embedsignature.format=clinic, autotestdict=False
"""The L1 in-process cache, compiled.  ``mlcache._lru_py`` is its pure-Python twin.

Both must behave identically (the tests drive them side by side), so every method here
follows the same steps as its twin, down to each integer and floating-point operation of the
tinylfu policy; read that file for the design notes.  What differs is how it is fast:

* Storage is one C hash table (``_lru_table.h``), not a dict of node objects: each entry holds
  the key, the value, the hash, the expiry, the charge and its list links (entry numbers), and
  the index compares 32-bit tags before touching an entry.  A hit reads the index slot and the
  entry; an insert that evicts allocates nothing and never probes through deletion dummies.
  That made get 1.4x and insert-with-eviction 3x faster than the dict design, and an entry
  takes ~75 bytes instead of ~127 (measured in benchmarks/).
* Entry numbers and pointers are good only until Python code runs (a finalizer may remove or
  reuse an entry, an insert may move the array): removals take the references out, finish
  the bookkeeping and release them last.  A stored key's ``__eq__`` is the one call made
  mid-lookup, and a lookup it changed the table under starts again.
* The class supports the cycle collector through the table: its traverse and clear slots are
  replaced once the class is ready (``mlc_install_gc``).
* The clock is read only for entries that have an expiry.
* ``binding=False`` makes the methods plain C method descriptors, which CPython's
  specialising interpreter calls faster than Cython's function objects (about 14% more
  get() calls per second when measured).  ``embedsignature.format=clinic`` gives them back
  a ``__text_signature__``, so ``inspect.signature`` and stubtest still work.
* The "lru" get() hit pays one predictable branch for the policy and nothing else.  The
  tinylfu hit allocates nothing: the frequency sketch and its doorkeeper are C arrays of
  64-bit words, and the ghost lists C slot arrays plus C hash tables (hashes only), touched
  on inserts, evictions and misses only; all allocated with PyMem (tracemalloc sees them).
  A hit on a protected entry (most tinylfu hits) does not touch the sketch either: its count
  waits in the entry, which the hit has in the CPU cache already (``_pend``).
* The default size estimate computes what sys.getsizeof returns for exact ASCII str, bytes,
  int, float and None without calling it: two calls would cost five times a whole set().
"""
cimport cython
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject, PyTypeObject, visitproc
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport uint64_t
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
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


# The entry table (hash index, entries, list links): see the header for its design.
cdef extern from "_lru_table.h":
    ctypedef struct mlc_entry:
        PyObject* key
        PyObject* value
        Py_hash_t hash
        double expires_at
        Py_ssize_t charge
        unsigned int prev
        unsigned int next
        unsigned char queue
        unsigned char pending
        unsigned char from_main
    ctypedef struct mlc_table:
        mlc_entry* e
        Py_ssize_t used
        Py_ssize_t count
        Py_ssize_t hint
    Py_hash_t mlc_hash(object key) except? -1
    int mlc_table_init(mlc_table* t, Py_ssize_t hint) except -1
    Py_ssize_t mlc_lookup(mlc_table* t, object key, Py_hash_t h) except -1
    Py_ssize_t mlc_lookup_spread(mlc_table* t, object key, Py_hash_t h, uint64_t x) except -1
    Py_ssize_t mlc_insert(mlc_table* t, object key, Py_hash_t h, object value,
                          double expires_at, Py_ssize_t charge) except -1
    void mlc_take(mlc_table* t, unsigned int n, PyObject** key, PyObject** value) noexcept
    int mlc_table_swap_out(mlc_table* t, mlc_table* out) except -1
    void mlc_table_release(mlc_table* old) noexcept
    int mlc_table_traverse(const mlc_table* t, visitproc visit, void* arg) noexcept
    void mlc_link_after(mlc_entry* e, unsigned int head, unsigned int n) noexcept
    void mlc_unlink(mlc_entry* e, unsigned int n) noexcept
    void mlc_move_to_front(mlc_entry* e, unsigned int head, unsigned int n) noexcept


# The frequency sketch, its doorkeeper and the ghost lists: plain arithmetic on 64-bit words,
# which the pure twin reproduces with masks.
cdef extern from *:
    """
    #include <stdint.h>
    /* mlc_spread (murmur3's finalizer) comes from _lru_table.h, included above. */

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

    /* Add k (<= 15) to a key's four counters at once, each saturating at 15: what k
       increments do, in any order. */
    static void mlc_sketch_add(uint64_t *table, uint64_t mask, uint64_t x, unsigned k) {
        uint64_t block = (x & mask) << 3, sel = x >> 32;
        int i;
        for (i = 0; i < 4; i++) {
            unsigned bits = (unsigned)((sel >> (i << 3)) & 0xFF);
            uint64_t *word = &table[block + (bits & 1) + (i << 1)];
            unsigned shift = ((bits >> 1) & 15) << 2;
            unsigned count = (unsigned)((*word >> shift) & 0xF);
            unsigned add = count + k > 15 ? 15 - count : k;
            *word += (uint64_t)add << shift;
        }
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
    void mlc_sketch_add(uint64_t* table, uint64_t mask, uint64_t x, unsigned int k) noexcept nogil
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
ENTRY_OVERHEAD = 80
MAX_ENTRY_SIZE = 1 << 48
cdef Py_ssize_t _OVERHEAD = 80
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


cdef inline Py_ssize_t _shallow_size(object getsizeof, object o) except -1:
    cdef Py_ssize_t n = mlc_sizeof_fast(<PyObject*>o)
    if n >= 0:
        return n
    return getsizeof(o)


cdef inline Py_ssize_t _charge(object getsizeof, object key, object value, object size) except -1:
    """Bytes an entry counts for: ``size`` (or a shallow estimate) plus the fixed overhead."""
    cdef Py_ssize_t a, b
    cdef long long n
    cdef int overflow = 0
    if size is None:
        a = _shallow_size(getsizeof, key)
        b = _shallow_size(getsizeof, value)
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


# Collector support for the references the entry table holds.  Cython generates tp_traverse
# only for object attributes, so once the class is ready its slots are replaced by these,
# which visit (and clear) the table as well.
cdef extern from *:
    """
    static traverseproc mlc_base_traverse = NULL;
    static Py_ssize_t mlc_table_offset = 0;
    static int (*mlc_clear_hook)(PyObject *) = NULL;

    static int mlc_lru_traverse(PyObject *o, visitproc visit, void *arg) {
        int r = mlc_base_traverse ? mlc_base_traverse(o, visit, arg) : 0;
        if (r) return r;
        return mlc_table_traverse((const mlc_table *)((char *)o + mlc_table_offset), visit, arg);
    }

    static int mlc_lru_clear(PyObject *o) { return mlc_clear_hook(o); }

    static void mlc_install_gc(PyTypeObject *tp, Py_ssize_t offset, int (*clear)(PyObject *)) {
        mlc_base_traverse = tp->tp_traverse;
        mlc_table_offset = offset;
        mlc_clear_hook = clear;
        tp->tp_traverse = mlc_lru_traverse;
        tp->tp_clear = mlc_lru_clear;
    }
    """
    void mlc_install_gc(PyTypeObject* tp, Py_ssize_t offset, int (*clear)(PyObject*) noexcept) noexcept


cdef inline bint _is_expired(double expires_at) noexcept:
    return expires_at > 0.0 and mlc_monotonic() >= expires_at


# Entry 0 heads the window (the one list under "lru"), 1 probation, 2 protected, so a list's
# head number is also the ``queue`` of the entries in it.  Entry 0 is never a stored entry,
# which lets 0 stand for "none" wherever an entry number is returned or pinned.
cdef unsigned int _NONE = 0


@cython.final
@cython.no_gc_clear
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

    cdef mlc_table _t
    # The size estimator.  Being an object attribute also makes Cython give the class the
    # collector support that mlc_install_gc() extends to the table.
    cdef object _sizeof
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

    # __cinit__ rather than __init__: it runs exactly once, so the ring buffer and the table
    # exist before any method can be called, even via LRU.__new__.
    def __cinit__(self, capacity, hit_rate_window=1000, *, policy="lru", max_memory_bytes=None):
        cdef Py_ssize_t cap
        # Empty ghost lists first (zeroed memory is not one: its list ends would be slot 0).
        mlc_ghosts_free(&self._ghosts)
        mlc_ghosts_free(&self._window_ghosts)
        mlc_ghosts_free(&self._main_ghosts)
        self._sizeof = _getsizeof
        self._capacity = _check_size("capacity", capacity)
        self._rate_window = _check_size("hit_rate_window", hit_rate_window)
        if not isinstance(policy, str) or policy not in POLICIES:
            raise ValueError("policy must be 'lru' or 'tinylfu'")
        self._tinylfu = policy == "tinylfu"
        self._max_mem = -1 if max_memory_bytes is None else _check_size("max_memory_bytes", max_memory_bytes)
        self._ring = <unsigned char*>calloc(<size_t>self._rate_window, 1)
        if self._ring is NULL:
            raise MemoryError()
        mlc_table_init(&self._t, self._capacity)
        self._rand = 0x9E3779B97F4A7C15ULL
        cap = self._capacity
        self._win_max = cap - <Py_ssize_t>(<double>cap * (1.0 - _WINDOW_PERCENT))
        self._set_prot_max()
        if self._tinylfu:
            self._size_climber_ghosts()

    def __dealloc__(self):
        # Nothing can reach this object any more, so finalizers run by the release are safe.
        mlc_table_release(&self._t)
        free(self._ring)
        PyMem_Free(self._table)
        PyMem_Free(self._door)
        mlc_ghosts_free(&self._ghosts)
        mlc_ghosts_free(&self._window_ghosts)
        mlc_ghosts_free(&self._main_ghosts)

    def __reduce__(self):
        raise TypeError("mlcache LRU cannot be pickled or copied")

    def __repr__(self):
        return f"<mlcache LRU policy={self.policy} capacity={self._capacity} entries={self._t.count}>"

    # -- internals ------------------------------------------------------------------------
    # Entry pointers (mlc_entry*) and numbers are only good until Python code runs: a
    # finalizer may remove or reuse the entry, and an insert may move the array.  So every
    # removal takes the key and value references out first, finishes the bookkeeping, and
    # releases them last; nothing read before a release is used after it.

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

    cdef inline void _uncount(self, unsigned int n) noexcept:
        """Stop counting entry ``n`` in its region and in memory_bytes (before removing it)."""
        cdef mlc_entry* x = &self._t.e[n]
        if x.queue == _WINDOW:
            self._win_n -= 1
            self._win_bytes -= <unsigned long long>x.charge
        elif x.queue == _PROTECTED:
            self._prot_n -= 1
            self._prot_bytes -= <unsigned long long>x.charge
            if x.pending:
                self._flush_pending(x)
        self._mem -= <unsigned long long>x.charge

    cdef void _move(self, unsigned int n, unsigned char queue) noexcept:
        """Move a stored entry to the front of another region's list."""
        cdef mlc_entry* e = self._t.e
        cdef unsigned long long charge = <unsigned long long>e[n].charge
        cdef unsigned char old = e[n].queue
        if old == _WINDOW:
            self._win_n -= 1
            self._win_bytes -= charge
            e[n].from_main = 0
        elif old == _PROTECTED:
            self._prot_n -= 1
            self._prot_bytes -= charge
            if e[n].pending:
                self._flush_pending(&e[n])
        mlc_unlink(e, n)
        if queue == _WINDOW:
            self._win_n += 1
            self._win_bytes += charge
        elif queue == _PROTECTED:
            self._prot_n += 1
            self._prot_bytes += charge
        mlc_link_after(e, queue, n)
        e[n].queue = queue

    cdef list _keys(self):
        """Every stored key in keys() order: protected, probation, window (or the one list)."""
        # The list is allocated first: the walk must allocate nothing, because an allocation
        # may start a collection whose finalizers change the table.
        cdef list out = PyList_New(self._t.count)
        cdef mlc_entry* e = self._t.e
        cdef Py_ssize_t i = 0
        cdef unsigned int head, cur
        cdef object key
        # Under "lru" the other two lists are empty, so walking all three is the same.
        for head in (_PROTECTED, _PROBATION, _WINDOW):
            cur = e[head].next
            while cur != head:
                key = <object>e[cur].key
                Py_INCREF(key)
                PyList_SET_ITEM(out, i, key)
                i += 1
                cur = e[cur].next
        return out

    cdef int _remove(self, unsigned int n) except -1:
        """Remove entry ``n`` outright (no counter changes; the caller counts)."""
        cdef PyObject* k
        cdef PyObject* v
        self._uncount(n)
        mlc_take(&self._t, n, &k, &v)
        Py_XDECREF(k)
        Py_XDECREF(v)
        return 0

    # -- eviction ---------------------------------------------------------------------------

    cdef inline bint _over(self) noexcept:
        return self._t.count > self._capacity or (
            self._max_mem >= 0 and self._mem > <unsigned long long>self._max_mem)

    cdef int _evict(self, unsigned int n) except -1:
        """Evict entry ``n`` to make room: counted, and remembered by the ghost lists."""
        cdef PyObject* k
        cdef PyObject* v
        cdef Py_hash_t h = self._t.e[n].hash
        cdef unsigned char queue = self._t.e[n].queue
        if self._t.e[n].from_main:
            # Taken from main by a grow and not hit since: main would have evicted it.
            queue = _PROBATION
        self._uncount(n)
        mlc_take(&self._t, n, &k, &v)
        self._evictions += 1
        if self._ghosts.cap:
            mlc_ghosts_add(&self._ghosts, h)
        if self._tinylfu:
            mlc_ghosts_add(&self._window_ghosts if queue == _WINDOW else &self._main_ghosts, h)
        Py_XDECREF(k)
        Py_XDECREF(v)
        return 0

    cdef int _evict_overflow(self, unsigned int pin) except -1:
        """Evict until both bounds hold; entry ``pin`` (the one being set) is never chosen."""
        cdef unsigned int n
        if self._tinylfu:
            return self._evict_tinylfu(pin)
        while self._over():
            # The pinned entry is normally the most recent, so it is only reached when alone,
            # and then it fits; a finalizer's set() may have put others after it, though.
            n = self._lru_except(_WINDOW, pin)
            if n == _NONE:
                break
            self._evict(n)
        return 0

    cdef inline unsigned int _lru_except(self, unsigned int head, unsigned int pin) noexcept:
        """The least recent entry of ``head``'s list other than ``pin``; _NONE if none."""
        cdef mlc_entry* e = self._t.e
        cdef unsigned int n = e[head].prev
        if n == pin:
            n = e[n].prev
        return _NONE if n == head else n

    cdef inline bint _window_over(self) noexcept:
        return self._win_n > self._win_max or (
            self._max_mem >= 0 and self._win_bytes > <unsigned long long>self._win_max_bytes)

    cdef int _evict_tinylfu(self, unsigned int pin) except -1:
        # Entry numbers are re-read every turn: releasing an evicted value may run a
        # finalizer that calls back in.
        cdef unsigned int candidate, victim
        while self._window_over():
            candidate = self._lru_except(_WINDOW, _NONE)
            if candidate == _NONE or candidate == pin:
                break
            if not self._over():
                self._move(candidate, _PROBATION)
                continue
            victim = self._lru_except(_PROBATION, pin)
            if victim == _NONE:
                self._evict(candidate)
            elif self._admit(self._t.e[candidate].hash, self._t.e[victim].hash):
                self._move(candidate, _PROBATION)
                self._evict(victim)
            else:
                self._evict(candidate)
        while self._over():
            victim = self._lru_except(_PROBATION, pin)
            candidate = self._lru_except(_WINDOW, pin)
            if victim == _NONE:
                victim = candidate if candidate != _NONE else self._lru_except(_PROTECTED, pin)
                if victim == _NONE:
                    break
            elif candidate != _NONE and not self._admit(self._t.e[candidate].hash, self._t.e[victim].hash):
                victim = candidate
            self._evict(victim)
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

    cdef void _demote_protected(self, unsigned int keep) noexcept:
        cdef unsigned int n
        while self._protected_over():
            n = self._t.e[_PROTECTED].prev
            if n == _PROTECTED or n == keep:
                break
            self._move(n, _PROBATION)

    cdef inline void _touch(self, unsigned int n, uint64_t spread) noexcept:
        """A tinylfu access to stored entry ``n`` (a get hit or a set of a stored key);
        ``spread`` is mlc_spread of its hash."""
        cdef mlc_entry* e = self._t.e
        cdef unsigned char queue = e[n].queue
        if queue == _PROTECTED:
            self._pend(&e[n])
            mlc_move_to_front(e, _PROTECTED, n)
        elif queue == _WINDOW:
            self._sketch_count(spread)
            mlc_move_to_front(e, _WINDOW, n)
            e[n].from_main = 0  # recent in its own right now
        else:
            self._sketch_count(spread)
            self._touch_probation(n)

    cdef inline void _pend(self, mlc_entry* x) noexcept:
        # A protected entry's hits wait in the entry (see the twin): the entry is in the CPU
        # cache already, the sketch block would be one more line to fetch.  They count toward
        # the aging schedule as if added now.
        if self._table is NULL or x.pending == 15:
            return
        x.pending += 1
        self._sketch_size += 1
        if self._sketch_size >= self._sketch_sample:
            self._sketch_age()

    cdef void _flush_pending(self, mlc_entry* x) noexcept:
        if self._table is not NULL:
            mlc_sketch_add(self._table, (<uint64_t>self._table_len - 1) >> 3, mlc_spread(<uint64_t>x.hash), x.pending)
        x.pending = 0

    cdef void _touch_probation(self, unsigned int n) noexcept:
        # Out of line so that the common case above stays small enough to be inlined.
        cdef mlc_entry* e = self._t.e
        if self._prot_max == 0 or (
                self._max_mem >= 0 and e[n].charge > self._prot_max_bytes):
            mlc_move_to_front(e, _PROBATION, n)
        else:
            self._move(n, _PROTECTED)
            self._demote_protected(n)

    cdef int _sketch_ensure(self) except -1:
        cdef Py_ssize_t n = self._t.count
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
        self._sketch_count(mlc_spread(<uint64_t>h))

    cdef inline void _sketch_count(self, uint64_t spread) noexcept:
        # A hit counts directly, past the doorkeeper (see the twin); ``spread`` is
        # mlc_spread(hash).
        cdef uint64_t mask = <uint64_t>self._table_len - 1
        if self._table is NULL:
            return
        if mlc_sketch_increment(self._table, mask >> 3, spread):
            self._sketch_size += 1
            if self._sketch_size >= self._sketch_sample:
                self._sketch_age()

    cdef void _sketch_age(self) noexcept:
        # Aging: O(table) once per _SKETCH_SAMPLE x rated increments, O(1) amortized.  The
        # protected entries' pending hits join the counters first, to be halved with them.
        cdef mlc_entry* e = self._t.e
        cdef unsigned int cur = e[_PROTECTED].next
        while cur != _PROTECTED:
            if e[cur].pending:
                self._flush_pending(&e[cur])
            cur = e[cur].next
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
        # See the twin: an entry crossing between window and main joins the other region at
        # its least recent end (after ``anchor``, that end before the moves), so that a resize
        # grants no admission and no fresh lifetime; a grown entry keeps ``from_main``.
        cdef Py_ssize_t quota, moved = 0
        cdef unsigned int n, anchor
        cdef mlc_entry* e = self._t.e
        if self._adjust > 0:
            quota = self._capacity - self._win_max
            if self._adjust < quota:
                quota = self._adjust
            anchor = e[_WINDOW].prev
            while moved < quota and moved < _TRANSFER_LIMIT:
                n = e[_PROBATION].prev
                if n == _PROBATION:
                    n = e[_PROTECTED].prev
                    if n == _PROTECTED:
                        break
                self._move(n, _WINDOW)
                mlc_unlink(e, n)
                mlc_link_after(e, anchor, n)
                e[n].from_main = 1
                moved += 1
            self._win_max += moved
        else:
            quota = self._win_max - 1
            if -self._adjust < quota:
                quota = -self._adjust
            anchor = e[_PROBATION].prev
            while moved < quota and moved < _TRANSFER_LIMIT:
                n = e[_WINDOW].prev
                if n == _WINDOW:
                    break
                self._move(n, _PROBATION)
                mlc_unlink(e, n)
                mlc_link_after(e, anchor, n)
                moved += 1
            self._win_max -= moved
        self._adjust = (quota - moved) if self._adjust > 0 else -(quota - moved)
        self._set_prot_max()
        self._demote_protected(_NONE)

    # -- lookups --------------------------------------------------------------------------

    def get(self, key, default=None):
        """The value for ``key`` (now the most recently used), else ``default``; counted."""
        # From the lookup to the return nothing runs Python code, so the entry stays put.
        cdef Py_hash_t h = mlc_hash(key)
        # Spread once: the index's tag and tinylfu's counters both come from it.
        cdef uint64_t spread = mlc_spread(<uint64_t>h)
        cdef Py_ssize_t n = mlc_lookup_spread(&self._t, key, h, spread)
        cdef mlc_entry* x
        if n == 0:
            self._misses += 1
            self._record(0)
            if self._ghosts.count and mlc_ghosts_forget(&self._ghosts, h):
                self._ghost_hits += 1
            return default
        x = &self._t.e[n]
        if x.expires_at > 0.0 and mlc_monotonic() >= x.expires_at:
            self._collect_expired(<unsigned int>n)
            return default
        if self._tinylfu:
            # The common tinylfu hit (a protected entry) written out here: gcc stops inlining
            # _touch() as soon as it grows, and the call costs ~5% of a get().
            if x.queue == _PROTECTED:
                if x.pending != 15 and self._table is not NULL:
                    self._pend(x)
                mlc_move_to_front(self._t.e, _PROTECTED, <unsigned int>n)
            else:
                self._touch(<unsigned int>n, spread)
        else:
            mlc_move_to_front(self._t.e, _WINDOW, <unsigned int>n)
        self._hits += 1
        self._record(1)
        return <object>x.value

    cdef int _collect_expired(self, unsigned int n) except -1:
        # Off the hot path.
        self._expirations += 1
        self._misses += 1
        self._record(0)
        self._remove(n)
        return 0

    cdef inline Py_ssize_t _find(self, object key) except -1:
        return mlc_lookup(&self._t, key, mlc_hash(key))

    def peek(self, key, default=None):
        """Like ``get`` but leaves recency, frequency, statistics and expired entries alone."""
        cdef Py_ssize_t n = self._find(key)
        if n == 0 or _is_expired(self._t.e[n].expires_at):
            return default
        return <object>self._t.e[n].value

    def __contains__(self, key):
        cdef Py_ssize_t n = self._find(key)
        return n != 0 and not _is_expired(self._t.e[n].expires_at)

    def ttl(self, key):
        """Seconds ``key`` has left, or None if it never expires; KeyError if absent/expired."""
        cdef Py_ssize_t n = self._find(key)
        cdef double expires_at, remaining
        if n == 0:
            raise KeyError(key)
        expires_at = self._t.e[n].expires_at
        if expires_at <= 0.0:
            return None
        remaining = expires_at - mlc_monotonic()
        if remaining <= 0.0:
            raise KeyError(key)
        return remaining

    def __len__(self):
        return self._t.count

    def keys(self):
        """Stored keys (expired-but-uncollected ones included), in a fixed order.

        ``"lru"``: most recently used first.  ``"tinylfu"``: the protected region, then
        probation, then the window, each most recently used first.
        """
        return self._keys()

    # -- updates --------------------------------------------------------------------------

    def set(self, key, value, ttl=None, size=None):
        """Store ``value``, expiring ``ttl`` seconds from now, counting ``size`` bytes.

        ``size`` is the caller's estimate of the entry's bytes (None: ``sys.getsizeof(key) +
        sys.getsizeof(value)``, shallow); ``ENTRY_OVERHEAD`` is added to it.  An entry larger
        than ``max_memory_bytes`` is not stored (any older value of the key is dropped) and is
        counted in ``rejected``.  The entry just set is never the one evicted to make room.
        """
        cdef double expires_at = _deadline(ttl)
        cdef Py_ssize_t charge = _charge(self._sizeof, key, value, size)
        cdef Py_hash_t h
        cdef Py_ssize_t n, delta
        cdef mlc_entry* x
        cdef PyObject* old
        if self._max_mem >= 0 and charge > self._max_mem:
            self._reject(key)
            return None
        h = mlc_hash(key)
        n = mlc_lookup(&self._t, key, h)
        if n == 0:
            if self._ghosts.count:
                mlc_ghosts_forget(&self._ghosts, h)
            if self._tinylfu and self._table is not NULL:
                # A miss on a key just evicted from one side is a hit that side, one entry
                # larger, would have had: climb one entry toward it.
                if mlc_ghosts_forget(&self._window_ghosts, h):
                    self._adjust += 1
                elif mlc_ghosts_forget(&self._main_ghosts, h):
                    self._adjust -= 1
            n = mlc_insert(&self._t, key, h, value, expires_at, charge)
            self._win_n += 1
            self._win_bytes += <unsigned long long>charge
            self._mem += <unsigned long long>charge
            if self._tinylfu:
                self._sketch_ensure()
                self._sketch_increment(h)
                self._evict_overflow(<unsigned int>n)
                if self._adjust:
                    self._adapt()
            else:
                self._evict_overflow(<unsigned int>n)
            return None
        if self._tinylfu:
            self._touch(<unsigned int>n, mlc_spread(<uint64_t>h))
        else:
            mlc_move_to_front(self._t.e, _WINDOW, <unsigned int>n)
        x = &self._t.e[n]
        x.expires_at = expires_at
        delta = charge - x.charge
        if delta:
            x.charge = charge
            self._mem += <unsigned long long>delta
            if x.queue == _WINDOW:
                self._win_bytes += <unsigned long long>delta
            elif x.queue == _PROTECTED:
                self._prot_bytes += <unsigned long long>delta
        # The old value is released last: its finalizer may call back in.
        old = x.value
        Py_INCREF(value)
        x.value = <PyObject*>value
        if delta > 0 and self._max_mem >= 0:
            if self._tinylfu:
                self._demote_protected(<unsigned int>n)
            try:
                self._evict_overflow(<unsigned int>n)
            finally:
                Py_XDECREF(old)
        else:
            Py_XDECREF(old)
        return None

    cdef int _reject(self, object key) except -1:
        cdef Py_hash_t h = mlc_hash(key)
        cdef Py_ssize_t n = mlc_lookup(&self._t, key, h)
        self._rejected += 1
        mlc_ghosts_forget(&self._ghosts, h)
        if n:
            # The old value is now out of date; dropping it is neither eviction nor expiry.
            self._remove(<unsigned int>n)
        return 0

    def delete(self, key):
        """Remove ``key``; True only if it was present and not expired."""
        cdef Py_ssize_t n = self._find(key)
        cdef bint expired
        if n == 0:
            return False
        expired = _is_expired(self._t.e[n].expires_at)
        if expired:
            self._expirations += 1
        self._remove(<unsigned int>n)
        return not expired

    def pop(self, key, default=None):
        """Remove ``key`` and return its value; ``default`` if absent or expired."""
        cdef Py_ssize_t n = self._find(key)
        cdef object value
        if n == 0:
            return default
        if _is_expired(self._t.e[n].expires_at):
            self._expirations += 1
            self._remove(<unsigned int>n)
            return default
        value = <object>self._t.e[n].value
        self._remove(<unsigned int>n)
        return value

    def clear(self):
        """Remove every entry; statistics, frequencies and ghosts are kept."""
        self._clear_entries()

    cdef int _clear_entries(self) except -1:
        cdef mlc_table old
        # Empty the structure before the old entries are released: their values' finalizers
        # may call back into this cache and must find it empty and consistent.
        mlc_table_swap_out(&self._t, &old)
        self._win_n = 0
        self._prot_n = 0
        self._win_bytes = 0
        self._prot_bytes = 0
        self._mem = 0
        mlc_table_release(&old)
        return 0

    def expire(self):
        """Remove every expired entry now (O(n)); return how many were removed."""
        cdef double now = mlc_monotonic()
        cdef mlc_entry* e = self._t.e
        cdef Py_ssize_t count = 0, i = 0
        cdef unsigned int head, cur, nxt
        cdef PyObject** trash
        for head in (_PROTECTED, _PROBATION, _WINDOW):
            cur = e[head].next
            while cur != head:
                if e[cur].expires_at > 0.0 and now >= e[cur].expires_at:
                    count += 1
                cur = e[cur].next
        if count == 0:
            return 0
        # Take them all out first and release them after, so no finalizer runs mid-walk.
        trash = <PyObject**>PyMem_Malloc(<size_t>(2 * count) * sizeof(PyObject*))
        if trash is NULL:
            raise MemoryError()
        for head in (_PROTECTED, _PROBATION, _WINDOW):
            cur = e[head].next
            while cur != head:
                nxt = e[cur].next
                if e[cur].expires_at > 0.0 and now >= e[cur].expires_at:
                    self._uncount(cur)
                    mlc_take(&self._t, cur, &trash[i], &trash[i + 1])
                    i += 2
                cur = nxt
        self._expirations += <unsigned long long>count
        for i in range(2 * count):
            Py_XDECREF(trash[i])
        PyMem_Free(trash)
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
        self._t.hint = new
        if self._tinylfu and new != old:
            self._win_max = <Py_ssize_t>(<double>self._win_max * (<double>new / <double>old))
            if self._win_max < 1:
                self._win_max = 1
            self._adjust = 0
            self._set_prot_max()
            self._size_climber_ghosts()
            self._demote_protected(_NONE)
        else:
            self._set_prot_max()
        self._evict_overflow(_NONE)

    @property
    def max_memory_bytes(self):
        """Bound on ``memory_bytes`` (None: unbounded); lowering it evicts at once."""
        return None if self._max_mem < 0 else self._max_mem

    @max_memory_bytes.setter
    def max_memory_bytes(self, value):
        self._max_mem = -1 if value is None else _check_size("max_memory_bytes", value)
        self._set_prot_max()
        if self._tinylfu:
            self._demote_protected(_NONE)
        self._evict_overflow(_NONE)

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
            "entries": self._t.count,
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


cdef int _gc_clear(PyObject* o) noexcept:
    # The collector's tp_clear: drop the entries (breaking cycles through values).  If the
    # new empty table cannot be allocated, the cycle is left for a later collection.
    try:
        (<LRU>o)._clear_entries()
    except MemoryError:
        pass
    return 0


cdef Py_ssize_t _table_offset() except -1:
    cdef LRU probe = LRU.__new__(LRU, 1)
    return <Py_ssize_t>(<char*>&probe._t - <char*><PyObject*>probe)


mlc_install_gc(<PyTypeObject*>LRU, _table_offset(), _gc_clear)
