"""The bench's parts on their own: options, seeded plans, the timing loop, targets, tables.

The suite end to end is in test_cli.py; nothing here times anything it then asserts on.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from mlcache.bench import BenchOptions
from mlcache.bench.context import Context, hit_rates
from mlcache.bench.measure import Run, Timeline, drive, drive_paired, percentiles
from mlcache.bench.tables import Table, targets_table
from mlcache.bench.targets import evaluate
from mlcache.bench.progress import Progress
from mlcache.bench.workloads import GET, PUT, ZipfSampler, key, key_batches, patterns, plan, uniform_keys


# --- options --------------------------------------------------------------------------------

def test_no_arguments_means_the_full_suite() -> None:
    opts = BenchOptions().resolved()
    assert (opts.duration, opts.keys, opts.combined_keys) == (2.0, 100_000, 1_000_000)
    assert (opts.concurrency, opts.high_concurrency) == (64, 256)
    assert opts.out == "bench-report" and opts.problems() == []


def test_quick_shrinks_everything_but_explicit_values_win() -> None:
    quick = BenchOptions(quick=True).resolved()
    assert quick.duration is not None and quick.duration < 0.5
    assert quick.keys is not None and quick.keys <= 5_000
    assert quick.combined_keys is not None and quick.combined_keys <= 20_000
    assert BenchOptions(quick=True, keys=3_000).resolved().keys == 3_000
    assert quick.l1_for(10_000) == 500 and BenchOptions(l1_capacity=7).l1_for(10_000) == 7


@pytest.mark.parametrize(
    ("change", "flag"),
    [({"duration": -1.0}, "--duration"), ({"keys": 199}, "--keys"), ({"combined_keys": 0}, "--combined-keys"),
     ({"miss_ratio": 2.0}, "--miss-ratio"), ({"redis_url": "localhost:6379"}, "--redis-url"),
     ({"out": ""}, "--out"), ({"rounds": 0}, "--rounds")],
)
def test_problems_name_the_flag(change: dict[str, object], flag: str) -> None:
    problems = BenchOptions(**change).problems()  # type: ignore[arg-type]
    assert len(problems) == 1 and problems[0].startswith(flag + " ")


# --- plans ----------------------------------------------------------------------------------

def test_plans_are_seeded_and_every_contender_sees_the_same_one() -> None:
    zipf = patterns(0.9, 0.99)["zipf"]
    one = plan(zipf, 1_000, zipf=0.99, miss_ratio=0.03, seed=1, length=5_000)
    assert one == plan(zipf, 1_000, zipf=0.99, miss_ratio=0.03, seed=1, length=5_000)
    assert one != plan(zipf, 1_000, zipf=0.99, miss_ratio=0.03, seed=2, length=5_000)


def test_zipf_plan_is_hot_at_the_low_ranks_with_the_asked_read_and_miss_shares() -> None:
    ops = plan(patterns(0.9, 0.99)["zipf"], 10_000, zipf=0.99, miss_ratio=0.05, seed=3, length=40_000)
    reads = [k for is_read, k in ops if is_read is GET]
    assert 0.88 < len(reads) / len(ops) < 0.92
    absent = [k for k in reads if k.startswith("absent")]
    assert 0.04 < len(absent) / len(reads) < 0.06
    counts = Counter(k for k in reads if not k.startswith("absent"))
    assert counts.most_common(1)[0][0] == "k0"
    assert counts["k0"] > 20 * counts["k5000"]


def test_write_heavy_is_half_writes_and_scan_reads_walk_the_keys_in_order() -> None:
    pats = patterns(0.9, 0.99)
    writes = plan(pats["write"], 1_000, zipf=0.99, miss_ratio=0.0, seed=4, length=10_000)
    assert 0.47 < sum(is_read is PUT for is_read, _ in writes) / len(writes) < 0.53
    scan = plan(pats["scan"], 1_000, zipf=0.99, miss_ratio=0.0, seed=4, length=10_000)
    reads = [int(k[1:]) for is_read, k in scan if is_read is GET]
    steps = sum(b == a + 1 for a, b in zip(reads, reads[1:]))
    assert steps > 0.1 * len(reads), "about a quarter of consecutive reads should be scan steps"


def test_uniform_keys_and_batches_cover_the_key_space() -> None:
    keys = uniform_keys(100, seed=5, length=5_000)
    assert set(keys) == {f"k{i}" for i in range(100)}
    batches = key_batches(300, 100, seed=5, count=10)
    assert len(batches) == 10 and all(len(set(b)) == 100 for b in batches)


def test_zipf_sampler_stays_in_range() -> None:
    import random

    draws = ZipfSampler(50, 1.2).draw(random.Random(0), 2_000)
    assert min(draws) == 0 and max(draws) < 50


# --- the timing loop ------------------------------------------------------------------------

async def test_drive_counts_only_operations_after_the_warm_up_and_files_them_by_label() -> None:
    done: list[str] = []

    async def op(item: str) -> str:
        await asyncio.sleep(0.001)
        done.append(item)
        return "even" if int(item) % 2 == 0 else "odd"

    ops, elapsed, lat, tl = await drive(op, [str(i) for i in range(10)], callers=4, duration=0.2,
                                        warmup=0.1, labelled=True, timeline=True)
    assert 0 < ops < len(done), "warm-up operations are done but not counted"
    assert set(lat) == {"even", "odd"} and sum(map(len, lat.values())) == ops
    assert 0.19 < elapsed < 1.0
    assert tl is not None and sum(sum(row) for row in tl.trimmed().values()) <= len(done)


async def test_drive_with_a_constant_label() -> None:
    async def op(item: int) -> None:
        await asyncio.sleep(0)

    ops, _, lat, tl = await drive(op, [1, 2, 3], callers=2, duration=0.05, warmup=0.0, label="get")
    assert list(lat) == ["get"] and len(lat["get"]) == ops > 0 and tl is None


def test_percentiles_are_nearest_rank_in_microseconds() -> None:
    p = percentiles([i / 1e6 for i in range(1, 101)])  # 1..100 us
    assert (p["p50"], p["p95"], p["p99"]) == pytest.approx((50, 95, 99))
    assert p["mean"] == pytest.approx(50.5) and p["n"] == 100
    assert percentiles([])["p99"] == 0.0


def test_timeline_leaves_out_what_finishes_after_the_deadline() -> None:
    tl = Timeline(1.0, step=0.25)
    for t in (0.1, 0.3, 0.99, 1.2, 5.0):
        tl.add("L1", t)
    assert tl.trimmed() == {"L1": [1, 1, 0, 1]}


def test_hit_rates_follow_the_cache_stats_definition() -> None:
    rates = hit_rates({"L1": 60, "L2": 20, "L3": 10, "miss": 10, "put": 99})
    assert rates == pytest.approx({"combined": 90.0, "L1": 60.0, "L2": 50.0, "L3": 50.0})
    assert hit_rates({}) == {"combined": 0.0, "L1": 0.0, "L2": 0.0, "L3": 0.0}



async def test_paired_contenders_take_turns_of_whole_slices_until_each_had_its_time() -> None:
    seen: list[tuple[str, int]] = []

    def recorder(name: str) -> object:
        async def op(item: int) -> None:
            seen.append((name, item))
            await asyncio.sleep(0)
        return op

    results = await drive_paired([(recorder("a"), [1, 2, 3]), (recorder("b"), [7, 8])],
                                 duration=0.05, warmup=0.01, slice_ops=4)
    turns = [seen[i][0] for i in range(0, len(seen), 4)]
    assert all(seen[i][0] == turns[i // 4] for i in range(len(seen)))   # whole slices
    assert turns[:4] == ["a", "b", "a", "b"]                              # in turns
    assert [x for n, x in seen if n == "a"][:8] == [1, 2, 3, 1, 2, 3, 1, 2]  # each its own plan
    assert [x for n, x in seen if n == "b"][:5] == [7, 8, 7, 8, 7]
    for ops, elapsed, lat in results:
        assert elapsed >= 0.05 and ops % 4 == 0 and ops == len(lat["op"])


# --- targets and tables ---------------------------------------------------------------------

def _run(run_id: str, ops_per_s: float, keys_per_op: int = 1) -> Run:
    return Run(run_id, run_id, "x", 1, int(ops_per_s), keys_per_op, 1.0, {"get": [0.001]})


def test_targets_are_judged_against_same_run_baselines_and_missing_peers_are_na() -> None:
    opts = BenchOptions().resolved()
    runs = {r.id: r for r in [
        _run("L2.get@64", 150_000), _run("redis.mget100@1", 2_000, 100), _run("redis.mget100@64", 3_000, 100),
        _run("L2.get@1", 9_000), _run("redis.get@1", 10_000), _run("zipf@64:mlcache", 60_000),
        _run("zipf@64:cashews", 10_000), _run("put_many100@1", 600, 100), _run("raw.write100@1", 900, 100),
    ]}
    targets = {t.name: t for t in evaluate(runs, opts, {"combined": 97.0, "L1": 60.0, "L2": 50.0, "L3": 80.0})}
    assert targets["L2 get, 64 callers, L1 miss -> L2 hit"].met is True
    mget = targets["L2 get, 64 callers vs redis-py MGET x100"]
    # Judged against one caller's MGETs (the issue's baseline), the 64 callers' beside it.
    assert mget.ratio == pytest.approx(0.75) and mget.met is True
    assert "1 caller" in mget.baseline and "300,000 keys/s (0.50x of that)" in mget.baseline
    assert targets["L3 get, 64 callers vs asyncpg = ANY x100 (stretch)"].met is None  # no L3 runs
    assert targets["L2 get, 1 caller vs redis-py GET"].met is False
    assert targets["Zipf workload, 64 callers vs cashews"].ratio == pytest.approx(6.0)
    assert targets["Zipf workload, 64 callers vs aiocache"].met is None
    assert targets["Zipf workload, 64 callers vs aiocache"].verdict == "n/a"
    assert targets["put_many x100 through all levels"].met is True
    assert targets["combined hit rate (Target Achieved)"].met is True
    text = targets_table(list(targets.values())).text()
    assert "NOT met" in text and "n/a" in text


def test_table_renders_as_aligned_text_and_as_markdown() -> None:
    table = Table(["name", "ops/s"], [["a", "1"], ["longer", "1,000"]], "lr")
    assert table.text().splitlines() == ["name    ops/s", "a           1", "longer  1,000"]
    assert table.markdown().splitlines()[1] == "| --- | ---: |"


def test_a_missing_peer_is_a_note_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mlcache.bench.peers import make_peer

    monkeypatch.setitem(sys.modules, "cashews", None)  # what an uninstalled package looks like to import
    peer, why = make_peer("cashews", "redis://127.0.0.1:1/0", "ns")
    assert peer is None and why is not None and "cashews is not installed" in why
    peer, why = make_peer("aiocache", "unix:///tmp/redis.sock", "ns")
    assert peer is None and why is not None and "aiocache skipped" in why


def test_rounds_report_each_figure_as_its_median_run() -> None:
    from mlcache.bench.measure import Run
    from mlcache.bench.runner import median_runs

    def run(run_id: str, ops: int) -> Run:
        return Run(run_id, run_id, "mlcache", 1, ops, 1, 1.0, {})

    rounds = [[run("a", 30), run("b", 5)], [run("a", 10), run("b", 7)], [run("a", 20), run("b", 6)]]
    chosen = median_runs(rounds)
    assert [(r.id, r.ops) for r in chosen] == [("a", 20), ("b", 6)]
    assert chosen[0].info["rounds_ops_per_s"] == [30.0, 10.0, 20.0]
    assert median_runs([[run("a", 1)]])[0].info == {}      # one round: nothing to add
    even = median_runs([[run("a", 4)], [run("a", 8)]])
    assert even[0].ops == 4                                 # the lower middle: never flattering


async def test_reset_l2_leaves_exactly_the_preloaded_hottest_keys(redis_url: str) -> None:
    # Each mlcache run must start from the data set's L2 as designed, not from the keys the
    # runs before it promoted or wrote there.
    import redis.asyncio as aioredis

    ctx = Context(BenchOptions(quick=True).resolved(), redis_url, "postgresql://unused", "mlcbreset",
                  Progress(False, 0), "payload")
    prefix = ctx.redis_prefix("d") + ":"
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.mset({prefix + key(i): b"v" for i in range(25)})
        await client.set(prefix + "absent1", b"x")  # not one of the data set's keys: left alone
        await ctx.reset_l2("d", 25, l2_upto=5)
        left = sorted([k.decode() async for k in client.scan_iter(match=prefix + "*")])
        assert left == sorted([prefix + key(i) for i in range(5)] + [prefix + "absent1"])
    finally:
        await client.delete(*[prefix + key(i) for i in range(5)], prefix + "absent1")
        await client.aclose()

