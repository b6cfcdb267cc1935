"""What one ``mlcache bench`` run measures: the options, their two presets and their checks.

Options left as ``None`` take the preset's value: the full suite (about two minutes on a
2-core machine) or ``--quick`` (a few seconds, small key counts, for the tests).  An option
given explicitly always wins over the preset.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional

from .workloads import PLAN_LENGTH

# Per-run seconds, key counts and warm-up of each preset.  The full run's 2 s per run and
# 8 s for the combined run keep the whole suite near two minutes; ``quick`` trades every
# figure's precision for speed and is only meant to show the machinery works.
FULL: dict[str, Any] = {"duration": 2.0, "keys": 100_000, "combined_keys": 1_000_000}
QUICK: dict[str, Any] = {"duration": 0.1, "keys": 2_000, "combined_keys": 10_000}

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


@dataclass
class BenchOptions:
    redis_url: Optional[str] = None
    postgres_url: Optional[str] = None
    quick: bool = False
    out: str = "bench-report"
    json: bool = False
    duration: Optional[float] = None       # seconds measured per run (after its warm-up)
    keys: Optional[int] = None             # keys of the workload matrix (levels use half)
    combined_keys: Optional[int] = None    # keys of the combined three-level run
    concurrency: int = 64
    high_concurrency: int = 256
    l1_capacity: Optional[int] = None      # None: 5 % of each data set's keys
    value_size: int = 100
    zipf: float = 0.99
    read_ratio: float = 0.9
    miss_ratio: float = 0.03               # share of reads asking for keys stored nowhere
    seed: int = 42
    rounds: int = 1                        # whole-suite repeats; each figure is the median run
    progress: Optional[bool] = None        # None: bars when stderr is a TTY and not --json
    command: str = "mlcache bench"         # as typed, for the report

    def resolved(self) -> "BenchOptions":
        """A copy with every ``None`` preset field filled in from FULL or QUICK."""
        preset = QUICK if self.quick else FULL
        filled = {k: v for k, v in preset.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **filled)

    @property
    def warmup(self) -> float:
        # Enough for pools to open and L1 to fill; never more than a quarter of the run.
        assert self.duration is not None
        return min(0.5, self.duration / 4)

    @property
    def combined_duration(self) -> float:
        # The headline run is four ordinary runs long: it is the one the targets lean on.
        assert self.duration is not None
        return 4 * self.duration

    @property
    def plan_length(self) -> int:
        # Operations in a seeded plan (callers wrap round it).  A quick run does a few
        # thousand per run, so a short plan saves it a second of drawing random numbers.
        return 1 << 14 if self.quick else PLAN_LENGTH

    @property
    def combined_plan_length(self) -> int:
        # The combined run does ~80K ops/s for 8 s: a plan it does not go round, so a key far
        # down the tail is asked for about as often as Zipf says, not again on every lap (by
        # then promoted into L2, which left L3 nothing to answer).  ~1 s to draw.
        return self.plan_length if self.quick else 1 << 20

    @property
    def level_keys(self) -> int:
        assert self.keys is not None
        return max(100, self.keys // 2)

    def l1_for(self, keys: int) -> int:
        return self.l1_capacity if self.l1_capacity is not None else max(1, keys // 20)

    def problems(self) -> list[str]:
        """Messages for bad values, each naming the command-line flag at fault."""
        out: list[str] = []

        def need(ok: bool, flag: str, what: str) -> None:
            if not ok:
                out.append(f"--{flag} {what}")

        if self.duration is not None:
            need(0 < self.duration <= 3600, "duration", "must be > 0 and at most 3600 seconds")
        for flag, value in (("keys", self.keys), ("combined-keys", self.combined_keys)):
            if value is not None:
                # Bulk runs read and write 100 distinct keys at a time.
                need(200 <= value <= 50_000_000, flag, "must be between 200 and 50000000")
        need(1 <= self.concurrency <= 10_000, "concurrency", "must be between 1 and 10000")
        need(1 <= self.high_concurrency <= 10_000, "high-concurrency", "must be between 1 and 10000")
        if self.l1_capacity is not None:
            need(self.l1_capacity >= 1, "l1-capacity", "must be >= 1")
        need(1 <= self.value_size <= 1_000_000, "value-size", "must be between 1 and 1000000 bytes")
        need(0 < self.zipf <= 5, "zipf", "must be > 0 and at most 5")
        need(0.0 <= self.read_ratio <= 1.0, "read-ratio", "must be between 0 and 1")
        need(0.0 <= self.miss_ratio <= 1.0, "miss-ratio", "must be between 0 and 1")
        need(1 <= self.rounds <= 25, "rounds", "must be between 1 and 25")
        if self.redis_url is not None:
            need(self.redis_url.startswith(REDIS_SCHEMES), "redis-url",
                 "must start with " + ", ".join(REDIS_SCHEMES))
        if self.postgres_url is not None:
            need(self.postgres_url.startswith(POSTGRES_SCHEMES), "postgres-url",
                 "must start with " + ", ".join(POSTGRES_SCHEMES))
        need(bool(self.out) and not (os.path.exists(self.out) and not os.path.isdir(self.out)),
             "out", "must name a directory (it exists and is not one)")
        return out
