# cython: language_level=3
"""Key checks and key digests, compiled: run once per L1 miss and once per L2/L3 hit.

The pure twin is ``mlcache._keys_py`` (same answers, slower); ``mlcache.validation`` and
``mlcache.serialization`` pick one.  Only the common case is decided here: a key that is not
plainly legal goes to the Python check, which raises the error that names the fault.

The digest is FNV-1a, 64 bits, over the key's UTF-8, little-endian.  It is no defence against
anyone who can write to Redis (no unkeyed digest is); it catches bytes read under another key
(a shared Redis, a copied row), which any 64-bit hash does.  blake2b did the same job at 0.4 us
per L2 hit, a twentieth of a batched read's cost.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    void* PyUnicode_DATA(object)

cdef uint64_t FNV_OFFSET = 0xcbf29ce484222325ULL
cdef uint64_t FNV_PRIME = 0x100000001b3ULL

# Set by configure() (mlcache.validation, at import): the byte limit and the Python check
# that explains a refusal.
cdef Py_ssize_t _max_key_bytes = 0
cdef object _explain = None


def configure(Py_ssize_t max_key_bytes, explain):
    global _max_key_bytes, _explain
    _max_key_bytes = max_key_bytes
    _explain = explain


cdef inline const char* _utf8(str key, Py_ssize_t* size) except? NULL:
    # ASCII strs are their own UTF-8; others encode once (CPython keeps the result in the str).
    if PyUnicode_IS_ASCII(key):
        size[0] = PyUnicode_GET_LENGTH(key)
        return <const char*>PyUnicode_DATA(key)
    return PyUnicode_AsUTF8AndSize(key, size)


def check_key(key):
    """Return ``key`` if it is a legal cache key; otherwise the Python check raises why not."""
    cdef Py_ssize_t size
    cdef const char* data
    if type(key) is str and PyUnicode_IS_ASCII(key):
        size = PyUnicode_GET_LENGTH(key)
        if 0 < size <= _max_key_bytes and memchr(PyUnicode_DATA(key), 0, <size_t>size) == NULL:
            return key
    return _explain(key)


cdef inline uint64_t _fnv1a(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = FNV_OFFSET
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ p[i]) * FNV_PRIME
    return h


cdef inline void _store(unsigned char* out, uint64_t h) noexcept nogil:
    cdef int i
    for i in range(8):
        out[i] = <unsigned char>(h >> (8 * i))


def key_digest(str key):
    """The 8 digest bytes of ``key`` (FNV-1a 64 of its UTF-8, little-endian)."""
    cdef Py_ssize_t size
    cdef const char* data = _utf8(key, &size)
    cdef unsigned char out[8]
    _store(out, _fnv1a(<const unsigned char*>data, size))
    return PyBytes_FromStringAndSize(<char*>out, 8)


def envelope_matches(bytes data, str key, bytes prefix):
    """True if ``data`` starts with ``prefix`` (3 bytes) then ``key``'s digest: the common case
    of Serializer.loads, without a slice or a digest object."""
    cdef Py_ssize_t size
    cdef const char* kdata
    cdef unsigned char want[8]
    if PyBytes_GET_SIZE(data) < 11 or memcmp(PyBytes_AS_STRING(data), PyBytes_AS_STRING(prefix), 3) != 0:
        return False
    kdata = _utf8(key, &size)
    _store(want, _fnv1a(<const unsigned char*>kdata, size))
    return memcmp(PyBytes_AS_STRING(data) + 3, want, 8) == 0
