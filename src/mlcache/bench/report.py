"""What ``mlcache bench`` prints, and the Markdown report it writes beside its plots.

Both carry what a reader needs to judge the figures (after msgspec's benchmark pages): the
machine, the versions, the command that reproduces them, and the caveat that on a shared
machine only the ratios to same-run baselines mean much.
"""
from __future__ import annotations

from typing import Any

from .measure import Run
from .options import BenchOptions
from .tables import dashboard_table, levels_table, matrix_table, targets_table
from .targets import Target
from .workloads import l2_share

CAVEAT = ("This machine is shared and noisy: absolute figures move from run to run by tens of percent. "
          "Each figure stands beside a baseline measured in the same run (minutes apart, or in turns for "
          "the one-caller comparisons); the ratios are what count.")

METHOD = [
    "Every contender runs the same loop: N caller tasks replay one seeded plan of operations; each "
    "operation is timed around its `await` (with many callers that includes waiting for the event loop). "
    "A warm-up (not counted) precedes each run; the garbage collector is off while timing.",
    "**L2 alone / L3 alone**: a cache with a one-entry L1 and only that shared level, so every get "
    "misses L1, hits the level and is promoted into L1: the full path of a key that misses L1. Reads "
    "are uniform over the data set, so no key is hot enough to be coalesced with itself.",
    "Concurrent gets that miss L1 are coalesced by mlcache into one bulk read per level (up to 32 "
    "keys, several batches in flight); the raw drivers do exactly what they are told, one command per call.",
    "Raw redis-py and asyncpg read the very keys and rows mlcache wrote (the same bytes), but skip "
    "everything mlcache adds: the remaining-TTL read, decoding, promotion. The raw write baseline is "
    "MSET (no TTL) plus one `unnest` upsert.",
    "**One caller, one round trip after another**: mlcache and the driver alone take turns of 100 "
    "gets, each until it has had the run's time, so both meet the same neighbours on this shared "
    "machine. For L3 the driver reads on the very connection mlcache's L3 reads with: where the "
    "scheduler puts a PostgreSQL backend decides a lone round trip (60-80 us on the client's vCPU "
    "here, ~146 us on the other, measured pinned with taskset), so two connections can differ by 2x "
    "for that alone. The issue's own row, the driver on a connection of its own measured by itself, "
    "is shown as well.",
    "**Bulk baselines**: the issue's table gives redis-py MGET and asyncpg `= ANY($1)` of 100 keys for "
    "one caller; the targets compare with those, and name the same bulk reads by 64 callers (the "
    "drivers' ceiling here) beside them.",
    "**Workloads**: every contender finds every key in the same Redis: mlcache's L2 (with L1, 5 % "
    "of the keys, above and L3, every key, below; a fresh cache per run, so a cold L1), cashews "
    "(Redis backend), aiocache (`RedisCache` defaults: JSON values, 5 s timeout per call) and raw "
    "redis-py (pre-packed bytes). mlcache's L3 answers only the keys stored nowhere and takes every "
    "write. Every Redis client has 50 connections, mlcache's default; the peers wait for a free one "
    "(redis-py's default pool raises at 100 busy connections, which 256 callers reach). A few percent of reads ask for keys stored nowhere. The "
    "contenders' order rotates from row to row.",
    "**Combined**: the old `mlcache bench` workload scaled up: L3 every key, L2 the hottest fifth, "
    "L1 5 %; Zipf reads and writes through all levels, from a cold L1. The dashboard's counts come "
    "from `get_comprehensive_stats()` (warm-up included); its latencies from the measured window.",
]


def header_lines(result: dict[str, Any]) -> list[str]:
    m, v = result["machine"], result["machine"]["servers"]
    return [
        f"mlcache bench ({'quick' if result['options']['quick'] else 'full suite'}, "
        f"{result['elapsed_s']:.0f} s): {m['cores']} cores ({m['cpu']}), {m['python']}, "
        f"Redis {v['redis']}, PostgreSQL {v['postgresql']}, L1 {m['l1']}",
        *("  " + n for n in result["servers"]),
        f"  command: {result['command']}",
        f"  {_rounds(result)}",
        f"  load average at start / end: {m['load_average']} / {result['load_average_end']}",
    ]


