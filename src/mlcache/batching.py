"""Coalescing of concurrent single-key reads into one bulk read (the DataLoader idea).

Per-key round trips cost the drivers 10-25x more than batched ones (redis-py GET vs MGET,
asyncpg ``= $1`` vs ``= ANY($1)``).  A ``BatchLoader`` collects the keys asked for while the
event loop finishes its current iteration, then sends them as one bulk call:

- the wait is one loop iteration, or less: a batch that reaches ``max_batch`` keys leaves at
  once.  The cap is small (32) on purpose: one batch per round trip makes Python and the
  server take turns, each idle while the other works; with many callers several smaller
  batches are in flight at once and the two overlap (L2 get at 64 callers: 92-98K ops/s
  with a cap of 256, 115-126K with 32; at 256 callers 111K vs 136K);
- a key already pending or in flight is not fetched again: its callers share one future;
- a lone caller takes the single-key path, so it pays one scheduling step over the driver;
  with ``direct=True`` (drivers that survive being cancelled mid-call) a caller that finds
  nothing pending or in flight, while batches hold one key each, calls the driver itself,
  under the loader's deadline, and pays no step at all; callers arriving meanwhile share its
  key or batch among themselves;
- a caller that is cancelled stops waiting, but the batch, and the other callers, go on
  (each caller waits on a future of its own);
- ``observe(seconds, served, found)`` hears of each round trip once: how long it took from
  its first caller's request, how many callers it answered (or failed), and how many of those
  found a value.  The level keeps its latency and hit counts from that, once per batch instead
  of once per caller (two clock reads and a histogram update per caller were 3 % of a batched
  L2 read).  Callers that joined later, in the same loop iteration or while the fetch of their
  key was in flight, are counted with the whole round trip.
"""
from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Awaitable, Callable, Generic, Optional, Sequence, TypeVar

T = TypeVar("T")
Observer = Callable[[float, int, int], None]
_perf = time.perf_counter
_current_task = asyncio.current_task
_get_running_loop = asyncio.get_running_loop
_monotonic = time.monotonic


def _ignore(seconds: float, served: int, found: int) -> None:
    return None


class Deadlines:
    """The deadlines of one batcher's round trips, behind a single timer.

    Every round trip of a batcher has the same length of deadline, so they fall due in the
    order they began: a queue, and one timer armed for the oldest one still in flight.  A
    round trip that ends marks its entry done and the timer skips it.  Under load the timer
    fires about once per ``seconds``.  A deadline costs 0.8 us this way against 1.5 us for a
    timer per batch (call_later, then cancel, then the loop's heap dropping it).
    """

    __slots__ = ("seconds", "_queue", "_timer", "_loop")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # [deadline, done, on_expiry, argument]
        self._queue: collections.deque[list[Any]] = collections.deque()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def add(self, on_expiry: Callable[[Any], None], argument: Any) -> list[Any]:
        """Call ``on_expiry(argument)`` in ``seconds`` unless :meth:`done` is called first."""
        loop = _get_running_loop()
        if loop is not self._loop:
            # First use, or a cache moved to another loop: the old loop's batches (and timer)
            # went with it.
            self._queue.clear()
            self._timer, self._loop = None, loop
        # Deadlines are on the monotonic clock and timers armed by delay: loop.time() is a
        # Python-level call, and another loop (uvloop) may keep its own time base.
        entry = [_monotonic() + self.seconds, False, on_expiry, argument]
        self._queue.append(entry)
        if self._timer is None:
            self._timer = loop.call_later(self.seconds, self._check)
        return entry

    def done(self, entry: list[Any]) -> None:
        entry[1] = True
        entry[3] = None  # let the batch go now, not when the timer passes it
        # Drop the finished head of the queue now: a lone caller's round trips would
        # otherwise pile up (thousands a second) until the timer passed them.
        queue = self._queue
        while queue and queue[0][1]:
            queue.popleft()

    def _check(self) -> None:
        self._timer = None
        queue = self._queue
        now = _monotonic()
        while queue:
            entry = queue[0]
            if not entry[1]:
                if entry[0] > now:
                    self._timer = _get_running_loop().call_later(entry[0] - now, self._check)
                    return
                entry[1] = True
                entry[2](entry[3])
            queue.popleft()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


