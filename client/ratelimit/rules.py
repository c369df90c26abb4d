"""The admission rules of a key's rate budget, without any I/O and without reading a clock.

Every store (in memory, SQLite, PostgreSQL) decides admissions with these functions,
so the rule is the same everywhere: `next_admission_time` applied to the budget's admission
log, with the adaptive state (rate factor, not-before) shared by every user of the key.

Slots are reserved ahead of use: `plan_slots` returns the next admission times and the
store writes them into the log at once, so two users can never be given the same room.
A throttle or a pause revokes every slot still in the future: their
holders learn it when they claim, and reserve again under the new state.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from stemcat.client.ratelimit.defaults import DEFAULT_SAFETY

# However short the window, leave this much room for scheduling and network jitter: a request
# is counted where it arrives, a little after its slot.
MIN_GUARD_S = 0.1
# A log entry this far beyond "now" means the wall clock went backwards: forget the log.
CLOCK_JUMP_S = 3600.0
MAX_SLOTS_PER_RESERVATION = 256
MAX_FIRST_MARGIN_S = 60.0


def next_admission_time(
    history: Sequence[float],
    now: float,
    limit: int,
    window: float,
    spacing: float,
    *,
    not_before: float = -math.inf,
) -> float:
    """Earliest time ≥ now at which one more admission keeps both rules.

    `history` holds past admission times in ascending order (at least the last `limit`).
    Rule 1: the admission `limit` places back must be at least `window` old.
    Rule 2: consecutive admissions are at least `spacing` apart.
    """
    earliest = max(now, not_before)
    if history:
        earliest = max(earliest, history[-1] + spacing)
    if len(history) >= limit:
        earliest = max(earliest, history[-limit] + window)
    return earliest


@dataclass
class AdaptiveRate:
    """Multiplicative decrease on throttling, additive recovery on success.

    Throttles arriving within `cooldown_s` of the last decrease are counted but do not
    halve again: calls already in flight when the first 430 arrived report the same event.
    """

    cooldown_s: float
    decrease_factor: float = 0.5
    floor: float = 1 / 8
    recovery_step: float = 1 / 16
    factor: float = 1.0
    last_decrease: float = -math.inf

    def on_throttle(self, now: float) -> None:
        if now - self.last_decrease >= self.cooldown_s:
            self.factor = max(self.floor, self.factor * self.decrease_factor)
            self.last_decrease = now

    def on_success(self) -> None:
        self.factor = min(1.0, self.factor + self.recovery_step)



@dataclass(frozen=True)
class PacingParams:
    """One user's view of the key's budget: `limit` requests per `window_s`, with a safety margin."""

    limit: int
    window_s: float
    safety: float = DEFAULT_SAFETY

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be at least 1")
        if not self.window_s > 0 or math.isinf(self.window_s):
            raise ValueError("window_s must be a positive number")
        if not 0 <= self.safety < 1:
            raise ValueError("safety must be in [0, 1)")

    @property
    def guarded_window(self) -> float:
        """The window the rules enforce: a little longer than the API's, for jitter (1%, at least 0.1 s)."""
        return self.window_s + max(self.window_s * self.safety, MIN_GUARD_S)

    @property
    def nominal_spacing(self) -> float:
        return self.guarded_window / self.limit

    @property
    def nominal_rate(self) -> float:
        return self.limit / self.window_s


@dataclass(frozen=True)
class PacingState:
    """What every user of a key shares besides the log: the slow-down and the pause."""

    factor: float = 1.0
    last_decrease: float = -math.inf
    not_before: float = -math.inf
    throttles: int = 0
    pauses: int = 0


@dataclass(frozen=True)
class Slot:
    """A reserved admission: `ticket` names it in the store, `wait_s` is how long until it is due."""

    ticket: int
    wait_s: float


@dataclass(frozen=True)
class Reservation:
    """Slots handed out by one store call, and the rate factor in force when they were planned."""

    slots: tuple[Slot, ...]
    factor: float


def spacing(params: PacingParams, state: PacingState) -> float:
    """Least time between two admissions under the current slow-down."""
    return params.nominal_spacing / state.factor


def plan_slots(
    history: Sequence[float], state: PacingState, now: float, params: PacingParams, count: int
) -> list[float]:
    """The next `count` admission times after `history` (ascending; at least its last `limit` entries)."""
    return [due for due, _stamp in plan_stamped_slots(history, state, now, params, count)]


def plan_stamped_slots(
    history: Sequence[float],
    state: PacingState,
    now: float,
    params: PacingParams,
    count: int,
    *,
    first_margin_s: float = 0.0,
) -> list[tuple[float, float]]:
    """(due time, time written to the log) of the next `count` admissions.

    The first is logged `first_margin_s` after it is due: a process that has not sent for a
    while opens a new connection (TLS, on the real API) and its request arrives late, so
    it must count as late, or the request `limit` places after it could share its window.
    """
    if count < 1:
        return []
    log = list(history[-params.limit :])
    gap = spacing(params, state)
    planned: list[tuple[float, float]] = []
    for index in range(min(count, MAX_SLOTS_PER_RESERVATION)):
        due = next_admission_time(
            log, now, params.limit, params.guarded_window, gap, not_before=state.not_before
        )
        stamp = due + first_margin_s if index == 0 else due
        planned.append((due, stamp))
        log.append(stamp)
        if len(log) > params.limit:
            del log[0]
    return planned


def _adaptive(state: PacingState, params: PacingParams) -> AdaptiveRate:
    return AdaptiveRate(cooldown_s=params.window_s, factor=state.factor, last_decrease=state.last_decrease)


