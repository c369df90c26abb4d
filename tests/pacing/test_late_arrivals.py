"""Requests that may have reached the API late: when they count as late and where their admission moves.

The limiter tests run on a fake clock (a stalled request is a fake sleep); PostgreSQL's on its own clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from stemcat.client.ratelimit import MemoryAdmissionStore, SharedLimiter, SqliteAdmissionStore
from stemcat.client.ratelimit.rules import AdmissionBook, PacingParams, Reservation
from tests.client.conftest import FakeClock

from .conftest import settle

# A 1 s window: the guard is its floor, 0.1 s, so an answer more than 50 ms after its slot
# (beyond the usual round trip) counts as late.
LIMIT = 50
WINDOW = 1.0
TOLERANCE = 0.05


class LateRecordingStore(MemoryAdmissionStore):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.clock = clock
        self.late: list[tuple[int, float | None]] = []

    async def arrived_late(self, tickets: Sequence[int], ages_s: Sequence[float] | None = None) -> None:
        self.late.extend(zip(tickets, ages_s or [None] * len(tickets), strict=True))
        await super().arrived_late(tickets, ages_s)


class SlowReserveStore(LateRecordingStore):
    """Plans its slots, then takes `delay_s` to answer (a busy store thread, a slow database)."""

    def __init__(self, clock: FakeClock, delay_s: float) -> None:
        super().__init__(clock)
        self.delay_s = delay_s
        self.tickets: list[int] = []

    async def reserve(self, params: PacingParams, count: int, *, first_margin_s: float = 0.0) -> Reservation:
        reservation = await super().reserve(params, count, first_margin_s=first_margin_s)
        self.tickets += [slot.ticket for slot in reservation.slots]
        await self.clock.sleep(self.delay_s)
        return reservation


def limiter_on(store: LateRecordingStore) -> SharedLimiter:
    return SharedLimiter(store, LIMIT, WINDOW, clock=store.clock, sleep=store.clock.sleep)


async def _requests(limiter: SharedLimiter, clock: FakeClock, answer_after_s: Sequence[float]) -> None:
    for delay in answer_after_s:
        await limiter.acquire()
        await clock.sleep(delay)
        limiter.succeeded()
    await settle()  # reports are written by a background task


async def test_a_slow_answer_does_not_hide_a_late_one_after_it() -> None:
    # The first answer is slow (a new connection; its slot is logged half a second late, see
    # COLD_START_MARGIN_S); the second is late by less than that but by more than the tolerance.
    # Measured against the first as "the usual round trip", it would pass unnoticed.
    store = LateRecordingStore(FakeClock())
    limiter = limiter_on(store)
    await _requests(limiter, store.clock, [0.3, 0.15, 0.0, 0.0])
    assert limiter.late_requests == 1
    assert [ticket for ticket, _ in store.late] == [2]
    await limiter.aclose()


async def test_a_late_admission_moves_to_its_answer_less_the_tolerance_not_to_the_answer() -> None:
    store = LateRecordingStore(FakeClock())
    limiter = limiter_on(store)
    await _requests(limiter, store.clock, [0.0, 0.3])
    ((ticket, age),) = store.late
    assert ticket == 2 and age is not None
    # Written right after the answer (no time passes on the fake clock): the age is the tolerance.
    assert age == pytest.approx(TOLERANCE)
    await limiter.aclose()


async def test_lateness_counts_from_when_the_store_may_have_logged_the_slot() -> None:
    # The store logs each slot at once but hands it over 0.2 s later: a request sent and
    # answered right away still reaches the API 0.2 s after its logged slot, which is late.
    store = SlowReserveStore(FakeClock(), 0.2)
    limiter = limiter_on(store)
    await _requests(limiter, store.clock, [0.0, 0.0])  # the first is covered by the cold-start margin
    assert [ticket for ticket, _ in store.late] == store.tickets[1:2]
    await limiter.aclose()


async def test_answers_within_the_usual_round_trip_move_nothing() -> None:
    store = LateRecordingStore(FakeClock())
    limiter = limiter_on(store)
    await _requests(limiter, store.clock, [0.0] * 12)
    assert limiter.late_requests == 0 and store.late == []
    await limiter.aclose()


@pytest.mark.parametrize(("age_s", "third_due"), [(0.2, 0.3 + 1.1), (0.0, 0.5 + 1.1), (5.0, 0.0 + 1.1)])
def test_a_moved_admission_pushes_the_slot_a_window_later_by_its_lateness(age_s: float, third_due: float) -> None:
    params = PacingParams(limit=2, window_s=1.0)  # guarded window 1.1 s, spacing 0.55 s
    book = AdmissionBook()
    first, _second = book.reserve(0.0, params, 2).slots
    # Reported at 0.5: it may have arrived `age_s` earlier (never before its slot, at 0).
    book.arrived_late([first.ticket], now=0.5, ages_s=[age_s])
    (third,) = book.reserve(0.6, params, 1).slots
    assert 0.6 + third.wait_s == pytest.approx(third_due)


def test_ages_must_match_the_tickets() -> None:
    with pytest.raises(ValueError, match="one age per ticket"):
        AdmissionBook().arrived_late([1, 2], now=0.0, ages_s=[0.1])


async def test_the_sqlite_store_moves_admissions_by_their_own_ages(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SqliteAdmissionStore(tmp_path / "rate.sqlite", clock=clock)
    params = PacingParams(limit=2, window_s=1.0)
    first, second = (await store.reserve(params, 2)).slots
    clock.now += 0.5
    await store.arrived_late([first.ticket, second.ticket], [0.2, 10.0])  # first to +0.3; second stays
    (third,) = (await store.reserve(params, 1)).slots
    # A window after the moved first (at +0.3), not after "now" (+0.5) nor its slot (+0).
    assert clock.now + third.wait_s == pytest.approx(1000.0 + 0.3 + params.guarded_window)
    await store.aclose()


async def test_the_postgres_store_moves_admissions_by_their_ages_and_refuses_bad_ones(postgres_url: str) -> None:
    import psycopg

    from stemcat.client.ratelimit.stores.postgres import PostgresAdmissionStore

    async def logged() -> dict[int, float]:
        async with await psycopg.AsyncConnection.connect(postgres_url) as con:
            return dict(await (await con.execute("SELECT ticket, at FROM rate_admissions")).fetchall())

    store = PostgresAdmissionStore(postgres_url, "b" * 32)
    params = PacingParams(limit=2, window_s=1.0, safety=0.1)  # guarded window 1.1 s, spacing 0.55 s
    first, second = (await store.reserve(params, 2)).slots
    before = await logged()
    with pytest.raises(ValueError, match="one age per ticket"):
        await store.arrived_late([first.ticket, second.ticket], [0.1])
    await asyncio.sleep(0.3)
    await store.arrived_late([first.ticket, second.ticket], [0.2, 10.0])  # first to now - 0.2; second stays
    (third,) = (await store.reserve(params, 1)).slots
    await store.aclose()
    after = await logged()
    assert after[second.ticket] == before[second.ticket]
    assert after[first.ticket] >= before[first.ticket] + 0.1 - 1e-6
    # The third is due a window after where the first moved to, on the database's clock, exactly.
    assert after[third.ticket] == pytest.approx(after[first.ticket] + params.guarded_window, abs=1e-6)
