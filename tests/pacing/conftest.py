"""Shared helpers of the pacing tests."""

from __future__ import annotations

import bisect


def busiest_window(times: list[float], window: float) -> int:
    """Most events inside any half-open interval [t, t + window)."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, start + window) - i for i, start in enumerate(ordered)), default=0)
