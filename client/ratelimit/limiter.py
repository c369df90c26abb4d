"""The one limiter: exact, smooth pacing of a key's API calls against a budget held in a store.

`SharedLimiter` keeps the key's admission log and adaptive state in an `AdmissionStore`
(see `stores`): in memory it paces one process, in the per-key SQLite file every process on
the host, in PostgreSQL every machine. The rules are the pure ones of `rules`.

How a request is admitted: the limiter reserves the next slot(s) from the store, sleeps (on
its injected clock) until the slot is due, claims it, and hands it to the waiting request
that the poll policy (`policy`) picks. A 405/430 (`throttled`) or a 455 (`paused`) is written
to the store at once: it halves the rate or sets a not-before for every user of the key, and
revokes every reserved future slot, so the whole key slows down, not just the request that
was refused. Each success recovers the rate by a small step. `current_rate` shows this
limiter's own reports at once and the store's state as soon as it answers.

Exact on arrival, not just on paper: the API counts a request when it arrives, which can be
after its slot. Three things keep the two close. The window the rules enforce is the API's
plus a guard (1%, at least 0.1 s). A limiter that has not sent for a while is "cold" (its next
request opens a connection): its first admission is logged half a second late. And a request
whose answer shows it may have arrived late has its admission moved there (see `arrivals`),
long before the slot a window later is reserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, replace

from stemcat.client.errors import RateStoreUnavailable
from stemcat.client.ratelimit.arrivals import Admission, ArrivalWatch, note_admission, take_admission
from stemcat.client.ratelimit.base import Clock, LimiterStats, Sleep
from stemcat.client.ratelimit.defaults import (
    COLD_AFTER_S,
    COLD_START_MARGIN_S,
    DEFAULT_LOOKAHEAD_S,
    DEFAULT_MAX_AHEAD,
    DEFAULT_POLL_SHARE,
    DEFAULT_RATE_LIMIT,
    DEFAULT_SAFETY,
    DEFAULT_WINDOW_S,
)
from stemcat.client.ratelimit.policy import PollPolicy, RequestClass, current_request_class
from stemcat.client.ratelimit.reports import PendingReports
from stemcat.client.ratelimit.rules import PacingParams, PacingState, after_successes, after_throttle
from stemcat.client.ratelimit.stores import AdmissionStore, open_admission_store
from stemcat.client.ratelimit.stores.memory import MemoryAdmissionStore

logger = logging.getLogger("stemcat.client")

# Float rounding must not turn into an endless run of zero-length sleeps.
_DUE_TOLERANCE_S = 1e-6


@dataclass(frozen=True)
class _LocalSlot:
    ticket: int
    due: float  # on the limiter's clock; never before the store's slot
    earliest: float  # the earliest local time the store's slot can be at
    logged: float  # the same for the time the store logged it at (later when cold)


class SharedLimiter:
    """Exact, smooth pacing of one key's requests against the budget `store` holds.

    Without a store the budget is this process's alone (a `MemoryAdmissionStore` on `clock`).
    `clock` and `sleep` are the limiter's time: inject a fake pair to test pacing without waiting.
    """

    def __init__(
        self,
        store: AdmissionStore | None = None,
        limit: int = DEFAULT_RATE_LIMIT,
        window_s: float = DEFAULT_WINDOW_S,
        *,
        safety: float = DEFAULT_SAFETY,
        poll_share: float = DEFAULT_POLL_SHARE,
        lookahead_s: float = DEFAULT_LOOKAHEAD_S,
        max_ahead: int = DEFAULT_MAX_AHEAD,
        cold_start_margin_s: float = COLD_START_MARGIN_S,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if lookahead_s < 0 or max_ahead < 1 or cold_start_margin_s < 0:
            raise ValueError("need lookahead_s >= 0, max_ahead >= 1 and cold_start_margin_s >= 0")
        self._params = PacingParams(limit, window_s, safety)
        self._policy = PollPolicy(poll_share)
        self._store: AdmissionStore = store if store is not None else MemoryAdmissionStore(clock=clock)
        self._clock = clock
        self._sleep = sleep
        self._lookahead_s = lookahead_s
        self._max_ahead = max_ahead
        self._cold_start_margin_s = cold_start_margin_s
        self._waiters: dict[RequestClass, deque[asyncio.Future[_LocalSlot]]] = {c: deque() for c in RequestClass}
        self._slots: deque[_LocalSlot] = deque()
        self._reports = PendingReports()
        self._store_lock = asyncio.Lock()
        self._dispatcher: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        # The store's state as last seen, plus this limiter's own reports since (on its clock).
        self._seen = PacingState()
        self._last_grant: float | None = None
        self._arrivals = ArrivalWatch(self._params.guarded_window - window_s)
        self.admitted = 0
        self.throttle_count = 0
        self.pause_count = 0
        self.late_requests = 0
        self.granted_by_class: dict[RequestClass, int] = dict.fromkeys(RequestClass, 0)

    # --- RequestLimiter ---------------------------------------------------------------------

    async def acquire(self) -> None:
        waiter: asyncio.Future[_LocalSlot] = asyncio.get_running_loop().create_future()
        self._waiters[current_request_class()].append(waiter)
        self._ensure_dispatcher()
        slot = await waiter
        # Same task as the request: `succeeded` finds out which slot the request went out on.
        note_admission(Admission(id(self), slot.ticket, slot.earliest, slot.logged))
        self.admitted += 1

    def throttled(self, retry_after: float | None) -> None:
        note_admission(None)  # a refused request does not occupy the window
        self.throttle_count += 1
        self._seen = after_throttle(self._seen, self._clock(), retry_after, self._params)
        self._reports.throttles.append(retry_after)
        self._revoke_local_slots()
        self._schedule_flush()

    def paused(self, seconds: float) -> None:
        note_admission(None)
        self.pause_count += 1
        self._reports.pause_s = max(seconds, self._reports.pause_s or 0.0)
        self._revoke_local_slots()
        self._schedule_flush()

    def succeeded(self) -> None:
        self._note_answer()
        # At full rate there is nothing to recover: no store write per request.
        if self._seen.factor < 1.0:
            self._seen = after_successes(self._seen, 1, self._params)
            self._reports.successes += 1
            self._schedule_flush()

    def _note_answer(self) -> None:
        """Move the admission of a request that may have reached the API late (see `arrivals`)."""
        admission = take_admission(id(self))
        if admission is None:
            return
        now = self._clock()
        late_by = self._arrivals.late_bound(admission, now)
        if late_by is not None:
            self.late_requests += 1
            logger.debug("a request was answered %.0f ms after its slot: its admission moves",
                         (now - admission.earliest) * 1000)
            self._reports.late.append((admission.ticket, late_by))
            self._schedule_flush()

    # --- introspection ------------------------------------------------------------------------

    @property
    def current_rate(self) -> float:
        """Admissions per second currently allowed (as last seen in the store, with this limiter's reports)."""
        return self._params.limit / self._params.guarded_window * self._seen.factor

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
            self._fail_waiters(_as_rate_store_error(error))
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
        self._saw_factor(reservation.factor)
        self._slots.extend(
            _LocalSlot(slot.ticket, base + slot.wait_s, called + slot.wait_s,
                       called + slot.wait_s + (margin if index == 0 else 0.0))
            for index, slot in enumerate(reservation.slots)
        )

    def _cold_margin(self) -> float:
        cold = self._last_grant is None or self._clock() - self._last_grant > COLD_AFTER_S
        return self._cold_start_margin_s if cold else 0.0

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
        granted = False
        for slot in due:
            if slot.ticket in valid:
                granted = self._grant(slot) or granted
        if granted:
            # The granted requests start before this task sleeps again: an injected clock
            # may move time as soon as a sleep begins.
            await asyncio.sleep(0)

    def _grant(self, slot: _LocalSlot) -> bool:
        """Hand one admission to the waiter the poll policy picks; False when nobody waits any more."""
        waiting = [c for c in RequestClass if self._live_waiters(c)]
        if not waiting:
            return False  # everyone gave up: the slot goes unused
        chosen = self._policy.pick(waiting)
        self._live_waiters(chosen).popleft().set_result(slot)
        self.granted_by_class[chosen] += 1
        self._last_grant = self._clock()
        return True

    def _fail_waiters(self, error: BaseException) -> None:
        for queue in self._waiters.values():
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_exception(error)

    async def _sleep_unless_revoked(self, delay: float) -> None:
        wakeup: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakeup = wakeup
        sleeper = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait((sleeper, wakeup), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
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
        if self._reports:
            state = await self._reports.write(self._store, self._params, self._clock)
            if state is not None:
                self._saw_factor(state.factor)

    def _saw_factor(self, factor: float) -> None:
        # Only the factor: the store's times are on its own clock.
        self._seen = replace(self._seen, factor=factor)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _as_rate_store_error(error: Exception) -> Exception:
    if isinstance(error, RateStoreUnavailable):
        return error
    return RateStoreUnavailable(f"rate store failed: {type(error).__name__}: {error}")


def limiter_for_key(
    base_url: str,
    api_key: str,
    *,
    store: str | None = None,
    limit: int = DEFAULT_RATE_LIMIT,
    window_s: float = DEFAULT_WINDOW_S,
    poll_share: float = DEFAULT_POLL_SHARE,
) -> SharedLimiter:
    """The limiter of a key's budget in the store `store` names (None: the per-key SQLite file).

    Every command that calls the API builds its limiter here, so all of them share the key's
    budget. Close it with `await limiter.aclose()` (gives back reserved slots).
    """
    backing = open_admission_store(store, base_url=base_url, api_key=api_key)
    return SharedLimiter(backing, limit, window_s, poll_share=poll_share)
