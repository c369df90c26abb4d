"""One rate budget per API key, shared by every run that uses the key.

`SharedLimiter` is a `RequestLimiter` whose admission log and adaptive state live in an
`AdmissionStore`:

===========================  ==========================================================
store                        who shares the budget
===========================  ==========================================================
``memory``                   the coroutines of this process only
SQLite file (the default)    every process on this host (WAL, ``BEGIN IMMEDIATE``)
``http://host:port``         every machine that reaches one pacer service
===========================  ==========================================================

By default a run uses ``$XDG_STATE_HOME/stemcat/rate-<budget>.sqlite`` (``~/.local/state``
when unset), where ``<budget>`` hashes the base URL and the key's hash: runs on the same key
share it whatever their data directories, and a single run needs no setup at all.

How a request is admitted: the limiter reserves the next slot(s) from the store (decided
there by the pure rules of `stemcat.client.admission`), sleeps until the slot is due, claims it,
and hands it to the waiting request that the poll policy picks. A 405/430 (`throttled`) or a
455 (`paused`) is written to the store at once: it halves the rate or sets a not-before for
every process, and revokes every reserved future slot, so the whole key slows down, not just
the request that was refused. Each success recovers the rate by a small step.

Exact on arrival, not just on paper: the API counts a request when it arrives, which can be
after its slot. Three things keep the two close. The window the rules enforce is the API's
plus a guard (1%, at least 0.1 s). A process that has not sent for a while is "cold" (its next
request opens a connection): its first admission is logged half a second late. And every
answer bounds its request's arrival from above: a request answered later after its slot than
the usual round trip plus half the guard (a busy event loop sent it late, or the server took
long) has its admission moved to that bound (the answer, less the usual round trip and half the
guard), long before the slot a window later is reserved. The slot a request is measured
against is the earliest time the store can have logged it, and the usual round trip is only
trusted once a few answers have been seen, so a slow first answer (a new connection) cannot
hide a late one.

Poll policy: API calls made inside `polling()` are polls. When polls and other calls (submits)
wait at the same time, polls get at most `poll_share` of the admissions (stride scheduling);
when only one kind waits it gets the whole budget. Per-job poll cadence (back-off) is the
caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from stemcat.client.admission import (
    DEFAULT_SAFETY,
    AdmissionBook,
    PacingParams,
    PacingState,
    Reservation,
    budget_id,
)
from stemcat.client.errors import TransportFailure
from stemcat.client.pacing import LimiterStats

logger = logging.getLogger("stemcat.client")

Clock = Callable[[], float]

DEFAULT_POLL_SHARE = 0.5
DEFAULT_LOOKAHEAD_S = 0.2
# A limiter that has not sent for this long is cold: its next request likely opens a new
# connection and arrives late, so that admission is logged COLD_START_MARGIN_S late.
COLD_AFTER_S = 5.0
COLD_START_MARGIN_S = 0.5
# A request whose answer comes later after its slot than the fastest round trip seen plus this
# share of the guard may have reached the API late: its admission is moved to its answer, less
# the fastest round trip and that share (the rest of the guard stays as margin).
LATE_TOLERANCE_SHARE = 0.5
# The fastest round trip is trusted once this many answers were seen (the first ones open
# connections and are slow); until then an answer's whole delay counts as lateness.
ROUND_TRIP_SAMPLES = 8
MEMORY_STORE = "memory"
STATE_DIR_ENV = "XDG_STATE_HOME"
# Float rounding must not turn into an endless run of zero-length sleeps.
_DUE_TOLERANCE_S = 1e-6


class PacerUnavailable(TransportFailure):
    """The shared budget could not be reached; no API request was sent."""

    advice = "The rate store (SQLite file or pacer service) failed; nothing was sent, retry later"

    def __init__(self, message: str, *, endpoint: str = "pacer") -> None:
        super().__init__(message, request_sent=False, endpoint=endpoint)


class RequestClass(StrEnum):
    SUBMIT = "submit"  # and every call not marked as a poll
    POLL = "poll"


_request_class: ContextVar[RequestClass] = ContextVar("stemcat_request_class", default=RequestClass.SUBMIT)


@contextlib.contextmanager
def polling() -> Iterator[None]:
    """Mark the API calls made inside as polls (see the poll policy in the module docstring)."""
    token = _request_class.set(RequestClass.POLL)
    try:
        yield
    finally:
        _request_class.reset(token)


class AdmissionStore(Protocol):
    """Where a budget's admission log and adaptive state live; every method is one atomic step."""

    async def reserve(self, params: PacingParams, count: int, *, first_margin_s: float = 0.0) -> Reservation:
        """Plan and record the next `count` admissions (the first logged `first_margin_s` late)."""
        ...

    async def claim(self, tickets: Sequence[int]) -> set[int]:
        """Which of these reserved slots are still valid (not revoked by a throttle or pause)."""
        ...

    async def release(self, tickets: Sequence[int]) -> None:
        """Give back reserved slots that will not be used."""
        ...

    async def throttle(self, params: PacingParams, retry_after: float | None) -> PacingState: ...

    async def pause(self, seconds: float) -> PacingState: ...

    async def recover(self, params: PacingParams, successes: int) -> PacingState: ...

    async def arrived_late(self, tickets: Sequence[int], ages_s: Sequence[float] | None = None) -> None:
        """These admissions' requests may have reached the API as late as `ages_s` seconds ago
        (one per ticket; now when None): log them there, unless they are logged later already."""
        ...

    async def aclose(self) -> None: ...


