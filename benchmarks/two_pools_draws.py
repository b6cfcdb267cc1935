"""Is tinylfu below LRU on lirs-2pools 10% because of the policy, or because of the draw?

Run::

    python benchmarks/two_pools_draws.py                   # 400 draws per size, ~1 min
    python benchmarks/two_pools_draws.py --draws 40

lirs-2pools is synthetic: every odd request is drawn uniformly from keys 1..100 (the hot
pool) and every even one uniformly from keys 100..9999 (the cold pool), independently.  The
script first checks that on the published trace, then draws new traces from the same
generator (same length, seeded) and replays each through the compiled L1 as
``hit_ratio.py`` does, "lru" and "tinylfu" at the row's capacity (``capacity()``).

Why it matters: under independent draws the future of a key does not depend on its past, so
once both policies hold the whole hot pool (they do at 993 entries), each holds 893 cold keys
and every online policy has the same expected hit ratio.  What is left between two policies
on one trace is the luck of that draw.  The 1% row is printed beside it as a check that the
generator is faithful: there frequency pays, and tinylfu's lead must reappear on the draws.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from hit_ratio import capacity, load_trace, replay  # found through the path above

HOT = (1, 100)
COLD = (100, 9999)
SIZES = (0.01, 0.1)


def check_generator(keys: list[int]) -> str:
    """One line saying whether ``keys`` looks like the two-pool generator (or why not)."""
    hot, cold = keys[1::2], keys[0::2]
    hot_ok = all(HOT[0] <= k <= HOT[1] for k in hot)
    cold_in = sum(COLD[0] <= k <= COLD[1] for k in cold) / len(cold)
    counts = Counter(cold)
    per_key = [counts.get(k, 0) for k in range(COLD[0], COLD[1] + 1)]
    mean = statistics.fmean(per_key)
    # Independent uniform draws give Poisson counts per key: variance / mean = 1.
    dispersion = statistics.pvariance(per_key) / mean
    return (f"published trace: odd requests in {HOT[0]}..{HOT[1]}: {'all' if hot_ok else 'NOT all'}; "
            f"even requests in {COLD[0]}..{COLD[1]}: {100 * cold_in:.2f}%; cold-key count "
            f"variance / mean = {dispersion:.3f} (independent uniform draws: 1)")


def draw(rng: random.Random, length: int) -> list[int]:
    return [rng.randint(*COLD) if i % 2 == 0 else rng.randint(*HOT) for i in range(length)]


def difference(keys: Sequence[int], entries: int) -> float:
    """tinylfu's hit ratio minus LRU's, in points."""
    return replay(keys, entries, "tinylfu") - replay(keys, entries, "lru")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=400, help="new traces per size (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="first draw's seed; draw i uses seed + i")
    parser.add_argument("--traces-dir", type=Path, default=Path(os.environ.get("MLCACHE_TRACES", "/work/shared/traces")))
    args = parser.parse_args(argv)
    if args.draws < 2:
        parser.error("--draws must be at least 2")

    published = load_trace(args.traces_dir, "lirs-2pools")
    print(check_generator(published))
    unique = len(set(published))
    for fraction in SIZES:
        entries = capacity(fraction, unique)
        # The draws have ~1% fewer distinct keys than the published trace; the row's own
        # capacity is kept so that both replay the same cache.
        diffs = [difference(draw(random.Random(args.seed + i), len(published)), entries)
                 for i in range(args.draws)]
        mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
        at_or_above = sum(d >= 0 for d in diffs)
        here = difference(published, entries)
        below_here = sum(d < here for d in diffs)
        print(f"lirs-2pools {100 * fraction:g}% ({entries} entries), tinylfu - LRU in points:")
        print(f"  published trace: {here:+.4f}  (draws below it: {below_here}/{args.draws})")
        print(f"  {args.draws} draws: mean {mean:+.4f}, sd {sd:.4f}, standard error {sd / len(diffs) ** 0.5:.4f}, "
              f"at or above LRU in {at_or_above}/{args.draws}, range {min(diffs):+.3f} .. {max(diffs):+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
