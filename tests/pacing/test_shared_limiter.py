"""`SharedLimiter` in one process: exact windows, the poll policy, whole-run slow-down, store failures.

On a memory store the limiter runs on a fake clock (no test here waits on the wall clock for
pacing logic); the SQLite variants stay on real time, as the store reads the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from stemcat.client import RateStoreUnavailable
from stemcat.client.ratelimit import (
    MemoryAdmissionStore,
    RequestClass,
    SharedLimiter,
    SqliteAdmissionStore,
    polling,
)
from stemcat.client.ratelimit.rules import PacingParams, PacingState, Reservation
from tests.client.conftest import FakeClock

from .conftest import busiest_window, settle

LIMIT = 10
WINDOW = 1.0


def on_fake_clock(limit: int, window_s: float, **options: float) -> tuple[SharedLimiter, FakeClock]:
    """A limiter with its budget in memory, on a fake clock."""
    clock = FakeClock()
    limiter = SharedLimiter(None, limit, window_s, clock=clock, sleep=clock.sleep, **options)  # type: ignore[arg-type]
    return limiter, clock


def on_store(
    kind: str, tmp_path: Path, limit: int, window_s: float, **options: float
) -> tuple[SharedLimiter, Callable[[], float]]:
    """Memory: on a fake clock. SQLite: on real time (the store reads the wall clock)."""
    if kind == "memory":
        return on_fake_clock(limit, window_s, **options)
    limiter = SharedLimiter(SqliteAdmissionStore(tmp_path / "r"), limit, window_s, **options)  # type: ignore[arg-type]
    return limiter, time.monotonic


async def admit_all(
    limiter: SharedLimiter, n: int, *, poll: bool = False, clock: Callable[[], float] = time.monotonic
) -> list[float]:
    times: list[float] = []

    async def one() -> None:
        if poll:
            with polling():
                await limiter.acquire()
        else:
            await limiter.acquire()
        times.append(clock())

    await asyncio.gather(*(one() for _ in range(n)))
    return times


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_bursts_are_smoothed_and_no_window_exceeds_the_limit(store_kind: str, tmp_path: Path) -> None:
    limiter, clock = on_store(store_kind, tmp_path, LIMIT, WINDOW, safety=0.1)
    times = await admit_all(limiter, 16, clock=clock)
    times += await admit_all(limiter, 4, clock=clock)  # a second burst right after the first
    await limiter.aclose()
    assert busiest_window(times, WINDOW) <= LIMIT
    ordered = sorted(times)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    assert min(gaps) >= 0.8 * 1.1 / LIMIT  # evenly spaced (a 0.1 s guard on a 1 s window)
    # After the first, cold, admission (logged late: see COLD_START_MARGIN_S), close to the cap.
    rate = (len(ordered) - 2) / (ordered[-1] - ordered[1])
    assert 0.85 * LIMIT / 1.1 <= rate <= LIMIT / WINDOW
    assert limiter.admitted == 20


async def test_polls_get_their_share_while_submits_wait_and_everything_when_alone() -> None:
    limiter, _clock = on_fake_clock(200, 1.0, poll_share=0.25)
    order: list[RequestClass] = []

    async def one(kind: RequestClass) -> None:
        if kind is RequestClass.POLL:
            with polling():
                await limiter.acquire()
        else:
            await limiter.acquire()
        order.append(kind)

    await asyncio.gather(*(one(RequestClass.POLL) for _ in range(60)), *(one(RequestClass.SUBMIT) for _ in range(60)))
    contended = order[:60]  # both kinds were waiting throughout
    polls = contended.count(RequestClass.POLL)
    assert 12 <= polls <= 18  # about a quarter
    assert order[-10:] == [RequestClass.POLL] * 10  # once submits are done, polls take the whole budget
    assert limiter.granted_by_class == {RequestClass.SUBMIT: 60, RequestClass.POLL: 60}
    await limiter.aclose()


async def test_zero_poll_share_serves_submits_first() -> None:
    limiter, _clock = on_fake_clock(500, 1.0, poll_share=0.0)
    order: list[str] = []

    async def poll() -> None:
        with polling():
            await limiter.acquire()
        order.append("poll")

    async def submit() -> None:
        await limiter.acquire()
        order.append("submit")

    await asyncio.gather(*(poll() for _ in range(5)), *(submit() for _ in range(5)))
    assert order[1:6].count("submit") >= 4  # the very first slot may go out before submits queue
    await limiter.aclose()


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
async def test_throttle_slows_every_waiter_and_honours_retry_after(store_kind: str, tmp_path: Path) -> None:
    limiter, clock = on_store(store_kind, tmp_path, 20, 1.0)
    await admit_all(limiter, 3, clock=clock)
    throttled_at = clock()
    limiter.throttled(0.4)
    times = await admit_all(limiter, 6, clock=clock)
    assert min(times) - throttled_at >= 0.38
    gaps = [b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False)]
    assert min(gaps) >= 0.9 * 2 * 1.02 / 20  # half the rate
    assert limiter.current_rate == pytest.approx(20 / 1.02 / 2, rel=0.2)
    assert limiter.throttle_count == 1
    await limiter.aclose()


async def test_pause_holds_every_request_then_resumes() -> None:
    limiter, clock = on_fake_clock(50, 1.0)
    await admit_all(limiter, 1, clock=clock)
    paused_at = clock()
    limiter.paused(0.3)
    times = await admit_all(limiter, 3, clock=clock)
    assert min(times) - paused_at >= 0.28
    assert limiter.pause_count == 1
    await limiter.aclose()


async def test_successes_recover_the_rate_step_by_step() -> None:
    limiter, _clock = on_fake_clock(100, 1.0)
    limiter.throttled(None)
    await admit_all(limiter, 1)
    slow = limiter.current_rate
    for _ in range(4):
        limiter.succeeded()
    await settle()  # the recovery is written by a background task
    await admit_all(limiter, 1)
    assert slow < limiter.current_rate < limiter.nominal_rate / 1.02 + 1e-9
    await limiter.aclose()


async def test_cancelled_waiters_do_not_block_the_queue() -> None:
    limiter, clock = on_fake_clock(5, 1.0)  # a slot every 0.22 s
    await admit_all(limiter, 2)
    started = clock()
    doomed = [asyncio.create_task(limiter.acquire()) for _ in range(3)]
    await settle(2)  # they wait; the dispatcher has reserved a slot and sleeps until it is due
    for task in doomed:
        task.cancel()
    await asyncio.wait_for(limiter.acquire(), timeout=2.0)
    assert clock() - started < 0.4  # the next slot, not the fourth
    await limiter.aclose()


class BrokenStore(MemoryAdmissionStore):
    async def reserve(self, params: PacingParams, count: int, *, first_margin_s: float = 0.0) -> Reservation:
        raise OSError("disk on fire")


async def test_a_failing_store_fails_the_waiters_with_a_not_sent_error() -> None:
    limiter = SharedLimiter(BrokenStore(), 5, 1.0)
    with pytest.raises(RateStoreUnavailable) as caught:
        await limiter.acquire()
    assert caught.value.request_sent is False  # the client may safely retry even a paid submit
    await limiter.aclose()


class CountingStore(MemoryAdmissionStore):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.recoveries = 0

    async def recover(self, params: PacingParams, successes: int) -> PacingState:
        self.recoveries += 1
        return await super().recover(params, successes)

    async def claim(self, tickets: Sequence[int]) -> set[int]:
        return await super().claim(tickets)


async def test_success_at_full_rate_writes_nothing_to_the_store() -> None:
    clock = FakeClock()
    store = CountingStore(clock)
    limiter = SharedLimiter(store, 100, 1.0, clock=clock, sleep=clock.sleep)
    await admit_all(limiter, 3)
    for _ in range(10):
        limiter.succeeded()
    await settle()
    assert store.recoveries == 0
    await limiter.aclose()


class LateRecordingStore(MemoryAdmissionStore):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.late: list[int] = []

    async def arrived_late(self, tickets: Sequence[int], ages_s: Sequence[float] | None = None) -> None:
        self.late.extend(tickets)
        await super().arrived_late(tickets, ages_s)


async def test_a_request_answered_late_has_its_admission_moved_and_only_that_one() -> None:
    clock = FakeClock()
    store = LateRecordingStore(clock)
    limiter = SharedLimiter(store, 50, 1.0, clock=clock, sleep=clock.sleep)
    for stall_s in (0.0, 0.0, 0.3, 0.0):  # the third request is held up (a busy event loop)
        await limiter.acquire()
        await clock.sleep(stall_s)
        limiter.succeeded()
    await settle()  # written by a background task
    assert limiter.late_requests == 1 and len(store.late) == 1
    await limiter.aclose()
