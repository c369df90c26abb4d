"""Build the request limiter a run paces its API calls with (submits and polls share it)."""

from __future__ import annotations

from suno_client import RequestLimiter, SlidingWindowLimiter
from tasks.context import RunOptions


def make_limiter(options: RunOptions) -> RequestLimiter:
    """The in-process exact limiter at the configured rate."""
    return SlidingWindowLimiter(options.rate_limit, options.rate_window_s)
