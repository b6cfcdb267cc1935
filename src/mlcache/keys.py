"""Chooses the key checks and key digests: the compiled ``mlcache._keys`` when it can be used,
else its pure twin ``mlcache._keys_py`` (as lru.py does for the L1).  ``validation`` gives the
check its limit and its error messages at import; ``serialization`` uses the digests."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .lru import NO_EXTENSIONS

if TYPE_CHECKING or NO_EXTENSIONS:
    from . import _keys_py as impl
else:
    try:
        from . import _keys as impl
    except ImportError:  # not built: same answers, slower
        from . import _keys_py as impl

COMPILED = impl.__name__ == "mlcache._keys"
configure = impl.configure
check_key = impl.check_key
key_digest = impl.key_digest
envelope_matches = impl.envelope_matches

__all__ = ["COMPILED", "check_key", "configure", "envelope_matches", "key_digest"]
