"""Two OS processes share data through L2 and L3 (not only two objects in one process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from mlcache import MultiLevelCache

pytestmark = pytest.mark.multiprocess

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from mlcache import MultiLevelCache

    async def main(config, action, key, value):
        async with MultiLevelCache(config) as cache:
            if action == "put":
                await cache.put(key, value, ttl_seconds=300)
                print(json.dumps(None))
            else:
                found = await cache.lookup(key)
                print(json.dumps(found))

    config, action, key, value = json.loads(sys.argv[1])
    asyncio.run(main(config, action, key, value))
    """
)


def run(config: dict[str, Any], action: str, key: str, value: Any = None) -> Any:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps([config, action, key, value])],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


async def test_processes_share_through_l2_and_l3(cache_config: dict[str, Any], direct: Any) -> None:
    run(cache_config, "put", "shared", {"from": "process A"})
    assert run(cache_config, "get", "shared") == [{"from": "process A"}, "L2"]
    await direct.drop_redis("shared")
    assert run(cache_config, "get", "shared") == [{"from": "process A"}, "L3"]
    assert run(cache_config, "get", "shared") == [{"from": "process A"}, "L2"]  # L2 was refilled
    # and this process sees the other's write too
    async with MultiLevelCache(cache_config) as here:
        assert await here.get("shared") == {"from": "process A"}
    assert run(cache_config, "get", "never-written") == [None, None]
