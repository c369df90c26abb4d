"""Shared helpers of the pacing tests."""

from __future__ import annotations

import asyncio
import bisect


def busiest_window(times: list[float], window: float) -> int:
    """Most events inside any half-open interval [t, t + window)."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, start + window) - i for i, start in enumerate(ordered)), default=0)


async def settle(turns: int = 5) -> None:
    """Let background tasks (a limiter's writes to a memory store) run; no time passes on a fake clock."""
    for _ in range(turns):
        await asyncio.sleep(0)
