"""The issue's targets (and the guide's), each judged beside its same-run baseline.

A target is reported met or not met, never asserted: shared machines are noisy, and the
ratios to the baselines measured minutes apart on the same machine are what carry meaning.
A target whose figure or baseline is missing (a peer not installed) is "n/a".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from .measure import Run
from .options import BenchOptions


@dataclass
class Target:
    name: str
    goal: str                      # the target as stated
    figure: Optional[float]        # what mlcache did
    unit: str
    baseline: str                  # what it was compared with, and that figure
    ratio: Optional[float]         # figure / baseline, where the target is a ratio
    met: Optional[bool]
    source: str = "issue 4"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        return "n/a" if self.met is None else ("met" if self.met else "NOT met")


def _fmt(x: Optional[float], unit: str) -> str:
    return "n/a" if x is None else f"{x:,.0f} {unit}"


def evaluate(runs: dict[str, Run], opts: BenchOptions, combined_hit_rates: dict[str, float]) -> list[Target]:
    c = opts.concurrency

    def ops(run_id: str) -> Optional[float]:
        run = runs.get(run_id)
        return None if run is None or not run.ops else run.ops_per_s

    def keys(run_id: str) -> Optional[float]:
        run = runs.get(run_id)
        return None if run is None or not run.ops else run.keys_per_s

    def bulk(name: str, one: str, many: str, figure: Optional[float]) -> tuple[Optional[float], str]:
        """The issue's bulk baseline: one caller's bulk reads, as in its table (redis-py MGET
        268 K keys/s, asyncpg ANY 188 K, beside "one caller, sequential" per-key rows; 0.4 x
        268 K is its 100 K ops/s).  The same bulk read by ``c`` concurrent callers, the
        driver's ceiling, is named beside it with mlcache's ratio to it."""
        base, ceiling = keys(one), keys(many)
        text = f"{name}, 1 caller (the issue's baseline)"
        if ceiling:
            ratio = f"{figure / ceiling:.2f}x" if figure else "n/a"
            text += f"; {c} callers' {name} reach {_fmt(ceiling, 'keys/s')} ({ratio} of that)"
        return base, text

    def absolute(name: str, figure: Optional[float], floor: float, unit: str, baseline: str,
                 source: str = "issue 4") -> Target:
        met = None if figure is None else figure >= floor
        return Target(name, f">= {floor:,.0f} {unit}", figure, unit, baseline, None, met, source)

    def relative(name: str, figure: Optional[float], base: Optional[float], factor: float, unit: str,
                 baseline: str, source: str = "issue 4") -> Target:
        ratio = None if figure is None or not base else figure / base
        met = None if ratio is None else ratio >= factor
        return Target(name, f">= {factor:g} x baseline", figure, unit,
                      f"{baseline}: {_fmt(base, unit)}", ratio, met, source)

    mget, mget_text = bulk("redis-py MGET x100", "redis.mget100@1", f"redis.mget100@{c}", ops(f"L2.get@{c}"))
    anyk, any_text = bulk("asyncpg = ANY($1) x100", "pg.any100@1", f"pg.any100@{c}", ops(f"L3.get@{c}"))
    zipf = f"zipf@{c}"
    hr = combined_hit_rates
    out = [
        absolute(f"L2 get, {c} callers, L1 miss -> L2 hit", ops(f"L2.get@{c}"), 100_000, "ops/s",
                 f"redis-py GET at {c} callers: {_fmt(ops(f'redis.get@{c}'), 'ops/s')}"),
        relative(f"L2 get, {c} callers vs redis-py MGET x100", ops(f"L2.get@{c}"), mget, 0.4, "keys/s",
                 mget_text),
        absolute(f"L3 get, {c} callers, L1 miss -> L3 hit", ops(f"L3.get@{c}"), 10_000, "ops/s",
                 f"asyncpg pool fetchrow at {c} callers: {_fmt(ops(f'pg.fetch@{c}'), 'ops/s')}"),
        relative(f"L3 get, {c} callers vs asyncpg = ANY x100 (stretch)", ops(f"L3.get@{c}"), anyk, 0.3,
                 "keys/s", any_text),
        relative("L2 get, 1 caller vs redis-py GET", ops("L2.get@1"), ops("redis.get@1"), 1.0, "ops/s",
                 "redis-py GET, 1 caller, in turns with mlcache"),
        relative("L3 get, 1 caller vs asyncpg prepared fetch", ops("L3.get@1"), ops("pg.fetch@1"), 1.0,
                 "ops/s", "asyncpg prepared fetchrow, 1 caller, in turns with mlcache on its L3 connection "
                 f"(on a connection of its own, measured alone: {_fmt(ops('pg.fetch.own@1'), 'ops/s')})"),
        absolute("put_many x100 through all levels", runs["put_many100@1"].keys_per_s if "put_many100@1" in runs
                 else None, 50_000, "keys/s",
                 f"raw MSET + unnest upsert x100: {_fmt(runs['raw.write100@1'].keys_per_s, 'keys/s')}"
                 if "raw.write100@1" in runs else "raw writes: n/a"),
        absolute(f"combined Zipf({opts.zipf:g}), {opts.combined_keys:,} keys, {c} callers, "
                 f"{opts.read_ratio:.0%} reads", ops(f"combined@{c}"), 50_000, "ops/s",
                 f"hit rates L1 {hr.get('L1', 0):.1f}% / L2 {hr.get('L2', 0):.1f}% / L3 {hr.get('L3', 0):.1f}%, "
                 f"combined {hr.get('combined', 0):.1f}%"),
        relative(f"Zipf workload, {c} callers vs cashews", ops(f"{zipf}:mlcache"), ops(f"{zipf}:cashews"),
                 5.0, "ops/s", "cashews (Redis backend), same workload"),
        relative(f"Zipf workload, {c} callers vs aiocache", ops(f"{zipf}:mlcache"), ops(f"{zipf}:aiocache"),
                 5.0, "ops/s", "aiocache RedisCache, same workload"),
        absolute("L1 get, 1 caller", ops("L1.get@1"), 1_000_000, "ops/s",
                 f"asyncio floor (await of dict.get): {_fmt(ops('floor.get@1'), 'ops/s')}", source="guide"),
        Target("combined hit rate (Target Achieved)", ">= 80 %", hr.get("combined"), "%",
               f"L1 {hr.get('L1', 0):.1f}% / L2 {hr.get('L2', 0):.1f}% / L3 {hr.get('L3', 0):.1f}%",
               None, None if "combined" not in hr else hr["combined"] >= 80.0, source="guide"),
    ]
    return out
