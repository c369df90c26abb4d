"""Per-key sliding-window rate limiter on real time, with the statistics tests need."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    """Outcome of one request: admitted, or refused with a Retry-After in seconds."""

    admitted: bool
    retry_after_s: float = 0.0


class SlidingWindowLimiter:
    """At most `limit` admitted requests per key in any `window_s` seconds.

    Refused requests do not occupy the window (a client that backs off recovers as soon as
    the window slides), but every received request counts towards `max_seen_in_window`,
    the figure that tells whether a client kept to the documented rate.
    """

    def __init__(self, limit: int | None, window_s: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window_s = window_s
        self._monotonic = monotonic
        self._admitted: dict[str, deque[float]] = {}
        self._received: dict[str, deque[float]] = {}
        self._max_seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> RateDecision:
        """Record one request for `key` and decide whether it may proceed."""
        now = self._monotonic()
        with self._lock:
            received = self._prune(self._received.setdefault(key, deque()), now)
            received.append(now)
            self._max_seen[key] = max(self._max_seen.get(key, 0), len(received))
            if self._limit is None:
                return RateDecision(admitted=True)
            admitted = self._prune(self._admitted.setdefault(key, deque()), now)
            if len(admitted) >= self._limit:
                wait = admitted[0] + self._window_s - now
                return RateDecision(admitted=False, retry_after_s=max(wait, 0.0))
            admitted.append(now)
            return RateDecision(admitted=True)

    def max_seen_in_window(self) -> dict[str, int]:
        """Per key, the most requests received within any window."""
        with self._lock:
            return dict(self._max_seen)

    def _prune(self, stamps: deque[float], now: float) -> deque[float]:
        while stamps and stamps[0] <= now - self._window_s:
            stamps.popleft()
        return stamps


def retry_after_header(seconds: float) -> str:
    """Retry-After as whole seconds, rounded up, at least 1 (HTTP delay-seconds is an integer)."""
    return str(max(1, math.ceil(seconds)))