class BatchLoader(Generic[T]):
    """See the module docstring.  ``timeout`` (seconds, None = none) bounds each caller's wait:
    one timer per batch, not per caller, and a caller that joins a batch already in flight
    keeps that batch's deadline.  Each caller waits on a future of its own, so cancelling one
    touches nobody else, without a shield or a wait_for per call (those were a third of
    the cost of a batched get with 64 callers)."""

    def __init__(
        self,
        fetch_one: Callable[[str], Awaitable[Optional[T]]],
        fetch_many: Callable[[Sequence[str]], Awaitable[list[Optional[T]]]],
        *,
        max_batch: int = 32,
        timeout: Optional[float] = None,
        direct: bool = False,
        observe: Observer = _ignore,
    ) -> None:
        self._fetch_one = fetch_one
        self._observe = observe
        self._fetch_many = fetch_many
        self.max_batch = max_batch
        self.timeout = timeout
        self.direct = direct
        # key -> the futures of the callers waiting for it
        self._pending: dict[str, list[asyncio.Future[Optional[T]]]] = {}
        self._inflight: dict[str, list[asyncio.Future[Optional[T]]]] = {}
        self._scheduled = False
        self._since = 0.0  # when the batch being gathered got its first key
        # Did the last batch hold a single key?  (See request: the direct path is for then.)
        self._lone = True
        # Tasks whose direct call the deadline cancelled -> their cancel count before it.
        self._timed_out: dict[asyncio.Task[Any], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadlines = Deadlines(timeout) if timeout is not None else None
        self.batches = 0
        self.keys_fetched = 0

    async def load(self, key: str) -> Optional[T]:
        """The value for ``key`` from a shared bulk read; asyncio.TimeoutError once the batch
        has taken ``timeout`` seconds (it goes on for nobody, its results are dropped)."""
        return await self.request(key)

    def request(self, key: str) -> Awaitable[Optional[T]]:
        """:meth:`load` without a coroutine of its own: the caller's future in a batch, or the
        direct call's coroutine.  The cache's read path awaits this, one coroutine layer fewer
        per get (each layer is created, and resumed, once per caller)."""
        # Direct only while callers come one at a time: once a batch took several keys, the
        # first caller to come back after it would otherwise go alone and leave the rest to a
        # second round trip (at 64 callers: a 1-key call beside every 63-key batch).
        if self.direct and self._lone and not self._pending and not self._inflight:
            return self._load_direct(key)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Optional[T]] = loop.create_future()
        waiters = self._inflight.get(key)
        if waiters is None:
            waiters = self._pending.get(key)
        if waiters is not None:
            waiters.append(waiter)
        else:
            pending = self._pending
            if not pending:
                self._since = _perf()
            pending[key] = [waiter]
            if len(pending) >= self.max_batch:
                _spawn(self._tasks, self._run(*self._take()))
            elif not self._scheduled:
                self._schedule()
        return waiter

    async def _load_direct(self, key: str) -> Optional[T]:
        # The call runs in the caller's own task (no task, no timer of wait_for's): that is
        # what makes a lone caller as fast as the driver.  It is in flight like a batch, so a
        # caller asking for the same key meanwhile waits for this answer.
        sharers: list[asyncio.Future[Optional[T]]] = []
        self._inflight[key] = sharers
        self.batches += 1
        self.keys_fetched += 1
        # The deadline shares the batches' timer (Deadlines): a timer armed and cancelled per
        # call, as asyncio.timeout does, was ~3.6 us, an eighth of a lone L3 read.
        deadlines = self._deadlines
        if deadlines is not None:
            task: asyncio.Task[Any] = _current_task()  # type: ignore[assignment]  # (awaited: in a task)
            deadline = deadlines.add(self._expire_direct, (task, task.cancelling()))
        started = _perf()
        try:
            try:
                result = await self._fetch_one(key)
            finally:
                if deadlines is not None:
                    deadlines.done(deadline)
                    if self._timed_out and self._ended_by_deadline(task):
                        raise TimeoutError from None
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                self._hand_over(key, sharers)
                self._observe(_perf() - started, 1, 0)
            else:
                self._observe(_perf() - started, 1 + _fail(sharers, exc), 0)
            raise
        except BaseException:
            # This caller was cancelled: whoever shares its key still wants the answer.
            self._hand_over(key, sharers)
            raise
        else:
            served = 1 + _resolve(sharers, result)
            self._observe(_perf() - started, served, served if result is not None else 0)
            return result
        finally:
            if self._inflight.get(key) is sharers:
                del self._inflight[key]

    def _expire_direct(self, what: tuple[asyncio.Task[Any], int]) -> None:
        # A direct call past its deadline: cancel its caller's task, noting how many cancels
        # that task had before the call began (see _ended_by_deadline).
        task, cancelling = what
        self._timed_out[task] = cancelling
        task.cancel()

    def _ended_by_deadline(self, task: asyncio.Task[Any]) -> bool:
        """Did the deadline cancel ``task``'s direct call, and no one else?  asyncio.timeout's
        rule: only then does the CancelledError mean "too late" (a TimeoutError)."""
        cancelling = self._timed_out.pop(task, None)
        return cancelling is not None and task.uncancel() <= cancelling

    def _hand_over(self, key: str, sharers: list[asyncio.Future[Optional[T]]]) -> None:
        """Queue ``key`` again for the callers sharing a direct call that ended early."""
        if self._inflight.get(key) is sharers:
            del self._inflight[key]
        live = [w for w in sharers if not w.done()]
        if not live:
            return
        waiters = self._pending.get(key)
        if waiters is not None:
            waiters.extend(live)
            return
        self._pending[key] = live
        if not self._scheduled:
            self._schedule()

    def forget(self, keys: Any) -> None:
        """The keys changed: fetches of them already in flight may bring the old value, so
        later callers must not join them (those already waiting still get their answer)."""
        inflight = self._inflight
        if inflight:
            for key in keys:
                inflight.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        """:meth:`forget` for every key starting with ``prefix``."""
        inflight = self._inflight
        if inflight:
            self.forget([key for key in inflight if key.startswith(prefix)])

    def _schedule(self) -> None:
        # The batch's task is made with its first key, and its first step, one loop iteration
        # later, takes whatever keys this iteration's callers asked for.  (A dispatch callback
        # that then made the task cost every batch one more loop iteration, a few hundred
        # microseconds each under load.)
        self._scheduled = True
        _spawn(self._tasks, self._gather())

    def _take(self) -> tuple[dict[str, list[asyncio.Future[Optional[T]]]], float]:
        batch, self._pending = self._pending, {}
        self._inflight.update(batch)
        return batch, self._since

    async def _gather(self) -> None:
        self._scheduled = False
        if self._pending:  # (a batch that filled up has left already)
            await self._run(*self._take())

    async def _run(self, batch: dict[str, list[asyncio.Future[Optional[T]]]], since: float) -> None:
        deadlines = self._deadlines
        if deadlines is not None:
            # A driver that survives cancellation is cancelled at the deadline too: nobody
            # waits for the answer any more, and the call may hold a connection meanwhile
            # (L3's reads have no driver timer of their own).
            deadline = deadlines.add(self._expire, (batch, asyncio.current_task() if self.direct else None))
        try:
            await self._fetch(batch, since)
        finally:
            if deadlines is not None:
                deadlines.done(deadline)

    def _expire(self, what: tuple[dict[str, list[asyncio.Future[Any]]], Optional[asyncio.Task[Any]]]) -> None:
        # The batch's deadline: its callers stop waiting; the driver call goes on undisturbed
        # unless it is cancel-safe and so given as ``task``.
        batch, task = what
        expired = 0
        for waiters in batch.values():
            expired += _time_out(waiters)
        if expired:
            self._observe(float(self.timeout or 0.0), expired, 0)
        if task is not None:
            task.cancel()

    async def _fetch(self, batch: dict[str, list[asyncio.Future[Optional[T]]]], since: float) -> None:
        keys = list(batch)
        self._lone = len(keys) == 1
        self.batches += 1
        self.keys_fetched += len(keys)
        try:
            if len(keys) == 1:
                results = [await self._fetch_one(keys[0])]
            else:
                results = await self._fetch_many(keys)
        except BaseException as exc:
            failed = 0
            for waiters in batch.values():
                failed += _fail(waiters, exc)
            if failed:
                self._observe(_perf() - since, failed, 0)
            if not isinstance(exc, Exception):
                raise
        else:
            served = found = 0
            for waiters, result in zip(batch.values(), results):
                n = _resolve(waiters, result)
                served += n
                if result is not None:
                    found += n
            self._observe(_perf() - since, served, found)
        finally:
            for key, waiters in batch.items():
                if self._inflight.get(key) is waiters:
                    del self._inflight[key]

    async def aclose(self) -> None:
        """Cancel batches still in flight (their callers see CancelledError)."""
        if self._deadlines is not None:
            self._deadlines.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))


