"""The simulator's clock: real monotonic time scaled by a speed, plus manual advances."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class SimClock:
    """Sim seconds since start; `epoch_ms` maps them onto wall-clock epoch milliseconds."""

    def __init__(self, speed: float = 1.0, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._speed = speed
        self._monotonic = monotonic
        self._started = monotonic()
        self._start_epoch_s = time.time()
        self._offset_s = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Sim seconds elapsed since the simulator started."""
        with self._lock:
            return (self._monotonic() - self._started) * self._speed + self._offset_s

    def advance(self, seconds: float) -> float:
        """Jump forward; returns the new sim time."""
        if seconds < 0:
            raise ValueError("the sim clock only moves forward")
        with self._lock:
            self._offset_s += seconds
        return self.now()

    def epoch_ms(self, sim_s: float | None = None) -> int:
        """Epoch milliseconds of a sim time (now by default), as the API reports times."""
        at = self.now() if sim_s is None else sim_s
        return round((self._start_epoch_s + at) * 1000)
