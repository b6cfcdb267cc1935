"""The main job, ``mlcache bench``, end to end (``--quick``: a few seconds per run)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from mlcache.cli import main

PLOTS = ("throughput_levels.png", "throughput_peers.png", "latency_cdf.png", "hit_rate_over_time.png")
DASHBOARD = ("Combined Hit Rate:", "L1 Hit Rate:", "L2 Hit Rate:", "L3 Hit Rate:", "Target Achieved:")


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlcache", "bench", *args],
        capture_output=True, text=True, timeout=240, env=dict(os.environ),
    )


async def test_quick_on_given_servers_prints_dashboard_and_writes_the_report(
    redis_url: str, postgres_url: str, tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    out = bench("--quick", "--redis-url", redis_url, "--postgres-url", postgres_url, "--out", str(out_dir))
    assert out.returncode == 0, out.stderr

    text = out.stdout
    assert "Performance Dashboard" in text
    for line in DASHBOARD:
        assert line in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line[:3] in ("L1 ", "L2 ", "L3 ")}
    for level in ("L1", "L2", "L3"):
        assert int(rows[level][2].replace(",", "")) > 0, f"{level} answered nothing:\n{text}"
    assert "Targets: met / not met" in text
    assert out.stderr.count("\r") == 0, "progress bars must stay off when stderr is not a terminal"

    report = (out_dir / "report.md").read_text()
    for needed in (f"{os.cpu_count()} cores", "Python", "Redis ", "PostgreSQL ", "asyncpg",
                   "`mlcache bench --quick", "shared and noisy", "## Targets", "## Levels", "## Workloads",
                   "Combined Hit Rate:"):
        assert needed in report, needed
    for plot in PLOTS:
        assert (out_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
        assert f"]({plot})" in report
    result = json.loads((out_dir / "results.json").read_text())
    assert {t["met"] for t in result["targets"]} <= {True, False, None}
    assert result["servers"] == ["L2: the given Redis (--redis-url)", "L3: the given PostgreSQL (--postgres-url)"]

    # Given servers are left as they were found: no bench keys, no bench tables.
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert [k async for k in client.scan_iter(match="mlcb*")] == []
    finally:
        await client.aclose()
    con = await asyncpg.connect(postgres_url)
    try:
        assert await con.fetchval("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'mlcb%'") == 0
    finally:
        await con.close()


def test_quick_zero_config_starts_its_own_servers_and_prints_json(tmp_path: Path) -> None:
    out = bench("--quick", "--json", "--rounds", "2", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["options"]["rounds"] == 2
    assert any("throwaway redis-server" in n for n in result["servers"])
    assert any("throwaway PostgreSQL" in n for n in result["servers"])
    stats = result["stats"]
    assert stats["l1_cache"]["hits"] > 0 and stats["l3_cache"]["hits"] > 0
    runs = {r["id"]: r for r in result["runs"]}
    for run_id in ("L1.get@1", "L2.get@64", "L3.get@64", "redis.mget100@1", "pg.any100@64",
                   "put_many100@1", "zipf@64:mlcache", "zipf@256:mlcache", "write@64:redis-py", "combined@64"):
        assert runs[run_id]["ops"] > 0, run_id
        assert len(runs[run_id]["rounds_ops_per_s"]) == 2, run_id
        assert runs[run_id]["latency_us"]["p99"] >= runs[run_id]["latency_us"]["p50"] > 0
    for peer in ("cashews", "aiocache"):
        if find_spec(peer) is not None:
            assert runs[f"zipf@64:{peer}"]["ops"] > 0, peer
        else:  # a missing peer is said so, never silently left out
            assert any(f"{peer} is not installed" in n for n in result["notes"]), peer
    assert out.stderr.count("\r") == 0, "no progress bars with --json"
    assert json.loads((tmp_path / "results.json").read_text())["targets"] == result["targets"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--duration", "0"], "--duration"),
        (["--duration", "soon"], "--duration"),
        (["--keys", "10"], "--keys"),
        (["--combined-keys", "-5"], "--combined-keys"),
        (["--concurrency", "0"], "--concurrency"),
        (["--high-concurrency", "0"], "--high-concurrency"),
        (["--l1-capacity", "0"], "--l1-capacity"),
        (["--value-size", "0"], "--value-size"),
        (["--zipf", "0"], "--zipf"),
        (["--read-ratio", "1.5"], "--read-ratio"),
        (["--redis-url", "http://localhost:6379"], "--redis-url"),
        (["--postgres-url", "mysql://localhost/db"], "--postgres-url"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["bench", *args])
    except SystemExit as exc:  # argparse's own errors (a value of the wrong type, an unknown flag)
        code = exc.code
    assert code == 2
    assert flag in capsys.readouterr().err


def test_out_must_not_be_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("")
    assert main(["bench", "--quick", "--out", str(a_file)]) == 2
    assert "--out" in capsys.readouterr().err


def test_bad_argument_exit_code_from_the_command_line() -> None:
    out = bench("--concurrency", "-1")
    assert out.returncode == 2 and "--concurrency" in out.stderr


def test_passwords_in_urls_stay_out_of_the_report_command() -> None:
    from mlcache.cli import redact

    command = "mlcache bench --redis-url redis://:s3cret@h:1/0 --postgres-url=postgresql://u:p%40ss@h:5/db"
    assert redact(command) == "mlcache bench --redis-url redis://:***@h:1/0 --postgres-url=postgresql://u:***@h:5/db"
