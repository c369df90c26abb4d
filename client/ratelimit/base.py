"""What the client needs from a limiter, and the limiter that admits everything."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


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
