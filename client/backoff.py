"""Retry timing: exponential back-off with full jitter, and Retry-After parsing."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState

from stemcat.client.errors import SunoError

# A hostile or buggy Retry-After must not park a worker for hours.
MAX_RETRY_AFTER_S = 900.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def backoff_ceiling(attempt: int, initial_s: float, max_s: float) -> float:
    """Upper bound of the jittered sleep after the `attempt`-th failure (1-based)."""
    return min(max_s, initial_s * 2.0 ** (attempt - 1))


class JitteredBackoff:
    """Tenacity wait strategy: full jitter, but never shorter than the error's Retry-After."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        jittered = self._rng.uniform(0.0, backoff_ceiling(retry_state.attempt_number, self._initial_s, self._max_s))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = error.retry_after if isinstance(error, SunoError) else None
        return max(jittered, retry_after or 0.0)
