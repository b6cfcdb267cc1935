"""PNG plots for the report: throughput per level and per peer, latency CDF per level, and
hit rate over time.  matplotlib (the ``bench`` extra) is imported here only, with the Agg
backend (no display needed); without it the report says so and has no pictures."""
from __future__ import annotations

import os
from typing import Any, Optional

from .matrix import CONTENDERS, matrix
from .measure import Run
from .options import BenchOptions

COLOURS = {"mlcache": "#1f77b4", "cashews": "#ff7f0e", "aiocache": "#2ca02c", "redis-py": "#d62728",
           "asyncpg": "#9467bd", "asyncio": "#7f7f7f", "redis-py+asyncpg": "#8c564b"}
LEVEL_COLOURS = {"L1": "#1f77b4", "L2": "#ff7f0e", "L3": "#2ca02c", "miss": "#7f7f7f", "put": "#d62728"}


def write_plots(out_dir: str, runs: dict[str, Run], opts: BenchOptions, combined: Optional[Run]
                ) -> tuple[list[str], Optional[str]]:
    """Write the PNGs into ``out_dir``; return (file names, or a note saying why there are none)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed (pip install 'mlcache[bench]'): no plots"
    made = []
    for name, draw in (("throughput_levels.png", _levels), ("throughput_peers.png", _peers),
                       ("latency_cdf.png", _cdf), ("hit_rate_over_time.png", _timeline)):
        fig = draw(plt, runs, opts, combined)
        if fig is None:
            continue
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name), dpi=110)
        plt.close(fig)
        made.append(name)
    return made, None


def _levels(plt: Any, runs: dict[str, Run], opts: BenchOptions, combined: Optional[Run]) -> Any:
    # keys/s, not ops/s, so a bulk read of 100 keys is comparable with 100 single gets.
    chosen = [r for r in runs.values() if r.id.split("@")[0] in (
        "L1.get", "floor.get", "L2.get", "L3.get", "redis.get", "redis.mget100", "pg.fetch", "pg.any100",
        "put_many100", "raw.write100")]
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(chosen) + 1.2))
    labels = [f"{r.title} ({_callers(r.callers)})" for r in chosen]
    ax.barh(labels, [r.keys_per_s for r in chosen], color=[COLOURS.get(r.contender, "#333") for r in chosen])
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("keys per second (log scale)")
    ax.set_title("Each level alone, beside the raw drivers")
    return fig


def _callers(n: int) -> str:
    return f"{n} caller" + ("" if n == 1 else "s")


def _peers(plt: Any, runs: dict[str, Run], opts: BenchOptions, combined: Optional[Run]) -> Any:
    rows = matrix(opts.concurrency, opts.high_concurrency)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(CONTENDERS)
    for j, name in enumerate(CONTENDERS):
        values = [runs[f"{p}@{c}:{name}"].ops_per_s if f"{p}@{c}:{name}" in runs else 0.0 for p, c in rows]
        ax.bar([i + j * width for i in range(len(rows))], values, width, label=name, color=COLOURS[name])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels([f"{p}\n{c} callers" for p, c in rows])
    ax.set_ylabel("operations per second")
    ax.set_title("Workloads: mlcache (L1+L2+L3) vs single-level Redis caches, same Redis")
    ax.legend()
    return fig


def _cdf(plt: Any, runs: dict[str, Run], opts: BenchOptions, combined: Optional[Run]) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    c = opts.concurrency
    alone = {"L1": runs.get("L1.get@1"), "L2": runs.get(f"L2.get@{c}"), "L3": runs.get(f"L3.get@{c}")}
    for level, run in alone.items():
        if run is not None:
            _cdf_line(axes[0], run.all_latencies(), f"{level} ({_callers(run.callers)})", LEVEL_COLOURS[level])
    axes[0].set_title("Each level alone")
    if combined is not None:
        for label in ("L1", "L2", "L3", "miss", "put"):
            values = sorted(combined.latencies.get(label, []))
            if values:
                _cdf_line(axes[1], values, f"answered by {label}" if label[0] == "L" else label,
                          LEVEL_COLOURS[label])
        axes[1].set_title(f"Combined run, {combined.callers} callers, by answering level")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("latency (microseconds, log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
    axes[0].set_ylabel("share of operations at most this slow")
    return fig


def _cdf_line(ax: Any, ordered: list[float], label: str, colour: str) -> None:
    # At most ~2,000 points: a million-point line draws slowly and looks no different.
    n = len(ordered)
    step = max(1, n // 2000)
    xs = [1e6 * ordered[i] for i in range(0, n, step)] + [1e6 * ordered[-1]]
    ys = [(i + 1) / n for i in range(0, n, step)] + [1.0]
    ax.plot(xs, ys, label=label, color=colour)


def _timeline(plt: Any, runs: dict[str, Run], opts: BenchOptions, combined: Optional[Run]) -> Any:
    if combined is None or combined.timeline is None:
        return None
    tl = combined.timeline
    counts = tl.trimmed()
    size = max((len(v) for v in counts.values()), default=0)

    def col(label: str) -> list[int]:
        row = counts.get(label, [])
        return row + [0] * (size - len(row))

    l1, l2, l3, miss = col("L1"), col("L2"), col("L3"), col("miss")
    t = [(i + 0.5) * tl.step for i in range(size)]
    series: dict[str, list[Optional[float]]] = {"combined": [], "L1": [], "L2": [], "L3": []}
    for a, b, c, m in zip(l1, l2, l3, miss):
        gets = a + b + c + m
        for name, part, whole in (("combined", a + b + c, gets), ("L1", a, gets), ("L2", b, gets - a),
                                  ("L3", c, gets - a - b)):
            series[name].append(100.0 * part / whole if whole else None)
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, ys in series.items():
        ax.plot(t, ys, label=name, color=LEVEL_COLOURS.get(name, "black"), linewidth=2 if name == "combined" else 1)
    ax.axvline(combined.warmup, color="grey", linestyle="--", linewidth=1)
    ax.text(combined.warmup, 2, " end of warm-up", color="grey", fontsize=8)
    ax.set_ylim(0, 102)
    ax.set_xlabel("seconds since the run started (cold L1)")
    ax.set_ylabel("hit rate, % of the lookups reaching the level")
    ax.set_title(combined.title)
    ax.legend(loc="lower right")
    return fig
