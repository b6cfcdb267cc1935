"""The shared levels behind one small async protocol: bytes in, bytes out.

Promotion, serialization, statistics and fail-open belong to the cache, not to a tier.
"""
from .base import Entry, Tier

__all__ = ["Entry", "Tier"]
