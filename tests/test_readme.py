"""The README's Python examples run (against the test servers instead of localhost defaults)."""
from __future__ import annotations

import asyncio
import pathlib
import re
from typing import Any

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_examples() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 3
    assert "asyncio.run(main())" in blocks[0]
    assert "@cache_result(cache, ttl_seconds=1800, cache_level=\"L2\")" in blocks[1]


def test_usage_example(redis_url: str, postgres_url: str, namespace: str, capsys: Any) -> None:
    code = python_blocks()[0]
    code = code.replace("redis://localhost:6379/0", redis_url)
    code = code.replace("postgresql://user:pass@localhost:5432/db", postgres_url)
    code = code.replace('"l1_max_capacity": 200_000,', f'"l1_max_capacity": 200_000, "key_prefix": "{namespace}",')
    assert redis_url in code and postgres_url in code
    # The example calls asyncio.run itself, so run it in a fresh thread-free loop context.
    namespace_: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace_)
    assert "Combined hit rate: 100.0%" in capsys.readouterr().out


async def test_decorator_example(cache: Any) -> None:
    code = python_blocks()[1]
    calls: list[tuple[Any, Any]] = []

    def heavy_computation(a: Any, b: Any) -> str:
        calls.append((a, b))
        return f"{a}{b}"

    scope: dict[str, Any] = {"cache": cache, "heavy_computation": heavy_computation}
    exec(compile(code, "README.md", "exec"), scope)
    fn = scope["expensive_operation"]
    assert await fn("x", "y") == await fn("x", "y") == "xy"
    assert calls == [("x", "y")]


def test_lru_example() -> None:
    code = python_blocks()[2]
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["lru"].capacity == 5_000
