"""A circuit breaker per shared level: stop calling a level that keeps failing, probe it back.

Closed: calls go through; ``failure_threshold`` consecutive failures (errors or missed
deadlines) open it.  Open: calls are skipped at the cost of one comparison, until a jittered,
exponentially growing wait has passed.  Half-open: exactly one call goes through as a probe;
its success closes the breaker, its failure opens it again for longer.  The jitter keeps
many processes from probing a recovering server in lock step.
"""
from __future__ import annotations

import random
import time
from typing import Any, Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    __slots__ = (
        "failure_threshold", "reset_timeout", "max_reset_timeout", "state", "failures",
        "opened", "_retry_at", "_wait", "_clock", "_rng",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 0.5,
        max_reset_timeout: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Any = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.max_reset_timeout = max_reset_timeout
        self.state = CLOSED
        self.failures = 0  # consecutive
        self.opened = 0  # times it opened
        self._retry_at = 0.0
        self._wait = reset_timeout
        self._clock = clock
        self._rng = rng or random.Random()

    def allow(self) -> bool:
        """May a call go to the level now?  (True at most once per open period: the probe.)"""
        if self.state == CLOSED:
            return True
        now = self._clock()
        if now >= self._retry_at:
            # A probe that never reports back (cancelled, say) must not wedge the breaker
            # half-open: another probe is allowed after another wait.
            self.state = HALF_OPEN
            self._retry_at = now + self._wait
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        if self.state != CLOSED:
            self.state = CLOSED
            self._wait = self.reset_timeout

    def failure(self) -> None:
        self.failures += 1
        if self.state == HALF_OPEN:
            self._wait = min(self._wait * 2, self.max_reset_timeout)
            self._open()
        elif self.state == CLOSED and self.failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self.state = OPEN
        self.opened += 1
        # Full jitter on the upper half: between wait/2 and wait.
        self._retry_at = self._clock() + self._wait * (0.5 + 0.5 * self._rng.random())

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "consecutive_failures": self.failures,
            "opened": self.opened,
            "retry_in": max(0.0, self._retry_at - self._clock()) if self.state != CLOSED else 0.0,
        }
