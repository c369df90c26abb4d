"""Pacing of API calls: the key's budget is about 20 requests per 10 seconds.

`SlidingWindowLimiter` is exact within one process and one event loop: no window of
`window_s` ever admits more than `limit` calls, and admissions are spaced evenly so the
budget is used smoothly rather than in bursts followed by stalls. The admission rule
(`next_admission_time`) and the adaptive rate (`AdaptiveRate`) are pure so a cross-process
limiter can reuse them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Float rounding on a fake clock must not turn into an endless run of zero-length sleeps.
_ADMIT_TOLERANCE_S = 1e-9


class RequestLimiter(Protocol):
    """What the client needs from a limiter; one instance is shared by every caller of a key."""

    async def acquire(self) -> None:
        """Wait until one more API request may be sent."""
        ...

    def throttled(self, retry_after: float | None) -> None:
        """The API answered 405/430: slow the whole run down."""
        ...

    def paused(self, seconds: float) -> None:
        """The API is in maintenance (455): admit nothing for `seconds`."""
        ...

    def succeeded(self) -> None:
        """A request went through: recover the rate gradually."""
        ...


@dataclass(frozen=True)
class LimiterStats:
    """Counters of a limiter since it was created."""

    admitted: int
    throttled: int
    paused: int
    current_rate: float


def next_admission_time(
    history: Sequence[float],
    now: float,
    limit: int,
    window: float,
    spacing: float,
    *,
    not_before: float = -math.inf,
) -> float:
    """Earliest time ≥ now at which one more admission keeps both rules.

    `history` holds past admission times in ascending order (at least the last `limit`).
    Rule 1: the admission `limit` places back must be at least `window` old.
    Rule 2: consecutive admissions are at least `spacing` apart.
    """
    earliest = max(now, not_before)
    if history:
        earliest = max(earliest, history[-1] + spacing)
    if len(history) >= limit:
        earliest = max(earliest, history[-limit] + window)
    return earliest


@dataclass
class AdaptiveRate:
    """Multiplicative decrease on throttling, additive recovery on success.

    Throttles arriving within `cooldown_s` of the last decrease are counted but do not
    halve again: calls already in flight when the first 430 arrived report the same event.
    """

    cooldown_s: float
    decrease_factor: float = 0.5
    floor: float = 1 / 8
    recovery_step: float = 1 / 16
    factor: float = 1.0
    last_decrease: float = -math.inf

    def on_throttle(self, now: float) -> None:
        if now - self.last_decrease >= self.cooldown_s:
            self.factor = max(self.floor, self.factor * self.decrease_factor)
            self.last_decrease = now

    def on_success(self) -> None:
        self.factor = min(1.0, self.factor + self.recovery_step)


class SlidingWindowLimiter:
    """Exact sliding-window limiter with smooth spacing, FIFO waiters and adaptive slow-down."""

    def __init__(
        self,
        limit: int = 20,
        window_s: float = 10.0,
        *,
        safety: float = 0.02,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        if safety < 0:
            raise ValueError("safety must not be negative")
        self._limit = limit
        self._window_s = window_s
        self._guarded_window = window_s * (1 + safety)
        self._nominal_spacing = self._guarded_window / limit
        self._clock = clock
        self._sleep = sleep
        self._history: deque[float] = deque(maxlen=limit)
        self._rate = AdaptiveRate(cooldown_s=window_s)
        self._not_before = -math.inf
        self._lock = asyncio.Lock()
        self.admitted = 0
        self.throttle_count = 0
        self.pause_count = 0

    @property
    def current_rate(self) -> float:
        """Admissions per second currently allowed."""
        return 1.0 / self._spacing

    @property
    def nominal_rate(self) -> float:
        return self._limit / self._window_s

    @property
    def stats(self) -> LimiterStats:
        return LimiterStats(self.admitted, self.throttle_count, self.pause_count, self.current_rate)

    @property
    def _spacing(self) -> float:
        return self._nominal_spacing / self._rate.factor

    async def acquire(self) -> None:
        # Holding the lock while sleeping makes waiters queue in FIFO order behind the head.
        async with self._lock:
            while True:
                now = self._clock()
                admit_at = next_admission_time(
                    self._history,
                    now,
                    self._limit,
                    self._guarded_window,
                    self._spacing,
                    not_before=self._not_before,
                )
                if admit_at - now <= _ADMIT_TOLERANCE_S:
                    break
                # Re-evaluated after the sleep: a throttle or pause may have arrived meanwhile.
                await self._sleep(admit_at - now)
            self._history.append(now)
            self.admitted += 1

    def throttled(self, retry_after: float | None) -> None:
        now = self._clock()
        self.throttle_count += 1
        self._rate.on_throttle(now)
        if retry_after is not None and retry_after > 0:
            self._not_before = max(self._not_before, now + retry_after)

    def paused(self, seconds: float) -> None:
        self.pause_count += 1
        if seconds > 0:
            self._not_before = max(self._not_before, self._clock() + seconds)

    def succeeded(self) -> None:
        self._rate.on_success()

    def __repr__(self) -> str:
        return (
            f"SlidingWindowLimiter(limit={self._limit}, window_s={self._window_s}, "
            f"current_rate={self.current_rate:.3f}/s, admitted={self.admitted})"
        )


class NoLimiter:
    """Admits everything at once; for tests and benchmarks with limits disabled."""

    def __init__(self) -> None:
        self.admitted = 0
        self.throttle_count = 0
        self.pause_count = 0

    @property
    def current_rate(self) -> float:
        return math.inf

    @property
    def stats(self) -> LimiterStats:
        return LimiterStats(self.admitted, self.throttle_count, self.pause_count, self.current_rate)

    async def acquire(self) -> None:
        self.admitted += 1

    def throttled(self, retry_after: float | None) -> None:
        self.throttle_count += 1

    def paused(self, seconds: float) -> None:
        self.pause_count += 1

    def succeeded(self) -> None:
        return None
