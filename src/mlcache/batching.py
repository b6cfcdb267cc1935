"""Coalescing of concurrent single-key reads into one bulk read (the DataLoader idea).

Per-key round trips cost the drivers 10-25x more than batched ones (redis-py GET vs MGET,
asyncpg ``= $1`` vs ``= ANY($1)``).  A ``BatchLoader`` collects the keys asked for while the
event loop finishes its current iteration, then sends them as one bulk call:

- the wait is one loop iteration (``call_soon``), or less: a batch that reaches
  ``max_batch`` keys leaves at once;
- a key already pending or in flight is not fetched again: its callers share one future;
- a lone caller takes the single-key path, so it pays one scheduling step over the driver;
  with ``direct=True`` (drivers that survive being cancelled mid-call) a caller that finds
  nothing pending or in flight calls the driver itself, under ``asyncio.timeout``, and pays
  no step at all; callers arriving meanwhile share its key or batch among themselves;
- a caller that is cancelled stops waiting, but the batch, and the other callers, go on
  (the shared future is shielded).
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, Optional, Sequence, TypeVar

T = TypeVar("T")


class BatchLoader(Generic[T]):
    def __init__(
        self,
        fetch_one: Callable[[str], Awaitable[Optional[T]]],
        fetch_many: Callable[[Sequence[str]], Awaitable[list[Optional[T]]]],
        *,
        max_batch: int = 256,
        direct: bool = False,
    ) -> None:
        self._fetch_one = fetch_one
        self._fetch_many = fetch_many
        self.max_batch = max_batch
        self.direct = direct
        self._pending: dict[str, asyncio.Future[Optional[T]]] = {}
        self._inflight: dict[str, asyncio.Future[Optional[T]]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.keys_fetched = 0

    async def load(self, key: str, timeout: Optional[float] = None) -> Optional[T]:
        """The value for ``key`` from a shared bulk read; asyncio.TimeoutError after ``timeout``
        seconds (the batch itself goes on for the other callers)."""
        if self.direct and not self._pending and not self._inflight:
            return await self._load_direct(key, timeout)
        future = self._inflight.get(key) or self._pending.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._pending[key] = future
            if len(self._pending) >= self.max_batch:
                self._dispatch()
            elif not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._dispatch)
        if timeout is None:
            return await asyncio.shield(future)
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def _load_direct(self, key: str, timeout: Optional[float]) -> Optional[T]:
        # The call runs in the caller's own task (no task, no shield, no timer of wait_for's):
        # that is what makes a lone caller as fast as the driver.  It is in flight like a
        # batch, so a caller asking for the same key meanwhile waits for this answer.
        future: asyncio.Future[Optional[T]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        self.batches += 1
        self.keys_fetched += 1
        try:
            async with asyncio.timeout(timeout):
                result = await self._fetch_one(key)
        except Exception as exc:
            if not isinstance(exc, TimeoutError):
                future.set_exception(exc)
                future.exception()  # retrieved: nobody else may be waiting
                raise
            self._hand_over(key, future)
            raise
        except BaseException:
            # This caller was cancelled: whoever shares its key still wants the answer.
            self._hand_over(key, future)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    def _hand_over(self, key: str, future: asyncio.Future[Optional[T]]) -> None:
        """Queue ``key`` again for the callers sharing ``future`` (a batch fetches it)."""
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if key not in self._pending:
            self._pending[key] = future
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        self._inflight.update(batch)
        task = asyncio.get_running_loop().create_task(self._run(batch))
        # Keep a reference: the loop holds tasks weakly.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[str, asyncio.Future[Optional[T]]]) -> None:
        keys = list(batch)
        self.batches += 1
        self.keys_fetched += len(keys)
        try:
            if len(keys) == 1:
                results = [await self._fetch_one(keys[0])]
            else:
                results = await self._fetch_many(keys)
        except BaseException as exc:
            for future in batch.values():
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
                    future.exception()  # retrieved: every caller may have gone
            if not isinstance(exc, Exception):
                raise
        else:
            for future, result in zip(batch.values(), results):
                if not future.done():
                    future.set_result(result)
        finally:
            for key, future in batch.items():
                if self._inflight.get(key) is future:
                    del self._inflight[key]

    async def aclose(self) -> None:
        """Cancel batches still in flight (their callers see CancelledError)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))


class WriteBatcher(Generic[T]):
    """Coalesces concurrent single-item writes of one level into one bulk write.

    Same shape as :class:`BatchLoader`: items submitted during one loop iteration leave
    together (at once when ``max_batch`` is reached), a lone write takes the single-item path.
    Items keep their submission order, so the last write of a key in a batch wins, as it would
    have one by one.  Every submitter of a batch sees its outcome.
    """

    def __init__(
        self,
        write_one: Callable[[T], Awaitable[None]],
        write_many: Callable[[Sequence[T]], Awaitable[None]],
        *,
        max_batch: int = 256,
    ) -> None:
        self._write_one = write_one
        self._write_many = write_many
        self.max_batch = max_batch
        self._items: list[T] = []
        self._future: Optional[asyncio.Future[None]] = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items_written = 0

    async def submit(self, item: T, timeout: Optional[float] = None) -> None:
        loop = asyncio.get_running_loop()
        if self._future is None:
            self._future = loop.create_future()
            loop.call_soon(self._dispatch, self._future)
        future = self._future
        self._items.append(item)
        if len(self._items) >= self.max_batch:
            self._dispatch(future)
        if timeout is None:
            await asyncio.shield(future)
        else:
            await asyncio.wait_for(asyncio.shield(future), timeout)

    def _dispatch(self, future: asyncio.Future[None]) -> None:
        if future is not self._future:
            return  # already sent when it filled up
        items, self._items, self._future = self._items, [], None
        task = asyncio.get_running_loop().create_task(self._run(items, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[T], future: asyncio.Future[None]) -> None:
        self.batches += 1
        self.items_written += len(items)
        try:
            if len(items) == 1:
                await self._write_one(items[0])
            else:
                await self._write_many(items)
        except BaseException as exc:
            if not future.done():
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
                    future.exception()
            if not isinstance(exc, Exception):
                raise
        else:
            if not future.done():
                future.set_result(None)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
