"""The results as tables, each rendered either as aligned text (the terminal) or Markdown
(the report), so the two always show the same figures."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .matrix import CONTENDERS, matrix
from .measure import Run, percentiles
from .options import BenchOptions
from .targets import Target


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    align: str  # one "l" or "r" per column

    def text(self) -> str:
        widths = [max(len(r[i]) for r in [self.headers, *self.rows]) for i in range(len(self.headers))]

        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                             for c, w, a in zip(cells, widths, self.align)).rstrip()

        return "\n".join([line(self.headers), *(line(r) for r in self.rows)])

    def markdown(self) -> str:
        rule = ["---:" if a == "r" else "---" for a in self.align]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in [self.headers, rule, *self.rows])


def rate(x: Optional[float]) -> str:
    return "" if x is None else f"{x:,.0f}"


def micro(x: float) -> str:
    """Microseconds, with as many decimals as the size calls for."""
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def levels_table(runs: dict[str, Run], opts: BenchOptions) -> Table:
    c = opts.concurrency
    order = ["L1.get@1", "floor.get@1",
             "L2.get@1", "redis.get@1", f"L2.get@{c}", f"redis.get@{c}", "redis.mget100@1", f"redis.mget100@{c}",
             "L3.get@1", "pg.fetch@1", "pg.fetch.own@1", f"L3.get@{c}", f"pg.fetch@{c}", "pg.any100@1", f"pg.any100@{c}",
             "put_many100@1", "raw.write100@1"]
    rows = []
    for run_id in order:
        run = runs.get(run_id)
        if run is None:
            continue
        p = percentiles(run.all_latencies())
        bulk = run.keys_per_op > 1
        rows.append([run.title, str(run.callers), rate(run.ops_per_s), rate(run.keys_per_s) if bulk else "",
                     micro(p["p50"]), micro(p["p95"]), micro(p["p99"])])
    return Table(["run", "callers", "ops/s", "keys/s", "p50 us", "p95 us", "p99 us"], rows, "lrrrrrr")


def matrix_table(runs: dict[str, Run], opts: BenchOptions) -> Table:
    rows = []
    for pname, callers in matrix(opts.concurrency, opts.high_concurrency):
        cells: dict[str, Optional[Run]] = {n: runs.get(f"{pname}@{callers}:{n}") for n in CONTENDERS}
        ml = cells["mlcache"]
        if ml is None:
            continue
        title = str(ml.info.get("pattern_title", pname))

        def ratio(peer: str) -> str:
            other = cells[peer]
            return f"{ml.ops_per_s / other.ops_per_s:.1f}x" if other is not None and other.ops else "n/a"

        hr = ml.info.get("hit_rates", {})
        rows.append([title, str(callers), *(rate(r.ops_per_s) if r else "n/a" for r in cells.values()),
                     ratio("cashews"), ratio("aiocache"),
                     micro(percentiles(ml.all_latencies())["p99"]),
                     f"{hr.get('L1', 0):.0f} / {hr.get('L2', 0):.0f} / {hr.get('L3', 0):.0f}"])
    headers = ["workload", "callers", *(f"{n} ops/s" for n in CONTENDERS), "x cashews", "x aiocache",
               "mlcache p99 us", "mlcache hit % L1/L2/L3"]
    return Table(headers, rows, "lr" + "r" * len(CONTENDERS) + "rrrr")


def dashboard_table(run: Run, stats: dict[str, Any]) -> Table:
    """The old dashboard: each level's lookups / hits / misses from the cache's counters, and
    the latency and rate of the gets that level answered in the measured window."""
    rows = []
    for name in ("L1", "L2", "L3", "miss", "put"):
        lat = sorted(run.latencies.get(name, []))
        p = percentiles(lat)
        served = rate(len(lat) / run.elapsed) if run.elapsed else ""
        if name in ("L1", "L2", "L3"):
            s = stats[f"{name.lower()}_cache"]
            counts = [f"{s['hits'] + s['misses']:,}", f"{s['hits']:,}", f"{s['misses']:,}", f"{s['hit_rate']:.1f}%"]
        else:
            counts = [f"{len(lat):,}", "", "", ""]
        rows.append([name, *counts, micro(p["p50"]), micro(p["p95"]), micro(p["p99"]), served])
    headers = ["level", "lookups", "hits", "misses", "hit rate", "p50 us", "p95 us", "p99 us", "served/s"]
    return Table(headers, rows, "lrrrrrrrr")


def targets_table(targets: list[Target]) -> Table:
    rows = []
    for t in targets:
        if t.figure is None:
            figure = "n/a"
        elif t.unit == "%":
            figure = f"{t.figure:.1f} %"
        else:
            figure = f"{t.figure:,.0f} {t.unit}"
        ratio = "" if t.ratio is None else f"{t.ratio:.2f}x"
        rows.append([t.verdict, t.name, t.goal, figure, ratio, t.baseline])
    return Table(["verdict", "target", "goal", "figure", "ratio", "same-run baseline"], rows, "lllrrl")
