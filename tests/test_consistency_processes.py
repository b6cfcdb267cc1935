"""Staleness across OS processes: how long after a put or invalidate on one process can another
still read the old value?  Four processes share the real Redis and PostgreSQL: this one
writes, three read in a loop and log every change they see.  Linux's CLOCK_MONOTONIC is
system-wide, so the processes' timestamps compare directly.

Figures are printed (p50 / p99 / max); the test asserts the issue's targets with room for a
loaded CI machine, and that nothing stale is read once a cut subscription has healed.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

from faultproxy import FaultProxy

from mlcache import MultiLevelCache

READER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from mlcache import MultiLevelCache

    async def main(config, keys, stop_file):
        seen = {}
        log = []
        trust = []
        async with MultiLevelCache(config) as cache:
            bp = cache.backplane
            was = bp.trusted
            print("ready", flush=True)
            while not os.path.exists(stop_file):
                for key in keys:
                    value = await cache.get(key)
                    if seen.get(key, "unset") != value:
                        seen[key] = value
                        log.append([key, value, time.monotonic()])
                if bp.trusted != was:
                    was = bp.trusted
                    trust.append([was, time.monotonic()])
                # L1 hits never suspend: give the backplane listener its turn.
                await asyncio.sleep(0.0005)
        print(json.dumps({"log": log, "trust": trust}), flush=True)

    asyncio.run(main(*json.loads(sys.argv[1])))
    """
)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _staleness(writes: list[tuple[str, Any, float]], log: list[list[Any]], after: float) -> list[float]:
    """For each write completed after ``after``: seconds until this reader first read its
    value (or a later write's); writes it never saw before a later one are measured by that."""
    out = []
    by_key: dict[str, list[tuple[Any, float]]] = {}
    for key, value, t in log:
        by_key.setdefault(key, []).append((value, t))
    for i, (key, value, done) in enumerate(writes):
        if done < after:
            continue
        later = [w[1] for w in writes[i:] if w[0] == key]           # this write's state or newer
        for seen, t in by_key.get(key, []):
            if seen in later and t >= done - 0.5:
                out.append(max(0.0, t - done))
                break
    return out


async def test_staleness_across_four_processes_with_a_cut_subscription(
        redis_url: str, cache_config: dict) -> None:
    proxy = await FaultProxy.in_front_of(redis_url)
    keys = [f"s{i}" for i in range(8)]
    # The readers reach Redis (data and backplane) through the proxy, PostgreSQL directly.
    reader_config = {**cache_config, "redis_url": f"redis://127.0.0.1:{proxy.port}/0",
                     "l2": {**cache_config["l2"], "read_timeout": 0.05, "write_timeout": 0.1}}
    writes: list[tuple[str, Any, float]] = []
    try:
        async with MultiLevelCache(cache_config) as writer:
            await writer.put_many({k: -1 for k in keys}, ttl_seconds=300)
            with tempfile.TemporaryDirectory() as tmp:
                stop = os.path.join(tmp, "stop")
                procs = [subprocess.Popen([sys.executable, "-c", READER, json.dumps([reader_config, keys, stop])],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=dict(os.environ)) for _ in range(3)]
                try:
                    for p in procs:
                        assert p.stdout is not None
                        assert (await asyncio.to_thread(p.stdout.readline)).strip() == "ready"
                    cut_at = healed_at = 0.0
                    for n in range(300):
                        if n == 150:                      # cut the readers off Redis for a second
                            cut_at = time.monotonic()
                            await proxy.refuse()
                        if n == 200:
                            await proxy.pass_through()
                            healed_at = time.monotonic()
                        key = keys[n % len(keys)]
                        if n % 4 == 3:
                            await writer.invalidate(key)
                            writes.append((key, None, time.monotonic()))
                        else:
                            await writer.put(key, n, ttl_seconds=300)
                            writes.append((key, n, time.monotonic()))
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(0.5)
                    open(stop, "w").close()
                    outs = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
                finally:
                    for p in procs:
                        if p.poll() is None:
                            p.kill()
                            p.wait()
        assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
        reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    finally:
        await proxy.close()

    before_cut = [w for w in writes if w[2] < cut_at]
    normal: list[float] = []
    for r in reports:
        normal += _staleness(before_cut, r["log"], after=0.0)
    print(f"\nstaleness, 3 reader processes, {len(before_cut)} writes before the cut: "
          f"p50 {1000 * _percentile(normal, 0.5):.1f} ms, p99 {1000 * _percentile(normal, 0.99):.1f} ms, "
          f"max {1000 * max(normal):.1f} ms ({len(normal)} measured)")
    # Once a reader trusts its subscription again, it reads no value older than the writes
    # completed before that moment.
    for r in reports:
        regained = [t for trusted, t in r["trust"] if trusted and t > cut_at]
        assert regained, r["trust"]
        back = regained[0]
        print(f"reader resubscribed {1000 * (back - healed_at):.0f} ms after the network healed")
        last: dict[str, Any] = {}
        for key, value, done in writes:
            if done < back:
                last[key] = value
        ok_values = {key: {v for k, v, d in writes if k == key and d >= back} | {last[key]} for key in last}
        stale_after = [(k, v, t) for k, v, t in r["log"]
                       if t > back and k in last and v not in ok_values[k]]
        assert not stale_after, stale_after[:5]
    assert _percentile(normal, 0.99) <= 0.25 and max(normal) <= 1.0   # the issue: 50 / 200 ms