def after_throttle(state: PacingState, now: float, retry_after: float | None, params: PacingParams) -> PacingState:
    """405/430: halve the rate (once per window of reports) and honour Retry-After."""
    rate = _adaptive(state, params)
    rate.on_throttle(now)
    not_before = state.not_before
    if retry_after is not None and retry_after > 0:
        not_before = max(not_before, now + retry_after)
    return replace(
        state, factor=rate.factor, last_decrease=rate.last_decrease, not_before=not_before,
        throttles=state.throttles + 1,
    )


def after_pause(state: PacingState, now: float, seconds: float) -> PacingState:
    """455: admit nothing for `seconds`."""
    not_before = max(state.not_before, now + seconds) if seconds > 0 else state.not_before
    return replace(state, not_before=not_before, pauses=state.pauses + 1)


def after_successes(state: PacingState, successes: int, params: PacingParams) -> PacingState:
    """Recover the rate additively, one step per successful request."""
    rate = _adaptive(state, params)
    for _ in range(max(0, successes)):
        if rate.factor >= 1.0:
            break
        rate.on_success()
    return replace(state, factor=rate.factor)


def clock_went_back(newest: float | None, now: float) -> bool:
    """True when the newest log entry lies implausibly far in the future."""
    return newest is not None and newest - now > CLOCK_JUMP_S


def arrival_bounds(tickets: Sequence[int], now: float, ages_s: Sequence[float] | None) -> dict[int, float]:
    """Ticket -> the latest time its request may have arrived: `now` less its age (none: now)."""
    if ages_s is None:
        return dict.fromkeys(tickets, now)
    if len(ages_s) != len(tickets):
        raise ValueError("one age per ticket")
    bounds: dict[int, float] = {}
    for ticket, age in zip(tickets, ages_s, strict=True):
        bounds[ticket] = max(bounds.get(ticket, -math.inf), now - max(0.0, age))
    return bounds


def budget_id(base_url: str, api_key: str) -> str:
    """Stable name of a key's budget at one API: a hash of the base URL and of the key's hash.

    The key itself never leaves the process; two runs with the same key and base URL get
    the same id whatever their data directories.
    """
    key_hash = hashlib.sha256(api_key.encode()).hexdigest()
    normalized = base_url.strip().rstrip("/").lower()
    return hashlib.sha256(f"stemcat-budget-v1\0{normalized}\0{key_hash}".encode()).hexdigest()[:32]


class AdmissionBook:
    """An in-memory budget: the log of recent and reserved admissions plus the shared state.

    Used by the in-process store; `now` is always passed in,
    so the book itself does no I/O and reads no clock.
    """

    def __init__(self, *, not_before: float = -math.inf, first_ticket: int = 0) -> None:
        self._log: deque[tuple[float, int]] = deque()
        self._tickets = first_ticket
        self.state = PacingState(not_before=not_before)

    def reserve(self, now: float, params: PacingParams, count: int, *, first_margin_s: float = 0.0) -> Reservation:
        if self._log and clock_went_back(self._log[-1][0], now):
            self._log.clear()
        history = [at for at, _ in self._log]
        slots = []
        for due, stamp in plan_stamped_slots(history, self.state, now, params, count, first_margin_s=first_margin_s):
            self._tickets += 1
            self._log.append((stamp, self._tickets))
            slots.append(Slot(self._tickets, max(0.0, due - now)))
        self._prune(now, params)
        return Reservation(tuple(slots), self.state.factor)

    def claim(self, tickets: Iterable[int]) -> set[int]:
        """The tickets still in the log (not revoked)."""
        wanted = set(tickets)
        return {ticket for _, ticket in self._log if ticket in wanted}

    def release(self, tickets: Iterable[int], now: float) -> None:
        """Give back unused slots that are not due yet (a due slot may already have been used)."""
        unused = set(tickets)
        self._log = deque(entry for entry in self._log if not (entry[1] in unused and entry[0] > now))

    def arrived_late(self, tickets: Sequence[int], now: float, ages_s: Sequence[float] | None = None) -> None:
        """Move these admissions to `now` less their age (their requests may have arrived that late).

        An admission already logged later stays where it is.
        """
        late = arrival_bounds(tickets, now, ages_s)
        moved = [(max(at, late[ticket]) if ticket in late else at, ticket) for at, ticket in self._log]
        self._log = deque(sorted(moved))

    def throttle(self, now: float, retry_after: float | None, params: PacingParams) -> PacingState:
        self.state = after_throttle(self.state, now, retry_after, params)
        self._revoke(now)
        return self.state

    def pause(self, now: float, seconds: float) -> PacingState:
        self.state = after_pause(self.state, now, seconds)
        self._revoke(now)
        return self.state

    def recover(self, successes: int, params: PacingParams) -> PacingState:
        self.state = after_successes(self.state, successes, params)
        return self.state

    @property
    def size(self) -> int:
        return len(self._log)

    def _revoke(self, now: float) -> None:
        # Only slots still in the future: one due now may already be on the wire.
        self._log = deque(entry for entry in self._log if entry[0] <= now)

    def _prune(self, now: float, params: PacingParams) -> None:
        # The rules read the last `limit` entries; older ones only matter inside the window
        # (rule 1) or as the latest admission (rule 2), so keep those and drop the rest.
        horizon = now - params.guarded_window - spacing(params, self.state)
        while len(self._log) > params.limit and self._log[0][0] < horizon:
            self._log.popleft()
