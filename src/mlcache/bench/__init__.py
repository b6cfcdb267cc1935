"""``mlcache bench``: the guide's benchmark suite (it replaces ``cache_performance_benchmark.py``).

In one run, against the same Redis and PostgreSQL (throwaway local servers unless URLs are
given):

* **levels** (``levelruns``): L1, L2 and L3 each alone, beside raw redis-py (GET, MGET x100)
  and raw asyncpg (prepared fetch, ``= ANY($1)`` x100), and ``put_many`` through all levels;
* **workloads** (``matrix``): hot/cold Zipf, uniform, scan-heavy and write-heavy at 64
  callers, Zipf at 256, through mlcache, cashews, aiocache and raw redis-py;
* **combined** (``combined``): 1M keys through all three levels, with the guide's
  Performance Dashboard;

then the issue's targets, each beside its same-run baseline (``targets``), printed
(``tables``, ``report``) and written as ``report.md``, ``results.json`` and PNG plots
(``plots``) to ``--out``.  ``workloads`` makes the seeded plans, ``measure`` times them,
``peers`` wraps the other libraries, ``servers`` starts and describes the servers.
"""
from __future__ import annotations

from .options import BenchOptions
from .runner import bench, main

__all__ = ["BenchOptions", "bench", "main"]
