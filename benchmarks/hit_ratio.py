"""Hit ratios of the compiled L1 on real traces, "lru" vs "tinylfu", beside libCacheSim's.

Run::

    python benchmarks/hit_ratio.py                 # every trace; writes benchmarks/results/
    python benchmarks/hit_ratio.py --quick         # the small traces only, a few seconds (CI)
    python benchmarks/hit_ratio.py --traces orm-busy lirs-sprite --sizes 0.01

Each trace is replayed through ``mlcache._lru.LRU`` as a cache is used: ``get(key)``, and on a
miss ``set(key, ...)``.  The L1 holds ``max(10, int(fraction * unique keys))`` entries for
each fraction of ``--sizes``: the size libCacheSim gave the same row (see ``capacity()``).  The
hit ratio counts every request, cold misses included, as libCacheSim does.  Traces come from ``$MLCACHE_TRACES`` (default ``/work/shared/traces``),
whose ``load.py`` returns a trace as a numpy array of keys.

The reference columns are the hit ratios libCacheSim's policies reach on the same traces (the
L1 issue's table).  Its LRU is the harness check: ours agrees within 0.05 point on every row.

Caveats: the policy was tuned on these same traces (lirs-loop and a phase-changing mix were
held out while tuning); tinylfu's numbers move by a few hundredths with anything that changes
hash collisions, e.g. a different trace key mapping; str keys are hashed with a per-process
seed, int keys (all of these traces) are not, so these runs are deterministic.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

try:
    from mlcache._lru import LRU
except ImportError as exc:  # every replay must go through the compiled class
    sys.exit(f"the compiled mlcache._lru is not built ({exc}); run `python setup.py build_ext --inplace`")

POLICIES = ("lru", "tinylfu")
SIZES = (0.001, 0.01, 0.1)
QUICK_TRACES = ("lirs-multi2", "lirs-sprite", "lirs-2pools", "corda-vault")

# libCacheSim hit ratios (%) from the L1 issue: (trace, size) -> (LRU, best online policy, value).
REFERENCE: dict[tuple[str, float], tuple[float, str, float]] = {
    ("orm-busy", 0.001): (50.2, "Cacheus", 50.8),
    ("orm-busy", 0.01): (77.0, "LeCaR", 77.1),
    ("orm-busy", 0.1): (88.0, "TwoQ", 89.1),
    ("orm-night", 0.001): (44.7, "Cacheus", 45.8),
    ("orm-night", 0.01): (66.2, "ARC", 66.5),
    ("orm-night", 0.1): (93.5, "TwoQ", 94.2),
    ("scarab-recs", 0.001): (18.3, "S3FIFO", 22.8),
    ("scarab-recs", 0.01): (34.7, "S3FIFO", 42.8),
    ("scarab-recs", 0.1): (60.6, "S3FIFO", 62.8),
    ("lirs-multi2", 0.001): (1.2, "ARC", 2.1),
    ("lirs-multi2", 0.01): (3.5, "Cacheus", 19.1),
    ("lirs-multi2", 0.1): (36.9, "LIRS", 51.6),
    ("lirs-sprite", 0.001): (5.2, "ARC", 5.8),
    ("lirs-sprite", 0.01): (16.3, "S3FIFO", 21.3),
    ("lirs-sprite", 0.1): (86.5, "LRU", 86.5),
    ("lirs-2pools", 0.001): (2.4, "LIRS", 4.5),
    ("lirs-2pools", 0.01): (21.8, "Cacheus", 47.7),
    ("lirs-2pools", 0.1): (54.4, "Clock", 54.4),
    ("cloudphysics-w106", 0.001): (68.3, "LRU", 68.3),
    ("cloudphysics-w106", 0.01): (79.8, "TwoQ", 82.0),
    ("cloudphysics-w106", 0.1): (91.8, "WTinyLFU", 92.8),
}


# Why a trace's row may sit below LRU without the policy being worse there.
BELOW_NOTES = {
    "lirs-2pools": "the trace is two pools of independent uniform draws, where every policy that keeps the hot "
                   "pool has the same expected hit ratio; on new draws from its generator tinylfu is at or above "
                   "LRU about half the time (`python benchmarks/two_pools_draws.py` measures it).",
}


def replay(keys: Sequence[int], capacity: int, policy: str) -> float:
    """Hit ratio (%) of ``keys`` through an L1 of ``capacity`` entries: get, and set on a miss."""
    cache = LRU(capacity, policy=policy)
    get = cache.get
    put = cache.set
    for key in keys:
        if get(key) is None:
            put(key, True)
    return 100.0 * cache.hits / len(keys)


def capacity(fraction: float, unique: int) -> int:
    """The entries libCacheSim's cache had for ``fraction`` of ``unique`` keys.

    cachesim turns a fractional size into ``(uint64_t)(wss * fraction)`` (truncated; wss = the
    trace's distinct objects when object sizes are ignored, which is how ``unique`` is
    counted here), and the reference's smallest caches held 10 objects: on the three LIRS
    0.1% rows (5, 7 and 9 entries truncated) only 10 entries reproduce its LRU figures
    (lirs-multi2 LRU at 5-9 entries 0.71-0.75%, at 10 1.19%, reference 1.2%; lirs-sprite
    4.04-5.04%, 5.23%, 5.2%; lirs-2pools 0.99-1.96%, 2.44%, 2.4%).  Rounding instead of
    truncating moves 10 rows by one entry (lirs-sprite 1%: 71 entries give LRU 16.49%, the
    reference's 70 give 16.33%, reference 16.3%).
    """
    return max(10, int(unique * fraction))


def load_trace(traces_dir: Path, name: str) -> list[int]:
    sys.path.insert(0, str(traces_dir))
    try:
        from load import load  # the traces folder's own loader
    finally:
        sys.path.pop(0)
    return [int(k) for k in load(name).tolist()]


def trace_names(traces_dir: Path) -> list[str]:
    sys.path.insert(0, str(traces_dir))
    try:
        from load import TRACES
    finally:
        sys.path.pop(0)
    return list(TRACES)


def measure(traces_dir: Path, names: Sequence[str], sizes: Sequence[float]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        started = time.perf_counter()
        keys = load_trace(traces_dir, name)
        unique = len(set(keys))
        for fraction in sizes:
            entries = capacity(fraction, unique)
            row: dict[str, Any] = {
                "trace": name,
                "size": fraction,
                "requests": len(keys),
                "unique": unique,
                "capacity": entries,
                **{policy: replay(keys, entries, policy) for policy in POLICIES},
            }
            ref = REFERENCE.get((name, fraction))
            if ref is not None:
                row["ref_lru"], row["ref_best_name"], row["ref_best"] = ref
            rows.append(row)
        print(f"  {name}: {len(keys):,} requests, {unique:,} keys, {time.perf_counter() - started:.1f}s",
              file=sys.stderr, flush=True)
    return rows


def _f(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    out = [
        "| trace | size | entries | ours LRU | ours tinylfu | ref LRU | ref best online | tinylfu − best | tinylfu − LRU |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        best = r.get("ref_best")
        out.append(
            f"| {r['trace']} | {100 * r['size']:.1f}% | {r['capacity']:,} | {_f(r['lru'])} | {_f(r['tinylfu'])} "
            f"| {r['ref_lru'] if 'ref_lru' in r else '–'} "
            f"| {r['ref_best_name'] + ' ' + str(best) if best is not None else '–'} "
            f"| {_f(r['tinylfu'] - best if best is not None else None, True)} | {_f(r['tinylfu'] - r['lru'], True)} |"
        )
    out.append("")
    out.extend(summary(rows))
    out.append("")
    out.append(f"Command: `{command}`.  {environment()}")
    return "\n".join(out) + "\n"


def summary(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    refd = [r for r in rows if "ref_lru" in r]
    if refd:
        # Our LRU against libCacheSim's at the same size: the harness check, on every row.
        worst, wr = max(((abs(r["lru"] - r["ref_lru"]), r) for r in refd), key=lambda d: d[0])
        lines.append(
            f"Harness check: our LRU is within {worst:.2f} point of libCacheSim's LRU on all {len(refd)} reference "
            f"rows (worst: {wr['trace']} {100 * wr['size']:.1f}%; the reference is rounded to 0.1)."
        )
        miss = [r for r in refd if r["tinylfu"] - r["ref_best"] < -1.0]
        lines.append(
            f"Goal 1 (tinylfu within 1 point of the best online policy): {len(refd) - len(miss)}/{len(refd)} rows"
            + (": misses " + ", ".join(f"{r['trace']} {100 * r['size']:.1f}% ({r['tinylfu'] - r['ref_best']:+.2f})"
                                       for r in miss) if miss else "") + "."
        )
    below = [r for r in rows if r["tinylfu"] < r["lru"]]
    lines.append(
        f"Goal 2 (tinylfu never below LRU): {len(rows) - len(below)}/{len(rows)} rows"
        + (": below on " + ", ".join(f"{r['trace']} {100 * r['size']:.1f}% ({r['tinylfu'] - r['lru']:+.3f})"
                                     for r in below) if below else "") + "."
    )
    lines.extend(f"{r['trace']} {100 * r['size']:.1f}%: {BELOW_NOTES[r['trace']]}"
                 for r in below if r["trace"] in BELOW_NOTES)
    return lines


def environment() -> str:
    import Cython

    return (f"Python {platform.python_version()}, Cython {Cython.__version__}, {platform.machine()} "
            f"{platform.processor() or platform.system()}.")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["trace"] for r in rows))
    cols = 3
    fig, axes = plt.subplots((len(names) + cols - 1) // cols, cols, figsize=(4.2 * cols, 3.2 * ((len(names) + cols - 1) // cols)),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        rs = sorted((r for r in rows if r["trace"] == name), key=lambda r: r["size"])
        xs = [100 * r["size"] for r in rs]
        ax.plot(xs, [r["lru"] for r in rs], "o-", label="LRU (ours)", color="tab:gray")
        ax.plot(xs, [r["tinylfu"] for r in rs], "s-", label="tinylfu (ours)", color="tab:blue")
        ref = [(100 * r["size"], r["ref_best"], r["ref_best_name"]) for r in rs if "ref_best" in r]
        if ref:
            ax.plot([x for x, _, _ in ref], [y for _, y, _ in ref], "^--", label="best libCacheSim", color="tab:orange")
            for x, y, label in ref:
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(0, 6), fontsize=7, ha="center",
                            color="tab:orange")
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x:g}%" for x in xs])
        ax.minorticks_off()
        # At least 4 points of y range, so that a hundredth of a point does not look like a cliff.
        lo, hi = ax.get_ylim()
        mid, half = (lo + hi) / 2, max((hi - lo) / 2, 2.0)
        ax.set_ylim(mid - half, mid + half * 1.15)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("L1 size (% of unique keys)", fontsize=8)
        ax.set_ylabel("hit ratio (%)", fontsize=8)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", nargs="+", help="trace names (default: every trace, or the small ones with --quick)")
    parser.add_argument("--sizes", nargs="+", type=float, default=list(SIZES), help="L1 sizes as fractions of unique keys")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_TRACES)}: a few seconds, for CI")
    parser.add_argument("--traces-dir", type=Path, default=Path(os.environ.get("MLCACHE_TRACES", "/work/shared/traces")))
    parser.add_argument("--out", type=Path, help="write hit_ratio.md/.json/.png here (default: benchmarks/results "
                                                 "for a full run, nowhere for --quick)")
    args = parser.parse_args(argv)

    names = args.traces or (list(QUICK_TRACES) if args.quick else trace_names(args.traces_dir))
    command = "python benchmarks/hit_ratio.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    rows = measure(args.traces_dir, names, args.sizes)
    table = markdown(rows, command)
    print(table)
    out = args.out or (None if args.quick or args.traces else HERE / "results")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        header = ("# L1 hit ratio on real traces: lru vs tinylfu, beside libCacheSim\n\n"
                  "Hit ratio in % of all requests (get, then set on a miss); `entries` is the L1 capacity, "
                  "`max(10, int(size x unique keys))`, the reference's own sizes (see `capacity()` in the script).  Reference columns: libCacheSim (the L1 issue).  "
                  "See `tinylfu_design.md` for how the policy was chosen.\n\n")
        (out / "hit_ratio.md").write_text(header + table)
        (out / "hit_ratio.json").write_text(json.dumps({"command": command, "environment": environment(), "rows": rows},
                                                       indent=1) + "\n")
        plot(rows, out / "hit_ratio.png")
        print(f"wrote {out}/hit_ratio.md, .json, .png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
