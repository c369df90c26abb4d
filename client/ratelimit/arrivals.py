"""Requests that may have reached the API late: which answers say so, and where their admission moves.

A busy event loop can send a request long after its slot, and a busy server can count it long
after it left; if it reached the API late enough to share a window with the request `limit`
slots later, that one would be refused. The answer bounds the arrival from above. The fastest
answer seen is taken as the usual round trip: its way there the request `limit` slots later
travels too, its way back comes after the arrival, so only what exceeds it (plus half the
guard) counts as lateness. The later slot is reserved about a window from now, so correcting
the log when the answer comes keeps the log exact on arrival.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass

# A request whose answer comes later after its slot than the fastest round trip seen plus this
# share of the guard may have reached the API late: its admission is moved to its answer, less
# the fastest round trip and that share (the rest of the guard stays as margin).
LATE_TOLERANCE_SHARE = 0.5
# The fastest round trip is trusted once this many answers were seen (the first ones open
# connections and are slow); until then an answer's whole delay counts as lateness.
ROUND_TRIP_SAMPLES = 8


@dataclass(frozen=True)
class Admission:
    """The slot the current task's request went out on, in the granting limiter's time."""

    limiter: int  # id() of the limiter that granted it
    ticket: int
    earliest: float  # the earliest time the store's slot can be at
    logged: float  # the same for the time the store logged it at (later when cold)


# Set in the task that sends the request, so its answer finds the slot it went out on.
_admission: ContextVar[Admission | None] = ContextVar("stemcat_admission", default=None)


def note_admission(admission: Admission | None) -> None:
    """The current task's request goes out on `admission` (None: it occupies no slot any more)."""
    _admission.set(admission)


def current_admission() -> Admission | None:
    """The slot the current task's last admitted request went out on, left in place (tests, reports)."""
    return _admission.get()


def take_admission(limiter: int) -> Admission | None:
    """The current task's admission by `limiter`, forgotten once taken."""
    admission = _admission.get()
    if admission is None or admission.limiter != limiter:
        return None
    _admission.set(None)
    return admission


class ArrivalWatch:
    """Learns the usual round trip and says which answers reveal a late arrival."""

    def __init__(self, guard_s: float) -> None:
        self._tolerance_s = guard_s * LATE_TOLERANCE_SHARE
        self._fastest_answer_s = math.inf
        self._answers = 0

    def late_bound(self, admission: Admission, now: float) -> float | None:
        """The latest time the request answered at `now` may have arrived, if that is late; else None."""
        usual = self._fastest_answer_s if self._answers >= ROUND_TRIP_SAMPLES else 0.0
        self._fastest_answer_s = min(self._fastest_answer_s, max(0.0, now - admission.earliest))
        self._answers += 1
        if now - admission.logged > usual + self._tolerance_s:
            return now - usual - self._tolerance_s
        return None
