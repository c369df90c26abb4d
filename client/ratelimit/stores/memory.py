"""A key's budget held by this process only (its coroutines share it)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from stemcat.client.ratelimit.base import Clock
from stemcat.client.ratelimit.rules import AdmissionBook, PacingParams, PacingState, Reservation


class MemoryAdmissionStore:
    """`AdmissionStore` in this process's memory, on the clock it is given."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._book = AdmissionBook()
        self._clock = clock

    async def reserve(self, params: PacingParams, count: int, *, first_margin_s: float = 0.0) -> Reservation:
        return self._book.reserve(self._clock(), params, count, first_margin_s=first_margin_s)

    async def claim(self, tickets: Sequence[int]) -> set[int]:
        return self._book.claim(tickets)

    async def release(self, tickets: Sequence[int]) -> None:
        self._book.release(tickets, self._clock())

    async def throttle(self, params: PacingParams, retry_after: float | None) -> PacingState:
        return self._book.throttle(self._clock(), retry_after, params)

    async def pause(self, seconds: float) -> PacingState:
        return self._book.pause(self._clock(), seconds)

    async def recover(self, params: PacingParams, successes: int) -> PacingState:
        return self._book.recover(successes, params)

    async def arrived_late(self, tickets: Sequence[int], ages_s: Sequence[float] | None = None) -> None:
        self._book.arrived_late(tickets, self._clock(), ages_s)

    async def aclose(self) -> None:
        return None
