"""``mlcache serve``, the cache node the Dockerfile, docker-compose.yml and
deploy/kubernetes.yaml run: a real process on the session's Redis and PostgreSQL."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from mlcache.localservers import free_port

ROOT = Path(__file__).resolve().parent.parent


def node(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mlcache", "serve", *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def running(*args: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A node for the body of the with-statement; killed after it if still running."""
    proc = node(*args, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def stopped(proc: subprocess.Popen[str], sig: signal.Signals) -> str:
    """Send ``sig``; the node must exit 0 within 15 s.  Returns what it logged."""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return err


def scrape(port: int, want: str, within: float = 30.0) -> str:
    """The metrics page once it shows ``want``."""
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                text = reply.read().decode()
            if want in text:
                return text
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no {want!r} on the metrics page within {within} s:\n{text[-2000:]}")


async def test_the_node_serves_metrics_sweeps_l3_and_stops_cleanly_on_sigterm(
    redis_url: str, postgres_url: str, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "cache.json"
    config.write_text(json.dumps({"key_prefix": namespace, "l3": {"table": namespace}}))
    env = {"REDIS_URL": redis_url, "POSTGRES_URL": postgres_url}
    with running("--config", str(config), "--metrics-port", str(port), "--metrics-addr", "127.0.0.1",
                 env=env) as proc:
        page = scrape(port, 'cache_size_bytes{level="L3"}')
        assert 'cache_size_bytes{level="L2"}' in page
        con = await asyncpg.connect(postgres_url)
        try:  # the node made the table it keeps
            assert await con.fetchval("SELECT to_regclass($1) IS NOT NULL", namespace)
        finally:
            await con.close()
        err = stopped(proc, signal.SIGTERM)
    assert "mlcache serving L1, L2, L3" in err and "mlcache stopped" in err
    assert "Traceback" not in err


async def test_the_node_starts_before_its_servers_and_says_what_is_wrong(postgres_url: str) -> None:
    # docker-compose starts the node with Redis and PostgreSQL, not after they are ready: a
    # level not up yet is logged and retried, never fatal; the password is never logged.
    port = free_port()
    dead = f"redis://cache:s3cret@127.0.0.1:{free_port()}/0"
    with running("--metrics-port", str(port), "--metrics-addr", "127.0.0.1",
                 env={"REDIS_URL": dead, "POSTGRES_URL": postgres_url}) as proc:
        scrape(port, 'cache_size_bytes{level="L3"}')
        err = stopped(proc, signal.SIGINT)
    assert "L2 unavailable at start-up" in err and "s3cret" not in err


def test_a_bad_setting_stops_the_node_at_once_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "cache.json"
    config.write_text(json.dumps({"l2": {"max_connection": 5}}))
    env = {"REDIS_URL": "redis://cache:s3cret@127.0.0.1:1/0", "POSTGRES_URL": ""}
    proc = node("--config", str(config), env=env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "max_connection" in err and "s3cret" not in err
    assert "Traceback" not in err
    proc = node("--config", str(tmp_path / "missing.json"), env=env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "missing.json" in err


def test_the_deployment_files_run_the_node_as_documented() -> None:
    # No Docker here: what can be checked is that the files name what exists, the command,
    # the settings the config reads and the port the node serves by default.
    from mlcache.serve import DEFAULT_METRICS_PORT

    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert cmd == ["python", "-m", "mlcache", "serve"]
    assert f"EXPOSE {DEFAULT_METRICS_PORT}" in dockerfile
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "build: ." in compose and f'"{DEFAULT_METRICS_PORT}:{DEFAULT_METRICS_PORT}"' in compose
    assert "REDIS_URL=redis://redis:6379/0" in compose and "POSTGRES_URL=postgresql://" in compose
    kube = (ROOT / "deploy" / "kubernetes.yaml").read_text()
    assert "name: REDIS_URL" in kube and "name: POSTGRES_URL" in kube
    assert f"containerPort: {DEFAULT_METRICS_PORT}" in kube


def test_a_taken_metrics_port_stops_the_node() -> None:
    # In an application a busy metrics port is only logged; a node exists to serve them.
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = node("--metrics-port", str(port), "--metrics-addr", "127.0.0.1",
                    env={"REDIS_URL": "", "POSTGRES_URL": ""})
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "no metrics endpoint" in err and "Traceback" not in err
