"""Command line: ``mlcache bench`` (the benchmark suite) and ``mlcache serve`` (a cache node);
also ``python -m mlcache ...``."""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from typing import Optional, Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlcache", description="mlcache: a multi-level asyncio cache")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "bench",
        help="the benchmark suite: each level, workload patterns, peers, the combined run and its dashboard",
        description="Measures L1, L2 and L3 alone beside raw redis-py and asyncpg, workload patterns "
        "through mlcache, cashews and aiocache, and 1M keys through all three levels; prints the "
        "results, the guide's Performance Dashboard and the issue's targets (met / not met), and "
        "writes a Markdown report, results.json and PNG plots to --out.  With no URLs, throwaway "
        "redis-server and PostgreSQL servers are started and stopped afterwards (needs their "
        "binaries: apt-get install redis-server postgresql).  About two minutes; --quick: seconds.",
    )
    b.add_argument("--redis-url", help="use this Redis instead of a throwaway one")
    b.add_argument("--postgres-url", help="use this PostgreSQL instead of a throwaway one")
    b.add_argument("--quick", action="store_true", help="a few seconds in all, small key counts (for tests)")
    b.add_argument("--out", default="bench-report", metavar="DIR",
                   help="where report.md, results.json and the plots go (default bench-report/)")
    b.add_argument("--json", action="store_true", help="print the results as JSON (no progress bars)")
    b.add_argument("--duration", type=float, help="seconds measured per run (default 2; --quick 0.1)")
    b.add_argument("--keys", type=int, help="keys of the workload runs (default 100000; --quick 2000)")
    b.add_argument("--combined-keys", type=int,
                   help="keys of the combined three-level run (default 1000000; --quick 10000)")
    b.add_argument("--concurrency", type=int, default=64, help="concurrent callers (default 64)")
    b.add_argument("--high-concurrency", type=int, default=256,
                   help="callers of the high-concurrency run (default 256)")
    b.add_argument("--l1-capacity", type=int, help="L1 entries (default 5%% of each data set's keys)")
    b.add_argument("--value-size", type=int, default=100, help="payload characters per value (default 100)")
    b.add_argument("--zipf", type=float, default=0.99, help="Zipf exponent of the hot/cold keys (default 0.99)")
    b.add_argument("--read-ratio", type=float, default=0.9, help="share of gets (default 0.9)")
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--rounds", type=int, default=1,
                   help="run the whole suite this many times, interleaved, and report each figure's "
                        "median run (default 1; on a shared machine use 3 or 5)")
    s = sub.add_parser(
        "serve",
        help="a cache node: creates and sweeps the L3 table, serves the levels' Prometheus metrics",
        description="Runs a cache node until SIGTERM or SIGINT: connects the levels (REDIS_URL and "
        "POSTGRES_URL from the environment, or the guide's config dict as JSON with --config), "
        "creates L3's table and sweeps its expired rows, and serves Prometheus metrics (default "
        "port 8000).  What the Dockerfile, docker-compose.yml and deploy/kubernetes.yaml run.",
    )
    s.add_argument("--config", metavar="FILE", help="the guide's config dict, as a JSON object")
    s.add_argument("--metrics-port", type=int, help="Prometheus port (default: the config's prometheus_port, else 8000)")
    s.add_argument("--metrics-addr", help="address the metrics listen on (default all interfaces)")
    return parser


def redact(command: str) -> str:
    """The command goes into the report; a password in a URL given to it must not."""
    return re.sub(r"(://[^\s/@:]*:)[^\s/@]*@", r"\1***@", command)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(args_list)
    if args.command == "bench":
        from .bench import BenchOptions
        from .bench import main as bench_main
        from .localservers import LocalServerError

        fields = {k: v for k, v in vars(args).items() if k != "command"}
        opts = BenchOptions(**fields, command=redact("mlcache " + shlex.join(args_list)))
        problems = opts.problems()
        if problems:
            for problem in problems:
                print(f"mlcache bench: {problem}", file=sys.stderr)
            return 2
        try:
            return bench_main(opts)
        except LocalServerError as exc:
            print(f"mlcache bench: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
    if args.command == "serve":
        return _serve(args)
    return 2


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from .errors import ConfigError
    from .serve import load_config, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(serve(load_config(args.config, args.metrics_port, args.metrics_addr)))
    except ConfigError as exc:
        print(f"mlcache serve: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