class MemoryAdmissionStore:
    """A budget held by this process only."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._book = AdmissionBook()
        self._clock = clock

    async def reserve(self, params: PacingParams, count: int, *, first_margin_s: float = 0.0) -> Reservation:
        return self._book.reserve(self._clock(), params, count, first_margin_s=first_margin_s)

    async def claim(self, tickets: Sequence[int]) -> set[int]:
        return self._book.claim(tickets)

    async def release(self, tickets: Sequence[int]) -> None:
        self._book.release(tickets, self._clock())

    async def throttle(self, params: PacingParams, retry_after: float | None) -> PacingState:
        return self._book.throttle(self._clock(), retry_after, params)

    async def pause(self, seconds: float) -> PacingState:
        return self._book.pause(self._clock(), seconds)

    async def recover(self, params: PacingParams, successes: int) -> PacingState:
        return self._book.recover(successes, params)

    async def arrived_late(self, tickets: Sequence[int], ages_s: Sequence[float] | None = None) -> None:
        self._book.arrived_late(tickets, self._clock(), ages_s)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class _LocalSlot:
    ticket: int
    due: float  # on this process's monotonic clock; never before the store's slot
    earliest: float  # the earliest local time the store's slot can be at
    logged: float  # the same for the time the store logged it at (later when cold)


class _Reports:
    """Throttles, pauses and successes not yet written to the store."""

    def __init__(self) -> None:
        self.throttles: list[float | None] = []
        self.pause_s: float | None = None
        self.successes = 0
        self.late: list[tuple[int, float]] = []  # (ticket, local time it may have arrived by)

    def __bool__(self) -> bool:
        return bool(self.throttles or self.late) or self.pause_s is not None or self.successes > 0

    def take(self) -> _Reports:
        taken = _Reports()
        taken.throttles, taken.pause_s, taken.successes, taken.late = (
            self.throttles, self.pause_s, self.successes, self.late)
        self.throttles, self.pause_s, self.successes, self.late = [], None, 0, []
        return taken

    def put_back(self, other: _Reports) -> None:
        self.throttles = other.throttles + self.throttles
        if other.pause_s is not None:
            self.pause_s = max(other.pause_s, self.pause_s or 0.0)
        self.successes += other.successes
        self.late = other.late + self.late


@dataclass(frozen=True)
class _Admission:
    """The slot the current task's request went out on (see `SharedLimiter.succeeded`)."""

    limiter: int  # id() of the limiter that granted it
    ticket: int
    earliest: float
    logged: float


_admission: ContextVar[_Admission | None] = ContextVar("stemcat_admission", default=None)


