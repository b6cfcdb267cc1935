/* The compiled L1's storage: one open-addressing hash table whose entries carry the list
 * links, so a lookup, a move to the front and an eviction touch as few cache lines as the
 * job allows.
 *
 * Why not a dict of node objects (what this replaced): a dict hit reads the index, the dict
 * entry, then the node object; a dict miss in a table full of deletion dummies reads the key
 * object of every occupied slot it probes to compare hashes.  With inserts that evict, that
 * was 70% of the time of a set().  Here:
 *
 *  - `slots` is the index: linear probing over 64-bit words, each `tag << 32 | entry` (0 =
 *    empty).  The tag is the high half of the spread hash and its low bits are the home slot,
 *    so probing compares tags without touching entries, and deletion shifts entries back
 *    (no tombstones, so chains never rot) without reading them either.
 *  - `e` is the array of entries: key, value, hash, expiry, charge, the two list links (as
 *    entry numbers) and the region.  Entries 0..2 are the heads of the three circular lists
 *    (the window, or the one LRU list; probation; protected); they are never in the index.
 *    Free entries form a stack through `next`.  Entry numbers are stable, so links survive
 *    the array's reallocation.
 *
 * Nothing here runs Python code except the __eq__ of a stored key in mlc_lookup, and that is
 * guarded: `version` changes on every insert and removal, and a lookup whose __eq__ changed
 * the table starts again (as dict lookups do).  Memory comes from PyMem, which never starts
 * a garbage collection, so no finalizer can run in the middle of an update.
 */
#ifndef MLCACHE_LRU_TABLE_H
#define MLCACHE_LRU_TABLE_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MLC_ROOTS 3
/* Entry numbers are 32-bit, and the slot count must stay below 2**32 for the tag trick. */
#define MLC_MAX_ENTRIES ((Py_ssize_t)0x7FFFFFF0)

typedef struct {
    PyObject *key;          /* owned; NULL on list heads and free entries */
    PyObject *value;        /* owned */
    Py_hash_t hash;
    double expires_at;      /* monotonic seconds; 0.0 = never */
    Py_ssize_t charge;      /* bytes counted toward the memory bound */
    uint32_t prev, next;
    unsigned char queue;    /* which list: 0 window (or the LRU), 1 probation, 2 protected */
    unsigned char pending;  /* tinylfu: hits while protected, not yet in the sketch (<= 15) */
    unsigned char from_main; /* tinylfu: in the window because a grow took it from main */
} mlc_entry;

typedef struct {
    mlc_entry *e;
    uint64_t *slots;
    Py_ssize_t alloc;       /* entries allocated */
    Py_ssize_t used;        /* entries ever handed out (the rest of `alloc` is untouched) */
    Py_ssize_t count;       /* entries holding a key */
    Py_ssize_t mask;        /* slots - 1 */
    Py_ssize_t hint;        /* the entry count the owner expects to reach (its capacity) */
    uint32_t free;          /* top of the free stack; 0 = empty */
    uint64_t version;
} mlc_table;

/* murmur3's 64-bit finalizer: Python's hashes of small ints are the ints themselves. */
static inline uint64_t mlc_spread(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDULL;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t mlc_tag(Py_hash_t h) { return mlc_spread((uint64_t)h) >> 32; }

/* hash(key), without the call for a str whose hash is already cached (nearly every key). */
static inline Py_hash_t mlc_hash(PyObject *key) {
    if (PyUnicode_CheckExact(key)) {
        Py_hash_t h = ((PyASCIIObject *)key)->hash;
        if (h != -1) return h;
    }
    return PyObject_Hash(key);
}

static void mlc_heads_init(mlc_table *t) {
    uint32_t i;
    for (i = 0; i < MLC_ROOTS; i++) {
        memset(&t->e[i], 0, sizeof(mlc_entry));
        t->e[i].prev = t->e[i].next = i;
        t->e[i].queue = (unsigned char)i;
    }
}

/* An empty table with room for a few entries; -1 with MemoryError set if out of memory. */
static int mlc_table_init(mlc_table *t, Py_ssize_t hint) {
    mlc_entry *e = (mlc_entry *)PyMem_Malloc(16 * sizeof(mlc_entry));
    uint64_t *slots = (uint64_t *)PyMem_Calloc(16, sizeof(uint64_t));
    if (e == NULL || slots == NULL) {
        PyMem_Free(e);
        PyMem_Free(slots);
        PyErr_NoMemory();
        return -1;
    }
    t->e = e;
    t->slots = slots;
    t->alloc = 16;
    t->used = MLC_ROOTS;
    t->count = 0;
    t->mask = 15;
    t->hint = hint;
    t->free = 0;
    t->version++;
    mlc_heads_init(t);
    return 0;
}

/* Release the arrays only (the caller has taken or released the references). */
static void mlc_table_free(mlc_table *t) {
    PyMem_Free(t->e);
    PyMem_Free(t->slots);
    t->e = NULL;
    t->slots = NULL;
    t->alloc = t->used = t->count = 0;
    t->mask = 0;
    t->free = 0;
}

static inline int mlc_str_eq(PyObject *a, PyObject *b) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    return n == PyUnicode_GET_LENGTH(b) && kind == (int)PyUnicode_KIND(b)
           && memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * (size_t)kind) == 0;
}

