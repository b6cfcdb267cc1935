"""Shared workload and reporting for the pytest-benchmark files in ``benchmarks/``.

The workload is seeded, so every contestant of a run (and every run) sees the same keys:
``N_KEYS`` string keys, a Zipf(``ZIPF_S``) read stream of ``ROUND`` keys over them, ``ROUND``
keys that are never stored, and ``2 * N_KEYS`` keys for insert-with-eviction churn.

pytest-benchmark's own table counts rounds, not operations, and its relative column compares
against the fastest row.  The ``measure`` fixture therefore records each benchmark's median
per operation, and at the end of the session a summary prints every figure beside its group's
floor (``dict.get`` / the bare asyncio ``await``) and beside the group's reference peer, from
the same run.  ``--benchmark-json`` output carries the same figures in each benchmark's
``extra_info`` (``mops_median``, ``x_floor``, ``x_reference``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import pytest
from workload import N_KEYS, ROUND, SEED, ZIPF_S, make_keys, zipf_stream  # noqa: F401 (shared with check_ratios.py)


@pytest.fixture(scope="session")
def keys() -> list[str]:
    return make_keys()


@pytest.fixture(scope="session")
def zipf_keys(keys: list[str]) -> list[str]:
    return zipf_stream(keys)


@pytest.fixture(scope="session")
def absent_keys() -> list[str]:
    return make_keys(ROUND, prefix="absent")


@pytest.fixture(scope="session")
def churn_chunks() -> list[list[str]]:
    """``2 * N_KEYS`` fresh keys in rounds of ``ROUND``: inserted in a cycle into a cache of
    ``N_KEYS``, each key was evicted long before it comes back, so every store evicts."""
    churn = make_keys(2 * N_KEYS, prefix="churn")
    return [churn[i : i + ROUND] for i in range(0, len(churn), ROUND)]


# -- recording and the end-of-run summary ------------------------------------------------


@dataclass
class Result:
    group: str
    contestant: str
    role: str  # "floor", "reference" or ""
    ops: int
    median: float  # seconds per round

    @property
    def mops(self) -> float:
        return self.ops / self.median / 1e6


_RESULTS = pytest.StashKey[list[Result]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = []


@pytest.fixture
def measure(benchmark: Any, request: pytest.FixtureRequest) -> Callable[..., None]:
    """``measure(fn, ops, contestant, role="")``: benchmark ``fn`` (one round = ``ops``
    operations) and record its median for the summary."""

    def run(fn: Callable[[], Any], ops: int, contestant: str, role: str = "") -> None:
        benchmark.extra_info.update(ops_per_round=ops, contestant=contestant, role=role)
        benchmark(fn)
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable: the function ran once, untimed
            return
        median = stats.stats.median
        benchmark.extra_info["mops_median"] = round(ops / median / 1e6, 4)
        request.config.stash[_RESULTS].append(Result(benchmark.group, contestant, role, ops, median))

    return run


def _ratios(results: list[Result]) -> dict[tuple[str, str], tuple[Optional[float], Optional[float]]]:
    floors = {r.group: r for r in results if r.role == "floor"}
    refs = {r.group: r for r in results if r.role == "reference"}
    out = {}
    for r in results:
        floor, ref = floors.get(r.group), refs.get(r.group)
        out[(r.group, r.contestant)] = (
            r.mops / floor.mops if floor else None,
            r.mops / ref.mops if ref else None,
        )
    return out


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    ratios = _ratios(config.stash.get(_RESULTS, []))
    for bench in output_json.get("benchmarks", []):
        info = bench.get("extra_info", {})
        x_floor, x_ref = ratios.get((bench.get("group"), info.get("contestant")), (None, None))
        info["x_floor"] = None if x_floor is None else round(x_floor, 3)
        info["x_reference"] = None if x_ref is None else round(x_ref, 3)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    ratios = _ratios(results)
    tr = terminalreporter
    tr.section("medians per operation, beside the same run's floor and reference")
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    for group, rows in groups.items():
        floor = next((r.contestant for r in rows if r.role == "floor"), "-")
        ref = next((r.contestant for r in rows if r.role == "reference"), "-")
        tr.write_line("")
        tr.write_line(f"{group}  (floor: {floor}; reference: {ref})")
        tr.write_line(f"  {'contestant':52} {'ns/op':>8} {'Mops/s':>8} {'x floor':>8} {'x ref':>8}")
        for r in rows:
            x_floor, x_ref = ratios[(group, r.contestant)]
            tr.write_line(
                f"  {r.contestant:52} {r.median / r.ops * 1e9:8.1f} {r.mops:8.3f} "
                f"{_fmt(x_floor):>8} {_fmt(x_ref):>8}"
            )


def _fmt(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"
