"""Request counters by route and status code."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict


class RequestStats:
    """Thread-safe tallies of answered requests and sent callbacks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_route: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._by_route_status: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.callbacks_sent = 0
        self.callbacks_failed = 0

    def record(self, route: str, status: int) -> None:
        with self._lock:
            self._by_route[route] += 1
            self._by_status[str(status)] += 1
            self._by_route_status[route][str(status)] += 1

    def record_callback(self, *, delivered: bool) -> None:
        with self._lock:
            if delivered:
                self.callbacks_sent += 1
            else:
                self.callbacks_failed += 1

    def snapshot(self) -> tuple[dict[str, int], dict[str, int], dict[str, dict[str, int]]]:
        with self._lock:
            return (
                dict(self._by_route),
                dict(self._by_status),
                {route: dict(counts) for route, counts in self._by_route_status.items()},
            )
