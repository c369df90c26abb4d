"""When to poll a submitted job: timed from the separation latencies seen so far, then backed off.

Requests are the scarce resource (20 per 10 s per key), and a poll that finds a job still
running is a request spent for nothing. So a job's first poll is due when most separations of
its type have finished: a high quantile of the latencies observed in this run, seeded from the
ledger's history, plus a margin. A job found still running is polled again after a fraction of
that estimate, growing by the back-off factor up to the cap. With nothing observed yet for a
type, one job (the probe) polls early on a short back-off while the others wait for the
estimate its answer gives; a fixed `--poll-initial` overrides all of this.

Once callbacks are seen to reach the run, a poll is only the fallback for a job whose callback
did not come: its first poll waits well past the estimate (`CALLBACK_FACTOR`, `CALLBACK_GRACE_S`),
and with nothing known yet about its type `CALLBACK_COLD_S`; no job probes.

Pure: no clock and no I/O; callers pass ages and observations in seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

QUANTILE = 0.9          # the share of jobs whose first poll should find them finished
MARGIN = 1.1            # times the quantile...
SLACK_S = 0.05          # ...plus this, for the answer's way back
RETRY_FRACTION = 0.5    # a job found running is polled again after this share of the estimate
MIN_DELAY_S = 0.1
PROBE_INITIAL_S = 0.5   # the probe's first poll when nothing is known about a type
HISTORY = 200           # latencies kept per type (the most recent ones)
CALLBACK_FACTOR = 1.5   # with callbacks, the first poll waits this times the quantile...
CALLBACK_GRACE_S = 2.0  # ...plus this, for the callback's way in
CALLBACK_COLD_S = 10.0  # with callbacks and nothing known yet


def next_poll_delay(previous_s: float | None, *, initial_s: float, factor: float, max_s: float) -> float:
    """Per-job poll back-off: start at `initial_s`, grow by `factor`, never beyond `max_s`."""
    if previous_s is None:
        return min(initial_s, max_s)
    return min(previous_s * factor, max_s)


def quantile(values: list[float], q: float) -> float:
    """The `q` quantile of `values` (nearest rank, so it is always an observed value)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))
    return ordered[rank]


@dataclass
class LatencyEstimator:
    """Separation latencies (submit to completion, seconds) by separation type, most recent kept."""

    quantile: float = QUANTILE
    margin: float = MARGIN
    slack_s: float = SLACK_S
    history: int = HISTORY
    _seen: dict[str, deque[float]] = field(default_factory=dict)
    _probing: set[str] = field(default_factory=set)

    def observe(self, separation_type: str, latency_s: float) -> None:
        """Record one finished job's latency (negative or absurd values are ignored)."""
        if not 0.0 <= latency_s < 86_400.0:
            return
        self._seen.setdefault(separation_type, deque(maxlen=self.history)).append(latency_s)
        self._probing.discard(separation_type)

    def seed(self, separation_type: str, latencies: list[float]) -> None:
        """Older observations (the ledger's history): they count until newer ones push them out."""
        seen = self._seen.setdefault(separation_type, deque(maxlen=self.history))
        fresh = list(seen)
        seen.clear()
        for latency in [*latencies[-self.history:], *fresh]:
            if 0.0 <= latency < 86_400.0:
                seen.append(latency)

    def known(self, separation_type: str) -> bool:
        return bool(self._seen.get(separation_type))

    def first_poll_after(self, separation_type: str, *, callbacks: bool = False) -> float | None:
        """Seconds after its submit when a job of this type should first be polled.

        None when nothing is known and no callback is expected (a probe is needed).
        """
        seen = self._seen.get(separation_type)
        if callbacks:
            if not seen:
                return CALLBACK_COLD_S
            return quantile(list(seen), self.quantile) * CALLBACK_FACTOR + CALLBACK_GRACE_S
        if not seen:
            return None
        return max(MIN_DELAY_S, quantile(list(seen), self.quantile) * self.margin + self.slack_s)

    def claim_probe(self, separation_type: str) -> bool:
        """True for the one job that polls early while nothing is known about its type."""
        if self.known(separation_type) or separation_type in self._probing:
            return False
        self._probing.add(separation_type)
        return True

    def release_probe(self, separation_type: str) -> None:
        """The probe ended without an observation (failed, timed out): let another job probe."""
        self._probing.discard(separation_type)

    def retry_delay(self, separation_type: str, previous_s: float | None, *, factor: float, max_s: float) -> float:
        """The wait before polling again a job found still running."""
        estimate = self.first_poll_after(separation_type)
        if previous_s is None:
            base = PROBE_INITIAL_S if estimate is None else max(MIN_DELAY_S, estimate * RETRY_FRACTION)
            return min(base, max_s)
        return min(previous_s * factor, max_s)
