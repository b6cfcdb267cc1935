"""The main job, ``mlcache bench``, end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlcache", "bench", *args],
        capture_output=True, text=True, timeout=240, env=dict(os.environ),
    )


def test_bench_on_given_servers_prints_the_dashboard(redis_url: str, postgres_url: str) -> None:
    out = bench("--redis-url", redis_url, "--postgres-url", postgres_url,
                "--duration", "1", "--keys", "2000", "--l1-capacity", "200")
    assert out.returncode == 0, out.stderr
    assert "Performance Dashboard" in out.stdout
    for line in ("Combined Hit Rate:", "L1 Hit Rate:", "L2 Hit Rate:", "L3 Hit Rate:", "Target Achieved:"):
        assert line in out.stdout
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line[:3] in ("L1 ", "L2 ", "L3 ")}
    for level in ("L1", "L2", "L3"):
        assert int(rows[level][2].replace(",", "")) > 0, f"{level} answered nothing:\n{out.stdout}"


def test_bench_zero_config_starts_its_own_servers() -> None:
    out = bench("--duration", "1", "--keys", "1000", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert any("throwaway redis-server" in n for n in result["servers"])
    assert any("throwaway PostgreSQL" in n for n in result["servers"])
    stats = result["stats"]
    assert stats["l1_cache"]["hits"] > 0 and stats["l3_cache"]["hits"] > 0


def test_bench_rejects_bad_arguments() -> None:
    out = bench("--duration", "0")
    assert out.returncode == 2 and "--duration" in out.stderr