class SharedLimiter:
    """Exact, smooth pacing against a budget that other processes or machines may share."""

    def __init__(
        self,
        store: AdmissionStore,
        limit: int = 20,
        window_s: float = 10.0,
        *,
        safety: float = DEFAULT_SAFETY,
        poll_share: float = DEFAULT_POLL_SHARE,
        lookahead_s: float = DEFAULT_LOOKAHEAD_S,
        max_ahead: int = 64,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 0.0 <= poll_share <= 1.0:
            raise ValueError("poll_share must be between 0 and 1")
        if lookahead_s < 0 or max_ahead < 1:
            raise ValueError("need lookahead_s >= 0 and max_ahead >= 1")
        self._params = PacingParams(limit, window_s, safety)
        self._store = store
        self._clock = clock
        self._lookahead_s = lookahead_s
        self._max_ahead = max_ahead
        self._weights = {RequestClass.SUBMIT: 1.0 - poll_share, RequestClass.POLL: poll_share}
        self._passes = dict.fromkeys(RequestClass, 0.0)
        self._waiters: dict[RequestClass, deque[asyncio.Future[_LocalSlot]]] = {c: deque() for c in RequestClass}
        self._slots: deque[_LocalSlot] = deque()
        self._reports = _Reports()
        self._store_lock = asyncio.Lock()
        self._dispatcher: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._factor = 1.0
        self._last_grant: float | None = None
        self._late_tolerance_s = (self._params.guarded_window - window_s) * LATE_TOLERANCE_SHARE
        self._fastest_answer_s = math.inf
        self._answers = 0
        self.admitted = 0
        self.throttle_count = 0
        self.pause_count = 0
        self.late_requests = 0
        self.granted_by_class: dict[RequestClass, int] = dict.fromkeys(RequestClass, 0)

    # --- RequestLimiter ---------------------------------------------------------------------

    async def acquire(self) -> None:
        waiter: asyncio.Future[_LocalSlot] = asyncio.get_running_loop().create_future()
        self._waiters[_request_class.get()].append(waiter)
        self._ensure_dispatcher()
        slot = await waiter
        # Same task as the request: `succeeded` finds out which slot the request went out on.
        _admission.set(_Admission(id(self), slot.ticket, slot.earliest, slot.logged))
        self.admitted += 1

    def throttled(self, retry_after: float | None) -> None:
        _admission.set(None)  # a refused request does not occupy the window
        self.throttle_count += 1
        self._reports.throttles.append(retry_after)
        self._revoke_local_slots()
        self._schedule_flush()

    def paused(self, seconds: float) -> None:
        _admission.set(None)
        self.pause_count += 1
        self._reports.pause_s = max(seconds, self._reports.pause_s or 0.0)
        self._revoke_local_slots()
        self._schedule_flush()

    def succeeded(self) -> None:
        self._note_answer()
        # At full rate there is nothing to recover: no store write per request.
        if self._factor < 1.0:
            self._reports.successes += 1
            self._schedule_flush()

    def _note_answer(self) -> None:
        """Move the admission of a request that may have arrived late to where it may have arrived.

        A busy event loop can send a request long after its slot, and a busy server can count
        it long after it left; if it reached the API late enough to share a window with the
        request `limit` slots later, that one would be refused. The answer bounds the arrival
        from above. The fastest answer seen is taken as the usual round trip: its way there
        the request `limit` slots later travels too, its way back comes after the arrival, so
        only what exceeds it (plus half the guard) counts as lateness. The later slot is
        reserved about a window from now, so correcting the log here keeps it exact on arrival.
        """
        admission = _admission.get()
        if admission is None or admission.limiter != id(self):
            return
        _admission.set(None)
        now = self._clock()
        usual = self._fastest_answer_s if self._answers >= ROUND_TRIP_SAMPLES else 0.0
        self._fastest_answer_s = min(self._fastest_answer_s, max(0.0, now - admission.earliest))
        self._answers += 1
        if now - admission.logged > usual + self._late_tolerance_s:
            self.late_requests += 1
            logger.debug("a request was answered %.0f ms after its slot: its admission moves",
                         (now - admission.earliest) * 1000)
            self._reports.late.append((admission.ticket, now - usual - self._late_tolerance_s))
            self._schedule_flush()

    # --- introspection ------------------------------------------------------------------------

    @property
    def current_rate(self) -> float:
        """Admissions per second currently allowed (as last seen in the store)."""
        return self._params.limit / self._params.guarded_window * self._factor

    @property
    def nominal_rate(self) -> float:
        return self._params.nominal_rate

    @property
    def stats(self) -> LimiterStats:
        return LimiterStats(self.admitted, self.throttle_count, self.pause_count, self.current_rate)

    async def aclose(self) -> None:
        """Stop dispatching, give back reserved slots and close the store."""
        for task in (self._dispatcher, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            await self._release_local_slots()
        await self._store.aclose()

    def __repr__(self) -> str:
        return (
            f"SharedLimiter(limit={self._params.limit}, window_s={self._params.window_s}, "
            f"store={type(self._store).__name__}, current_rate={self.current_rate:.3f}/s, admitted={self.admitted})"
        )

    # --- dispatching --------------------------------------------------------------------------

    def _live_waiters(self, request_class: RequestClass) -> deque[asyncio.Future[_LocalSlot]]:
        queue = self._waiters[request_class]
        while queue and queue[0].done():  # cancelled while waiting
            queue.popleft()
        return queue

    def _waiting(self) -> int:
        return sum(len(self._live_waiters(c)) for c in RequestClass)

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="stemcat-pacing")

    def _ahead(self) -> int:
        rate = self.current_rate
        by_time = max(1, math.floor(self._lookahead_s * rate)) if math.isfinite(rate) else self._max_ahead
        return max(1, min(self._waiting(), by_time, self._max_ahead))

    async def _dispatch(self) -> None:
        try:
            while True:
                while self._waiting():
                    if not self._slots:
                        await self._reserve()
                        continue
                    delay = self._slots[0].due - self._clock()
                    if delay > _DUE_TOLERANCE_S:
                        await self._sleep_unless_revoked(delay)
                        continue
                    await self._claim_due()
                await self._release_local_slots()
                # No await between this check and returning: a new waiter either is seen
                # here or finds this task done and starts another.
                if not self._waiting():
                    return
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the store failed: every waiter hears it, the next acquire retries
            self._fail_waiters(_as_pacer_error(error))
            self._slots.clear()

    async def _reserve(self) -> None:
        async with self._store_lock:
            await self._flush_locked()
            margin = self._cold_margin()
            # The store reads its clock somewhere between these two: a slot is granted no
            # earlier than `base + wait` and counted as logged at `called + wait` (+ margin).
            called = self._clock()
            reservation = await self._store.reserve(self._params, self._ahead(), first_margin_s=margin)
        base = self._clock()
        self._factor = reservation.factor
        self._slots.extend(
            _LocalSlot(slot.ticket, base + slot.wait_s, called + slot.wait_s,
                       called + slot.wait_s + (margin if index == 0 else 0.0))
            for index, slot in enumerate(reservation.slots)
        )

    def _cold_margin(self) -> float:
        cold = self._last_grant is None or self._clock() - self._last_grant > COLD_AFTER_S
        return COLD_START_MARGIN_S if cold else 0.0

    async def _claim_due(self) -> None:
        now = self._clock()
        due: list[_LocalSlot] = []
        while self._slots and self._slots[0].due - now <= _DUE_TOLERANCE_S:
            due.append(self._slots.popleft())
        async with self._store_lock:
            await self._flush_locked()
            valid = await self._store.claim([slot.ticket for slot in due])
        if len(valid) < len(due):
            # Revoked by a throttle or pause somewhere: later local slots went with them.
            self._slots.clear()
        for slot in due:
            if slot.ticket in valid:
                self._grant(slot)

    def _grant(self, slot: _LocalSlot) -> None:
        """Hand one admission to the waiter the poll policy picks (stride scheduling)."""
        waiting = [c for c in RequestClass if self._live_waiters(c)]
        if not waiting:
            return  # everyone gave up: the slot goes unused
        chosen = waiting[0] if len(waiting) == 1 else min(waiting, key=self._stride_key)
        weight = self._weights[chosen]
        if weight > 0:
            self._passes[chosen] += 1.0 / weight
        # An idle class must not bank credit while the other uses the budget.
        for other in RequestClass:
            if other is not chosen and other not in waiting:
                self._passes[other] = max(self._passes[other], self._passes[chosen])
        self._live_waiters(chosen).popleft().set_result(slot)
        self.granted_by_class[chosen] += 1
        self._last_grant = self._clock()

    def _stride_key(self, request_class: RequestClass) -> tuple[float, bool]:
        pass_value = self._passes[request_class] if self._weights[request_class] > 0 else math.inf
        return pass_value, request_class is not RequestClass.SUBMIT  # ties go to submits

    def _fail_waiters(self, error: BaseException) -> None:
        for queue in self._waiters.values():
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_exception(error)

    async def _sleep_unless_revoked(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        wakeup: asyncio.Future[None] = loop.create_future()
        self._wakeup = wakeup
        handle = loop.call_later(delay, _resolve, wakeup)
        try:
            await wakeup
        finally:
            handle.cancel()
            self._wakeup = None

    def _revoke_local_slots(self) -> None:
        self._slots.clear()
        if self._wakeup is not None:
            _resolve(self._wakeup)

    async def _release_local_slots(self) -> None:
        if not self._slots:
            return
        tickets = [slot.ticket for slot in self._slots]
        self._slots.clear()
        async with self._store_lock:
            await self._store.release(tickets)

    # --- reports ------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # written by the next dispatch
        self._flusher = loop.create_task(self._flush(), name="stemcat-pacing-report")

    async def _flush(self) -> None:
        try:
            async with self._store_lock:
                await self._flush_locked()
        except Exception as error:  # kept pending; the next dispatch tries again
            logger.warning("could not write to the rate store: %s", error)

    async def _flush_locked(self) -> None:
        if not self._reports:
            return
        reports = self._reports.take()
        try:
            state: PacingState | None = None
            for retry_after in reports.throttles:
                state = await self._store.throttle(self._params, retry_after)
            if reports.pause_s is not None:
                state = await self._store.pause(reports.pause_s)
            if reports.successes:
                state = await self._store.recover(self._params, reports.successes)
            if reports.late:
                now = self._clock()  # the store reads its clock later: the ages only grow
                await self._store.arrived_late(
                    [ticket for ticket, _ in reports.late], [max(0.0, now - by) for _, by in reports.late]
                )
        except BaseException:
            self._reports.put_back(reports)
            raise
        if state is not None:
            self._factor = state.factor


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _as_pacer_error(error: Exception) -> Exception:
    if isinstance(error, PacerUnavailable):
        return error
    return PacerUnavailable(f"rate store failed: {type(error).__name__}: {error}")


# --- choosing a store ------------------------------------------------------------------------


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/stemcat`, or `~/.local/state/stemcat`."""
    base = os.environ.get(STATE_DIR_ENV) or str(Path.home() / ".local" / "state")
    return Path(base) / "stemcat"


def default_store_path(base_url: str, api_key: str) -> Path:
    """The per-key SQLite budget every run on this host shares by default."""
    return default_state_dir() / f"rate-{budget_id(base_url, api_key)}.sqlite"


def open_admission_store(spec: str | None, *, base_url: str, api_key: str) -> AdmissionStore:
    """The store a `rate_store` setting names.

    None: the per-key SQLite file (`default_store_path`); ``memory``: this process only;
    ``http(s)://host:port``: a pacer service (`python -m stemcat.client.pacer_service`);
    ``sqlite:///path`` or a plain path: that SQLite file.
    """
    from stemcat.client.admission_http import HttpAdmissionStore
    from stemcat.client.admission_sqlite import SqliteAdmissionStore

    if spec is None or not spec.strip():
        return SqliteAdmissionStore(default_store_path(base_url, api_key))
    value = spec.strip()
    if value == MEMORY_STORE:
        return MemoryAdmissionStore()
    scheme = urlsplit(value).scheme.lower()
    if scheme in ("http", "https"):
        return HttpAdmissionStore(value, budget_id(base_url, api_key))
    if scheme == "sqlite":
        return SqliteAdmissionStore(Path(value.removeprefix("sqlite://")))
    if scheme and len(scheme) > 1:
        raise ValueError(f"unknown rate store {value!r}: use memory, a path, sqlite:///path or http://host:port")
    return SqliteAdmissionStore(Path(value).expanduser())
