"""Chooses the L1 LRU implementation: the compiled ``mlcache._lru`` when it can be used.

``PyLRU`` is always the pure-Python twin, so tests and benchmarks can compare the two.
``POLICIES`` names the eviction policies (``LRU(..., policy=...)``) and ``ENTRY_OVERHEAD`` the
bytes each entry counts for in ``memory_bytes`` on top of its size; both twins share them.  Set
``MLCACHE_NO_EXTENSIONS`` (to any non-empty value) to force the pure one, e.g. to rule the
extension out while debugging; on interpreters other than CPython the extension's
borrowed-pointer tricks do not apply, so the pure one is used there too.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from ._lru_py import ENTRY_OVERHEAD, POLICIES
from ._lru_py import LRU as PyLRU

NO_EXTENSIONS = bool(os.environ.get("MLCACHE_NO_EXTENSIONS")) or sys.implementation.name != "cpython"

# Type checkers see the pure class (as multidict does): both have the same interface, and a
# single class keeps ``LRU`` usable in annotations.
if TYPE_CHECKING or NO_EXTENSIONS:
    from ._lru_py import LRU
else:
    try:
        from ._lru import LRU
    except ImportError:  # not built (source checkout, failed compile): same behaviour, slower
        LRU = PyLRU

__all__ = ["ENTRY_OVERHEAD", "LRU", "NO_EXTENSIONS", "POLICIES", "PyLRU"]
