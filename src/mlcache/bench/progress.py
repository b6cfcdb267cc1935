"""Progress bars on stderr: one bar over the suite's steps, one for the step under way.

Off with ``--json`` or when stderr is not a terminal (a log should not fill with carriage
returns), and off when tqdm (the ``bench`` extra) is missing: progress is a comfort, never a
reason to fail.  A timed step's bar is moved by a small task four times a second, which costs
the loop being measured next to nothing.
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any, AsyncIterator, Optional


class Progress:
    def __init__(self, enabled: bool, total_steps: int) -> None:
        self._tqdm: Any = None
        if enabled:
            try:
                from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]
            except ImportError:
                tqdm = None
            self._tqdm = tqdm
        self._outer: Any = None
        if self._tqdm is not None:
            self._outer = self._tqdm(total=total_steps, desc="mlcache bench", unit="step",
                                     file=sys.stderr, position=0, dynamic_ncols=True)

    @property
    def enabled(self) -> bool:
        return self._outer is not None

    def step(self, name: str) -> None:
        """A step is done; ``name`` is the one starting."""
        if self._outer is not None:
            self._outer.set_postfix_str(name, refresh=False)
            self._outer.update(1)

    def counter(self, total: int, desc: str, unit: str = "key") -> Any:
        """A bar for work counted in units (preloading keys); ``.update(n)``, ``.close()``."""
        if self._tqdm is None:
            return _Null()
        return self._tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr,
                          position=1, leave=False, dynamic_ncols=True)

    @contextlib.asynccontextmanager
    async def timed(self, seconds: float, desc: str) -> AsyncIterator[None]:
        """A bar that fills over ``seconds`` while the body runs."""
        if self._tqdm is None:
            yield
            return
        bar = self._tqdm(total=round(seconds, 1), desc=desc, unit="s", file=sys.stderr, position=1,
                         leave=False, dynamic_ncols=True, bar_format="{desc}: {bar} {n:.1f}/{total:.1f} s")

        async def tick() -> None:
            start = time.perf_counter()
            while True:
                await asyncio.sleep(0.25)
                bar.n = min(bar.total, round(time.perf_counter() - start, 1))
                bar.refresh()

        task = asyncio.create_task(tick())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            bar.close()

    def close(self) -> None:
        if self._outer is not None:
            self._outer.close()


class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def wanted(option: Optional[bool], json_out: bool) -> bool:
    if option is not None:
        return option
    return not json_out and sys.stderr.isatty()
