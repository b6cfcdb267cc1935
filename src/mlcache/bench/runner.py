"""The suite end to end: servers up, the three parts, targets, report files, servers down."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

from . import report
from .combined import run_combined
from .context import Context
from .levelruns import run_levels
from .matrix import matrix, run_matrix
from .measure import Run
from .options import BenchOptions
from .plots import write_plots
from .progress import Progress, wanted
from .servers import _loadavg, machine, remove_namespace, server_versions, servers
from .targets import evaluate
from .workloads import payload

# Progress steps in levelruns.py, for the progress bar's total: one per measured run, one per
# pair of runs taken in turns (the two lone-caller comparisons).
LEVEL_RUNS = 15


@dataclass
class Outcome:
    result: dict[str, Any]  # JSON-ready
    text: str               # what the terminal shows


def _steps(opts: BenchOptions) -> int:
    peers = sum(find_spec(p) is not None for p in ("cashews", "aiocache")) + 1  # + raw redis-py
    return (LEVEL_RUNS + len(matrix(opts.concurrency, opts.high_concurrency)) * (1 + peers) + 1) * opts.rounds


def median_runs(rounds: list[list[Run]]) -> list[Run]:
    """One run per id: the median of its rounds by throughput (the lower middle of an even
    count), in the first round's order, with every round's figure kept in ``info``.  Whole
    rounds, not repeats of one run back to back, so that a slow minute of a shared machine
    falls on every contender of a round alike rather than on one of them."""
    by_id: dict[str, list[Run]] = {}
    for runs in rounds:
        for run in runs:
            by_id.setdefault(run.id, []).append(run)
    out = []
    for group in by_id.values():
        ranked = sorted(group, key=lambda r: r.ops_per_s)
        chosen = ranked[(len(ranked) - 1) // 2]
        if len(group) > 1:
            chosen.info["rounds_ops_per_s"] = [round(r.ops_per_s, 1) for r in group]
        out.append(chosen)
    return out


async def bench(opts: BenchOptions) -> Outcome:
    opts = opts.resolved()
    started = time.perf_counter()
    info = machine()
    progress = Progress(wanted(opts.progress, opts.json), _steps(opts))
    # The pid keeps two benches on one server apart; lower-case, so it is a valid table name.
    namespace = f"mlcb{os.getpid()}"
    # A failing level logs a warning per failure: thousands in a run.  The bench counts them
    # per run and reports them once instead (see level_failures).
    log = logging.getLogger("mlcache")
    log_level = log.level
    log.setLevel(logging.ERROR)
    try:
        async with servers(opts.redis_url, opts.postgres_url) as srv:
            info["servers"] = await server_versions(srv.redis_url, srv.postgres_url)
            ctx = Context(opts, srv.redis_url, srv.postgres_url, namespace, progress,
                          payload(opts.value_size, opts.seed))
            rounds: list[list[Run]] = []
            all_stats: dict[int, dict[str, Any]] = {}
            try:
                for _ in range(opts.rounds):
                    ctx.runs = []
                    await run_levels(ctx)
                    await run_matrix(ctx)
                    combined, stats = await run_combined(ctx)
                    all_stats[id(combined)] = stats
                    rounds.append(ctx.runs)
            finally:
                # Throwaway servers vanish with their data; given ones must be left as found.
                if not (srv.throwaway_redis and srv.throwaway_postgres):
                    await remove_namespace(srv.redis_url, srv.postgres_url, namespace, ctx.tables)
    finally:
        progress.close()
        log.setLevel(log_level)

    ctx.runs = median_runs(rounds)
    runs = {r.id: r for r in ctx.runs}
    # The dashboard shows the cache counters of the combined run whose figure is reported.
    combined = runs[combined.id]
    stats = all_stats[id(combined)]
    ctx.notes = list(dict.fromkeys(ctx.notes))  # each round repeats its notes
    targets = evaluate(runs, opts, combined.info["hit_rates"])
    options = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("command", "progress")}
    for url in ("redis_url", "postgres_url"):  # a URL may hold a password: say only whether one was given
        options[url] = "given" if options[url] else None
    options.update(level_keys=opts.level_keys, warmup=opts.warmup, combined_duration=opts.combined_duration)
    notes = list(ctx.notes)
    for run in ctx.runs:
        failures = run.info.get("failures")
        if failures:
            counts = ", ".join(f"{n:,} {what}" for what, n in failures.items())
            notes.append(f"{run.id}: {counts} (reads that failed or were skipped count as misses, dropped "
                         "writes as done: both are faster than the real thing, so the figure flatters)")
    result: dict[str, Any] = {
        "command": opts.command,
        "machine": info,
        "servers": srv.notes,
        "options": options,
        "runs": [r.summary() for r in ctx.runs],
        "combined": {"run": combined.id, "hit_rates": combined.info["hit_rates"], "ops_per_s": combined.ops_per_s},
        "stats": stats,
        "targets": [t.as_dict() for t in targets],
        "notes": notes,
    }
    out_dir = os.path.abspath(opts.out)
    os.makedirs(out_dir, exist_ok=True)
    plots, why = write_plots(out_dir, runs, opts, combined)
    if why:
        notes.append(why)
    result["elapsed_s"] = time.perf_counter() - started
    result["load_average_end"] = _loadavg()
    result["report"] = {"dir": opts.out.rstrip("/"), "files": ["report.md", "results.json", *plots]}
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(report.markdown(result, opts, runs, combined, stats, targets, plots))
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, default=str)
    return Outcome(result, report.console(result, opts, runs, combined, stats, targets))


def main(opts: BenchOptions) -> int:
    outcome = asyncio.run(bench(opts))
    if opts.json:
        print(json.dumps(outcome.result, indent=2, default=str))
    else:
        print(outcome.text)
    return 0
