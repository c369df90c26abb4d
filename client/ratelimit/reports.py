"""What a limiter learnt from the API's answers and has not yet written to its store."""

from __future__ import annotations

from stemcat.client.ratelimit.base import Clock
from stemcat.client.ratelimit.rules import PacingParams, PacingState
from stemcat.client.ratelimit.stores.base import AdmissionStore


class PendingReports:
    """Throttles, pauses, successes and late arrivals not yet written to the store."""

    def __init__(self) -> None:
        self.throttles: list[float | None] = []
        self.pause_s: float | None = None
        self.successes = 0
        self.late: list[tuple[int, float]] = []  # (ticket, local time it may have arrived by)

    def __bool__(self) -> bool:
        return bool(self.throttles or self.late) or self.pause_s is not None or self.successes > 0

    async def write(self, store: AdmissionStore, params: PacingParams, clock: Clock) -> PacingState | None:
        """Write everything pending; on failure it stays pending. Returns the store's latest state."""
        taken = self._take()
        try:
            state: PacingState | None = None
            for retry_after in taken.throttles:
                state = await store.throttle(params, retry_after)
            if taken.pause_s is not None:
                state = await store.pause(taken.pause_s)
            if taken.successes:
                state = await store.recover(params, taken.successes)
            if taken.late:
                now = clock()  # the store reads its clock later: the ages only grow
                await store.arrived_late(
                    [ticket for ticket, _ in taken.late], [max(0.0, now - by) for _, by in taken.late]
                )
        except BaseException:
            self._put_back(taken)
            raise
        return state

    def _take(self) -> PendingReports:
        taken = PendingReports()
        taken.throttles, taken.pause_s, taken.successes, taken.late = (
            self.throttles, self.pause_s, self.successes, self.late)
        self.throttles, self.pause_s, self.successes, self.late = [], None, 0, []
        return taken

    def _put_back(self, other: PendingReports) -> None:
        self.throttles = other.throttles + self.throttles
        if other.pause_s is not None:
            self.pause_s = max(other.pause_s, self.pause_s or 0.0)
        self.successes += other.successes
        self.late = other.late + self.late
