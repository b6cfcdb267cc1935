"""Small helpers shared by the L1 test modules."""
from __future__ import annotations


class MutableKey:
    """A key whose hash can change while it is stored (a misuse the LRU must survive)."""

    def __init__(self, h: int) -> None:
        self.h = h

    def __hash__(self) -> int:
        return self.h

    def __eq__(self, other: object) -> bool:
        return self is other