def _spawn(tasks: set[asyncio.Task[None]], coro: Any) -> None:
    """Run a batch in a task of its own, referenced from ``tasks`` (the loop holds tasks
    weakly) until it is done."""
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _resolve(waiters: list[asyncio.Future[Any]], result: Any) -> int:
    """Answer the waiters still waiting; return how many were."""
    n = 0
    for w in waiters:
        if not w.done():
            w.set_result(result)
            n += 1
    return n


def _fail(waiters: list[asyncio.Future[Any]], exc: BaseException) -> int:
    """A batch that was cancelled cancels its waiters; one that failed passes them the error.
    Returns how many waiters failed with the error (the cancelled ones are not counted)."""
    cancelled = isinstance(exc, asyncio.CancelledError)
    n = 0
    for w in waiters:
        if not w.done():
            if cancelled:
                w.cancel()
            else:
                w.set_exception(exc)
                w.exception()  # retrieved: its caller may have gone
                n += 1
    return n


def _time_out(waiters: list[asyncio.Future[Any]]) -> int:
    """A batch's deadline for its waiters: they stop waiting.  Returns how many still were."""
    n = 0
    for w in waiters:
        if not w.done():
            w.set_exception(asyncio.TimeoutError())
            w.exception()
            n += 1
    return n


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
        timeout: Optional[float] = None,
    ) -> None:
        self._write_one = write_one
        self._write_many = write_many
        self.max_batch = max_batch
        self.timeout = timeout
        self._items: list[T] = []
        # The submitters of the batch being gathered, one future each (as in BatchLoader).
        self._waiters: Optional[list[asyncio.Future[None]]] = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadlines = Deadlines(timeout) if timeout is not None else None
        self.batches = 0
        self.items_written = 0
        # Batches past their deadline whose write still runs: it may land after anything
        # their submitters did next (see SharedLevel._late_writes).
        self.late = 0

    async def submit(self, item: T) -> None:
        """Write ``item`` with the next batch; asyncio.TimeoutError once that batch has taken
        ``timeout`` seconds (the write itself goes on)."""
        loop = asyncio.get_running_loop()
        waiters = self._waiters
        if waiters is None:
            # As in BatchLoader: the batch's task is made now and gathers this iteration's
            # items when its first step runs.
            waiters = self._waiters = []
            _spawn(self._tasks, self._gather(waiters))
        waiter: asyncio.Future[None] = loop.create_future()
        waiters.append(waiter)
        self._items.append(item)
        if len(self._items) >= self.max_batch:
            _spawn(self._tasks, self._run(*self._take()))
        await waiter

    def _take(self) -> tuple[list[T], list[asyncio.Future[None]]]:
        items, waiters = self._items, self._waiters
        assert waiters is not None
        self._items, self._waiters = [], None
        return items, waiters

    async def _gather(self, waiters: list[asyncio.Future[None]]) -> None:
        if waiters is self._waiters:  # (else it filled up and left already)
            await self._run(*self._take())

    async def _run(self, items: list[T], waiters: list[asyncio.Future[None]]) -> None:
        state: list[Any] = [waiters, False]  # [submitters, past the deadline]
        deadlines = self._deadlines
        if deadlines is not None:
            deadline = deadlines.add(self._expire, state)
        try:
            await self._write(items, waiters)
        finally:
            if deadlines is not None:
                deadlines.done(deadline)
            if state[1]:
                self.late -= 1

    def _expire(self, state: list[Any]) -> None:
        # The batch's deadline: its submitters stop waiting; the write goes on, counted late.
        state[1] = True
        self.late += 1
        _time_out(state[0])

    async def _write(self, items: list[T], waiters: list[asyncio.Future[None]]) -> None:
        self.batches += 1
        self.items_written += len(items)
        try:
            if len(items) == 1:
                await self._write_one(items[0])
            else:
                await self._write_many(items)
        except BaseException as exc:
            _fail(waiters, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            _resolve(waiters, None)

    async def aclose(self) -> None:
        if self._deadlines is not None:
            self._deadlines.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
