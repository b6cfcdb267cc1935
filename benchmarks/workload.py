"""The seeded L1 workload shared by the pytest-benchmark suites and check_ratios.py."""
from __future__ import annotations

import itertools
import random

N_KEYS = 100_000
ROUND = 10_000
ZIPF_S = 0.99
SEED = 20240601


def make_keys(n: int = N_KEYS, prefix: str = "user") -> list[str]:
    """``n`` distinct str keys; the multi-level cache only ever stores str keys."""
    return [f"{prefix}:{i:07d}" for i in range(n)]


def zipf_stream(keys: list[str], length: int = ROUND, s: float = ZIPF_S, seed: int = SEED) -> list[str]:
    """``length`` draws from ``keys`` where the key of rank r has weight 1 / r**s."""
    rng = random.Random(seed)
    # The ranks are shuffled so hot keys are scattered over the key space, not the first few.
    ranked = keys[:]
    rng.shuffle(ranked)
    cum = list(itertools.accumulate(1.0 / (rank + 1) ** s for rank in range(len(ranked))))
    return rng.choices(ranked, cum_weights=cum, k=length)