def _rounds(result: dict[str, Any]) -> str:
    n = result["options"]["rounds"]
    if n == 1:
        return "one round: each figure is a single run (--rounds 3 or more gives medians)"
    return (f"{n} rounds of the whole suite: each figure is its median run "
            "(every round's figure is in results.json, runs[].info.rounds_ops_per_s)")


def summary_lines(stats: dict[str, Any], run: Run) -> list[str]:
    """The guide's Performance Dashboard lines, and the run's throughput."""
    return [
        "Performance Summary:",
        f"  Combined Hit Rate: {stats['combined_hit_rate']:.1f}%",
        f"  L1 Hit Rate: {stats['l1_cache']['hit_rate']:.1f}%",
        f"  L2 Hit Rate: {stats['l2_cache']['hit_rate']:.1f}%",
        f"  L3 Hit Rate: {stats['l3_cache']['hit_rate']:.1f}%",
        f"  Target Achieved: {stats['target_hit_rate_achieved']}",
        f"  Throughput: {run.ops_per_s:,.0f} ops/s ({run.ops:,} operations in {run.elapsed:.1f} s)",
    ]


def _titles(o: BenchOptions, combined: Run) -> dict[str, str]:
    assert o.keys is not None
    return {
        "levels": f"Levels, each alone: uniform reads over {o.level_keys:,} keys, {o.value_size}-byte payloads",
        "matrix": f"Workloads: {o.keys:,} keys, all of them in Redis for every contender; mlcache L1 "
                  f"{o.l1_for(o.keys):,} / L2 all / L3 all",
        "combined": f"Combined ({combined.title}): L1 {combined.info['l1_capacity']:,} entries, "
                    f"L2 the hottest {l2_share(combined.info['keys']):,}, L3 all; {combined.ops_per_s:,.0f} ops/s",
        "targets": "Targets: met / not met (never asserted), each beside its same-run baseline",
    }


def console(result: dict[str, Any], o: BenchOptions, runs: dict[str, Run], combined: Run,
            stats: dict[str, Any], targets: list[Target]) -> str:
    t = _titles(o, combined)
    lines = [*header_lines(result), "  " + CAVEAT, "",
             t["levels"], levels_table(runs, o).text(), "",
             t["matrix"], matrix_table(runs, o).text(), "",
             t["combined"], "Performance Dashboard", dashboard_table(combined, stats).text(), "",
             *summary_lines(stats, combined), "",
             t["targets"], targets_table(targets).text(), ""]
    lines += [f"note: {n}" for n in result["notes"]]
    files = result["report"]["files"]
    lines.append(f"Report: {result['report']['dir']}/ ({', '.join(files)})")
    return "\n".join(lines)


def markdown(result: dict[str, Any], o: BenchOptions, runs: dict[str, Run], combined: Run,
             stats: dict[str, Any], targets: list[Target], plots: list[str]) -> str:
    m = result["machine"]
    t = _titles(o, combined)
    libs = ", ".join(f"{k} {v or '(not installed)'}" for k, v in m["libraries"].items())
    out = [
        "# mlcache bench report", "",
        f"> {CAVEAT}", "",
        "## Machine and command", "",
        f"- {m['cores']} cores ({m['cpu']}), {m['platform']}; load average at start / end "
        f"{m['load_average']} / {result['load_average_end']}",
        f"- {m['python']}; L1 {m['l1']}",
        f"- Redis {m['servers']['redis']}, PostgreSQL {m['servers']['postgresql']}; " + "; ".join(result["servers"]),
        f"- libraries: {libs}",
        f"- command: `{result['command']}` ({result['elapsed_s']:.0f} s in all)",
        f"- {_rounds(result)}", "",
        "## Targets", "", t["targets"] + ".", "", targets_table(targets).markdown(), "",
        "## Levels", "", t["levels"] + ".", "", levels_table(runs, o).markdown(), "",
        "## Workloads", "", t["matrix"] + ".", "", matrix_table(runs, o).markdown(), "",
        "## Combined run and the guide's Performance Dashboard", "", t["combined"] + ".", "",
        dashboard_table(combined, stats).markdown(), "",
        "```", *summary_lines(stats, combined), "```", "",
    ]
    if plots:
        out += ["## Plots", ""] + [f"![{p[:-4].replace('_', ' ')}]({p})" for p in plots] + [""]
    out += ["## Method", ""] + [f"- {line}" for line in METHOD] + [""]
    if result["notes"]:
        out += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(out)
