"""The store seam: where a key's admission log and adaptive state live."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from stemcat.client.ratelimit.rules import PacingParams, PacingState, Reservation


class AdmissionStore(Protocol):
    """Where a budget's admission log and adaptive state live; every method is one atomic step."""

    async def reserve(self, params: PacingParams, count: int, *, first_margin_s: float = 0.0) -> Reservation:
        """Plan and record the next `count` admissions (the first logged `first_margin_s` late)."""
        ...

    async def claim(self, tickets: Sequence[int]) -> set[int]:
        """Which of these reserved slots are still valid (not revoked by a throttle or pause)."""
        ...

    async def release(self, tickets: Sequence[int]) -> None:
        """Give back reserved slots that will not be used."""
        ...

    async def throttle(self, params: PacingParams, retry_after: float | None) -> PacingState: ...

    async def pause(self, seconds: float) -> PacingState: ...

    async def recover(self, params: PacingParams, successes: int) -> PacingState: ...

    async def arrived_late(self, tickets: Sequence[int], ages_s: Sequence[float] | None = None) -> None:
        """These admissions' requests may have reached the API as late as `ages_s` seconds ago
        (one per ticket; now when None): log them there, unless they are logged later already."""
        ...

    async def aclose(self) -> None: ...