#if defined(__GNUC__) || defined(__clang__)
#define MLC_HOT inline __attribute__((always_inline))
#else
#define MLC_HOT inline
#endif

/* The entry holding `key` (whose hash is `h`, and `x` its mlc_spread), 0 if none, -1 with an
 * exception if a key's __eq__ raised.  Inlined: it is most of a get(), and the call was
 * measurable. */
static MLC_HOT Py_ssize_t mlc_lookup_spread(mlc_table *t, PyObject *key, Py_hash_t h, uint64_t x) {
    uint64_t tag = x >> 32;
restart:
    {
        uint64_t mask = (uint64_t)t->mask, i = tag & mask;
        for (;;) {
            uint64_t s = t->slots[i];
            if (s == 0) return 0;
            if ((s >> 32) == tag) {
                uint32_t n = (uint32_t)s;
                PyObject *k = t->e[n].key;
                if (k == key) return n;
                if (t->e[n].hash == h) {
                    if (PyUnicode_CheckExact(k) && PyUnicode_CheckExact(key)) {
                        if (mlc_str_eq(k, key)) return n;
                    } else {
                        uint64_t version = t->version;
                        int r;
                        Py_INCREF(k);
                        r = PyObject_RichCompareBool(k, key, Py_EQ);
                        Py_DECREF(k);
                        if (r < 0) return -1;
                        if (t->version != version) goto restart;
                        if (r) return n;
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }
}

/* The same, for callers that have not spread the hash themselves. */
static MLC_HOT Py_ssize_t mlc_lookup(mlc_table *t, PyObject *key, Py_hash_t h) {
    return mlc_lookup_spread(t, key, h, mlc_spread((uint64_t)h));
}

static void mlc_place(uint64_t *slots, uint64_t mask, uint64_t s) {
    uint64_t i = (s >> 32) & mask;
    while (slots[i]) i = (i + 1) & mask;
    slots[i] = s;
}

/* Make room for one more entry: the entry array and the index (kept at most 2/3 full). */
static int mlc_reserve(mlc_table *t) {
    if (t->free == 0 && t->used == t->alloc) {
        Py_ssize_t want = t->alloc * 2, cap = t->hint + MLC_ROOTS + 1;
        mlc_entry *e;
        /* Grow toward the owner's capacity, not past it: a full cache wastes nothing. */
        if (cap > t->alloc && want > cap) want = cap;
        if (want > MLC_MAX_ENTRIES) want = MLC_MAX_ENTRIES;
        if (want <= t->alloc) {
            PyErr_SetString(PyExc_MemoryError, "mlcache LRU: too many entries");
            return -1;
        }
        e = (mlc_entry *)PyMem_Realloc(t->e, (size_t)want * sizeof(mlc_entry));
        if (e == NULL) { PyErr_NoMemory(); return -1; }
        t->e = e;
        t->alloc = want;
    }
    if ((t->count + 1) * 3 > (t->mask + 1) * 2) {
        uint64_t length = ((uint64_t)t->mask + 1) * 2, mask = length - 1, i;
        uint64_t *slots = (uint64_t *)PyMem_Calloc((size_t)length, sizeof(uint64_t));
        if (slots == NULL) { PyErr_NoMemory(); return -1; }
        for (i = 0; i <= (uint64_t)t->mask; i++)
            if (t->slots[i]) mlc_place(slots, mask, t->slots[i]);
        PyMem_Free(t->slots);
        t->slots = slots;
        t->mask = (Py_ssize_t)mask;
    }
    return 0;
}

static inline void mlc_link_after(mlc_entry *e, uint32_t head, uint32_t n) {
    uint32_t first = e[head].next;
    e[n].prev = head;
    e[n].next = first;
    e[first].prev = n;
    e[head].next = n;
}

static inline void mlc_unlink(mlc_entry *e, uint32_t n) {
    uint32_t p = e[n].prev, x = e[n].next;
    e[p].next = x;
    e[x].prev = p;
}

static inline void mlc_move_to_front(mlc_entry *e, uint32_t head, uint32_t n) {
    if (e[head].next == n) return;
    mlc_unlink(e, n);
    mlc_link_after(e, head, n);
}

/* Store a key known to be absent, at the front of list 0; its number, or -1 (MemoryError).
 * New references to key and value are taken. */
static Py_ssize_t mlc_insert(mlc_table *t, PyObject *key, Py_hash_t h, PyObject *value,
                             double expires_at, Py_ssize_t charge) {
    uint32_t n;
    mlc_entry *x;
    if (mlc_reserve(t) < 0) return -1;
    if (t->free) {
        n = t->free;
        t->free = t->e[n].next;
    } else {
        n = (uint32_t)t->used++;
    }
    x = &t->e[n];
    Py_INCREF(key);
    Py_INCREF(value);
    x->key = key;
    x->value = value;
    x->hash = h;
    x->expires_at = expires_at;
    x->charge = charge;
    x->queue = 0;
    x->pending = 0;
    x->from_main = 0;
    mlc_link_after(t->e, 0, n);
    mlc_place(t->slots, (uint64_t)t->mask, (mlc_tag(h) << 32) | n);
    t->count++;
    t->version++;
    return n;
}

/* Remove entry n from the index and its list; its key and value references pass to the
 * caller, who releases them once its own bookkeeping is done. */
static void mlc_take(mlc_table *t, uint32_t n, PyObject **key, PyObject **value) {
    uint64_t mask = (uint64_t)t->mask, i, j, home;
    mlc_entry *x = &t->e[n];
    i = mlc_tag(x->hash) & mask;
    while ((uint32_t)t->slots[i] != n) i = (i + 1) & mask;
    /* Backward-shift deletion: pull later members of the probe run into the hole unless
       their home lies cyclically in (hole, j]. */
    j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (t->slots[j] == 0) break;
        home = (t->slots[j] >> 32) & mask;
        if ((i <= j) ? (i < home && home <= j) : (i < home || home <= j)) continue;
        t->slots[i] = t->slots[j];
        i = j;
    }
    t->slots[i] = 0;
    mlc_unlink(t->e, n);
    *key = x->key;
    *value = x->value;
    x->key = NULL;
    x->value = NULL;
    x->next = t->free;
    t->free = n;
    t->count--;
    t->version++;
}

/* Take the whole table's contents: `out` receives the old arrays (to release with
 * mlc_table_release) and `t` becomes empty.  -1 (t untouched) if out of memory. */
static int mlc_table_swap_out(mlc_table *t, mlc_table *out) {
    mlc_table fresh;
    fresh.version = t->version;
    if (mlc_table_init(&fresh, t->hint) < 0) return -1;
    *out = *t;
    *t = fresh;
    return 0;
}

/* Release every reference an old table holds, then its arrays. */
static void mlc_table_release(mlc_table *old) {
    Py_ssize_t n;
    for (n = MLC_ROOTS; n < old->used; n++) {
        Py_XDECREF(old->e[n].key);
        Py_XDECREF(old->e[n].value);
    }
    mlc_table_free(old);
}

static int mlc_table_traverse(const mlc_table *t, visitproc visit, void *arg) {
    Py_ssize_t n;
    for (n = MLC_ROOTS; n < t->used; n++) {
        if (t->e[n].key) {
            Py_VISIT(t->e[n].key);
            Py_VISIT(t->e[n].value);
        }
    }
    return 0;
}

#endif
