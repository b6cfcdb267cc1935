"""Seeded key streams: which key each operation asks for, and whether it reads or writes.

Every contender replays the same plan, a list built before the clock starts, so drawing
random numbers costs nothing inside a timed loop and two contenders see the very same keys
in the very same order.  Key ``k{i}`` has popularity rank ``i`` (``k0`` the hottest), which
lets a data set place its hottest fifth in L2 by index alone.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any, Iterator, Union

# Long enough that a 64-caller run seldom wraps around it; short enough to build in ~0.2 s.
PLAN_LENGTH = 1 << 18

GET, PUT = True, False
Op = tuple[bool, str]  # (is_read, key)


def key(i: int) -> str:
    return f"k{i}"


def l2_share(n_keys: int) -> int:
    """How many of a data set's hottest keys its L2 holds (the rest live in L3 only)."""
    return n_keys // 5


def value_for(i: int, payload: str) -> dict[str, Any]:
    # A str payload, not bytes: aiocache's default JSON serializer must be able to store it.
    return {"id": i, "payload": payload}


def payload(size: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(size))


@dataclass(frozen=True)
class Pattern:
    """A workload pattern.  ``scan_share`` of the reads walk the key space in order, the rest
    follow ``keys`` ("zipf" or "uniform")."""

    name: str
    title: str
    keys: str
    read_ratio: float
    scan_share: float = 0.0


def patterns(read_ratio: float, zipf: float) -> dict[str, Pattern]:
    return {
        "zipf": Pattern("zipf", f"hot/cold Zipf({zipf:g}), {read_ratio:.0%} reads", "zipf", read_ratio),
        "uniform": Pattern("uniform", f"uniform, {read_ratio:.0%} reads", "uniform", read_ratio),
        # Half the reads are a sequential scan: the pattern that flushes an LRU's hot set.
        "scan": Pattern("scan", f"scan-heavy: half the reads in key order, {read_ratio:.0%} reads",
                        "zipf", read_ratio, scan_share=0.5),
        # YCSB workload A's update-heavy mix: half reads, half writes, Zipf keys.
        "write": Pattern("write", "write-heavy: Zipf, 50% writes", "zipf", 0.5),
    }


class ZipfSampler:
    """Draws ranks 0..n-1 with probability proportional to 1 / (rank + 1) ** s."""

    def __init__(self, n: int, s: float) -> None:
        self.population = range(n)
        self.cum = list(itertools.accumulate(1.0 / (r + 1) ** s for r in range(n)))

    def draw(self, rng: random.Random, k: int) -> list[int]:
        return rng.choices(self.population, cum_weights=self.cum, k=k)


def plan(pattern: Pattern, n_keys: int, *, zipf: float, miss_ratio: float, seed: int,
         length: int = PLAN_LENGTH, sampler: Union[ZipfSampler, None] = None) -> list[Op]:
    """The pattern's operations over keys ``k0 .. k{n_keys-1}``; ``miss_ratio`` of the point
    reads ask for keys stored nowhere (they go through every level and come back empty)."""
    rng = random.Random(f"{seed}:{pattern.name}:{n_keys}")
    if pattern.keys == "zipf":
        sampler = sampler or ZipfSampler(n_keys, zipf)
        ranks = sampler.draw(rng, length)
    else:
        ranks = [rng.randrange(n_keys) for _ in range(length)]
    scan = itertools.cycle(range(n_keys))
    ops: list[Op] = []
    for rank in ranks:
        if rng.random() >= pattern.read_ratio:
            ops.append((PUT, key(rank)))
        elif pattern.scan_share and rng.random() < pattern.scan_share:
            ops.append((GET, key(next(scan))))
        elif miss_ratio and rng.random() < miss_ratio:
            ops.append((GET, f"absent{rng.randrange(10**9)}"))
        else:
            ops.append((GET, key(rank)))
    return ops


def uniform_keys(n_keys: int, seed: int, length: int = PLAN_LENGTH) -> list[str]:
    """Uniform reads over every key: the level-by-level runs, where no key should be hotter
    than another (a hot key would be coalesced with itself and flatter the figure)."""
    rng = random.Random(f"{seed}:uniform-keys:{n_keys}")
    return [key(rng.randrange(n_keys)) for _ in range(length)]


def key_batches(n_keys: int, size: int, seed: int, count: int) -> list[list[str]]:
    """``count`` lists of ``size`` distinct keys drawn uniformly (MGET / ``= ANY($1)`` runs)."""
    rng = random.Random(f"{seed}:batches:{n_keys}:{size}")
    return [[key(i) for i in rng.sample(range(n_keys), size)] for _ in range(count)]


def chunks(lo: int, hi: int, size: int) -> Iterator[range]:
    for start in range(lo, hi, size):
        yield range(start, min(hi, start + size))
