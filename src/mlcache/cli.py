"""Command line: ``mlcache bench`` (also ``python -m mlcache bench``)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlcache", description="mlcache: a multi-level asyncio cache")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "bench",
        help="drive a mixed workload through L1, L2 and L3 and print the Performance Dashboard",
        description="With no URLs, throwaway redis-server and PostgreSQL servers are started and "
        "stopped afterwards (needs their binaries: apt-get install redis-server postgresql).",
    )
    b.add_argument("--redis-url", help="use this Redis instead of a throwaway one")
    b.add_argument("--postgres-url", help="use this PostgreSQL instead of a throwaway one")
    b.add_argument("--duration", type=float, default=5.0, help="seconds of workload (default 5)")
    b.add_argument("--keys", type=int, default=20_000, help="distinct keys (default 20000)")
    b.add_argument("--concurrency", type=int, default=32, help="concurrent callers (default 32)")
    b.add_argument("--l1-capacity", type=int, default=2_000, help="L1 entries (default 2000)")
    b.add_argument("--value-size", type=int, default=100, help="payload bytes per value (default 100)")
    b.add_argument("--read-ratio", type=float, default=0.9, help="share of gets (default 0.9)")
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from .bench import BenchOptions
        from .bench import main as bench_main
        from .localservers import LocalServerError

        for name in ("duration", "keys", "concurrency", "l1_capacity", "value_size"):
            if getattr(args, name) <= 0:
                print(f"mlcache bench: --{name.replace('_', '-')} must be > 0", file=sys.stderr)
                return 2
        if not 0.0 <= args.read_ratio <= 1.0:
            print("mlcache bench: --read-ratio must be between 0 and 1", file=sys.stderr)
            return 2
        opts = BenchOptions(**{k: v for k, v in vars(args).items() if k != "command"})
        try:
            return bench_main(opts)
        except LocalServerError as exc:
            print(f"mlcache bench: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
