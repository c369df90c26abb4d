"""When to poll a submitted job: the per-job back-off schedule."""

from __future__ import annotations


def next_poll_delay(previous_s: float | None, *, initial_s: float, factor: float, max_s: float) -> float:
    """Per-job poll back-off: start at `initial_s`, grow by `factor`, never beyond `max_s`."""
    if previous_s is None:
        return min(initial_s, max_s)
    return min(previous_s * factor, max_s)
