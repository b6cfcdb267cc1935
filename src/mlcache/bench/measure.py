"""Timing: N concurrent callers replay a plan for a fixed time; latencies and throughput.

Every contender, mlcache or peer, runs through the same ``drive`` loop, so the harness costs
each of them the same: two ``perf_counter`` reads and one list append per operation.
"""
from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Sequence

PERCENTILES = (50, 95, 99)
TIMELINE_STEP = 0.25  # seconds per bucket of the hit-rate-over-time plot


class Timeline:
    """Operations finished per label in each TIMELINE_STEP bucket, from the run's start to
    its deadline.  Operations still in flight at the deadline finish in a partial bucket
    made only of slow answers, so they are left out rather than drawn as a cliff."""

    def __init__(self, seconds: float, step: float = TIMELINE_STEP) -> None:
        self.step = step
        self.size = max(1, int(seconds / step))
        self.counts: dict[str, list[int]] = {}

    def add(self, label: str, t: float) -> None:
        i = int(t / self.step)
        if i >= self.size:
            return
        row = self.counts.get(label)
        if row is None:
            row = self.counts[label] = [0] * self.size
        row[i] += 1

    def trimmed(self) -> dict[str, list[int]]:
        return {label: list(row) for label, row in self.counts.items()}


@dataclass
class Run:
    """One measured run: a contender doing one kind of operation with ``callers`` callers."""

    id: str
    title: str
    contender: str
    callers: int
    ops: int
    keys_per_op: int
    elapsed: float
    latencies: dict[str, list[float]]
    timeline: Optional[Timeline] = None
    warmup: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def keys_per_s(self) -> float:
        return self.ops_per_s * self.keys_per_op

    def all_latencies(self) -> list[float]:
        merged = [x for values in self.latencies.values() for x in values]
        merged.sort()
        return merged

    def summary(self) -> dict[str, Any]:
        """JSON-ready: throughput, and percentiles overall and per label (in microseconds)."""
        return {
            "id": self.id, "title": self.title, "contender": self.contender, "callers": self.callers,
            "ops": self.ops, "keys_per_op": self.keys_per_op, "elapsed_s": self.elapsed,
            "ops_per_s": self.ops_per_s, "keys_per_s": self.keys_per_s,
            "latency_us": percentiles(self.all_latencies()),
            "latency_us_by_label": {k: percentiles(sorted(v)) for k, v in self.latencies.items()},
            **({"timeline": {"step_s": self.timeline.step, "warmup_s": self.warmup,
                             "counts": self.timeline.trimmed()}} if self.timeline else {}),
            **self.info,
        }


def percentiles(ordered: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 and mean of sorted seconds, in microseconds (nearest rank)."""
    n = len(ordered)
    if not n:
        return {f"p{p}": 0.0 for p in PERCENTILES} | {"mean": 0.0, "n": 0}
    out: dict[str, float] = {f"p{p}": 1e6 * ordered[min(n - 1, math.ceil(p / 100 * n) - 1)] for p in PERCENTILES}
    out["mean"] = 1e6 * math.fsum(ordered) / n
    out["n"] = n
    return out


async def drive(
    op: Callable[[Any], Awaitable[Any]],
    plan: Sequence[Any],
    *,
    callers: int,
    duration: float,
    warmup: float,
    labelled: bool = False,
    label: str = "op",
    timeline: bool = False,
) -> tuple[int, float, dict[str, list[float]], Optional[Timeline]]:
    """Run ``callers`` tasks that each ``await op(item)`` over ``plan`` (shared, in order,
    wrapping round) for ``warmup + duration`` seconds.

    Only operations that start after the warm-up are counted; the measured time runs from the
    end of the warm-up until the last caller is done.  With ``labelled`` the op returns the
    label its latency is filed under (e.g. the level that answered); else all go to ``label``.
    Returns (operations counted, seconds measured, latencies per label, timeline or None).
    """
    perf = time.perf_counter
    n = len(plan)
    cursor = itertools.count()
    lat: dict[str, list[float]] = {label: []}
    tl = Timeline(warmup + duration) if timeline else None
    start = perf()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def caller() -> None:
        while True:
            t0 = perf()
            if t0 >= stop_at:
                return
            result = await op(plan[next(cursor) % n])
            t1 = perf()
            name = result if labelled else label
            if t0 >= measure_from:
                bucket = lat.get(name)
                if bucket is None:
                    bucket = lat[name] = []
                bucket.append(t1 - t0)
            if tl is not None:
                tl.add(name, t1 - start)

    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = perf() - measure_from
    lat = {k: v for k, v in lat.items() if v}
    return sum(len(v) for v in lat.values()), elapsed, lat, tl


PAIRED_SLICE = 100  # operations a contender runs before the next takes its turn


async def drive_paired(
    contenders: Sequence[tuple[Callable[[Any], Awaitable[Any]], Sequence[Any]]],
    *,
    duration: float,
    warmup: float,
    label: str = "op",
    slice_ops: int = PAIRED_SLICE,
) -> list[tuple[int, float, dict[str, list[float]]]]:
    """One caller runs each contender ``(op, plan)`` in turn, ``slice_ops`` operations at a
    time, until each has had ``duration`` seconds after ``warmup`` seconds of turns.

    For lone-caller comparisons on a shared machine: contenders measured one after the other
    meet different neighbours (another tenant, an autovacuum), and ones on different
    connections meet different luck in where the scheduler puts their server process.  In
    turns of a few milliseconds they share both.  Returns, per contender as in ``drive``:
    (operations counted, seconds they took, latencies).
    """
    perf = time.perf_counter
    n = len(contenders)
    cursors = [0] * n
    spent = [0.0] * n
    counted = [0] * n
    lat: list[list[float]] = [[] for _ in range(n)]
    warm_until = perf() + warmup
    while min(spent) < duration:
        measuring = perf() >= warm_until
        for i, (op, plan) in enumerate(contenders):
            if measuring and spent[i] >= duration:
                continue
            size, at = len(plan), cursors[i]
            bucket = lat[i]
            started = perf()
            for j in range(at, at + slice_ops):
                t0 = perf()
                await op(plan[j % size])
                if measuring:
                    bucket.append(perf() - t0)
            if measuring:
                spent[i] += perf() - started
                counted[i] += slice_ops
            cursors[i] = (at + slice_ops) % size
    return [(counted[i], spent[i], {label: lat[i]}) for i in range(n)]
