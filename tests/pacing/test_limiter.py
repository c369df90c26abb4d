"""The limiter on an injected clock, budget in memory: exact windows, smooth spacing, adaptive
slow-down, pauses, FIFO. (Moved from tests/client/test_pacing.py, where it tested the former
per-process limiter; `limiter_on` configures the one limiter as that one was.)"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import time

import pytest

from stemcat.client.ratelimit import AdaptiveRate, NoLimiter, SharedLimiter, next_admission_time
from tests.client.conftest import FakeClock

LIMIT = 20
WINDOW = 10.0
NOMINAL = LIMIT / WINDOW


def limiter_on(clock: FakeClock) -> SharedLimiter:
    """A 2% guard and no cold-start margin: the spacing below is exactly WINDOW / LIMIT * 1.02."""
    return SharedLimiter(None, LIMIT, WINDOW, safety=0.02, cold_start_margin_s=0.0, clock=clock, sleep=clock.sleep)


def busiest_window(times: list[float], window: float) -> int:
    """Most admissions inside any half-open interval [t, t + window)."""
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, start + window) - i for i, start in enumerate(ordered))


async def _acquire_recording(limiter: SharedLimiter, clock: FakeClock, log: list[float]) -> None:
    await limiter.acquire()
    log.append(clock.now)


def test_next_admission_time_rules() -> None:
    assert next_admission_time([], 5.0, 3, 10.0, 1.0) == 5.0
    assert next_admission_time([4.5], 5.0, 3, 10.0, 1.0) == 5.5  # spacing
    assert next_admission_time([0.0, 1.0, 2.0], 5.0, 3, 10.0, 1.0) == 10.0  # window
    assert next_admission_time([0.0, 1.0, 2.0], 12.0, 3, 10.0, 1.0) == 12.0
    assert next_admission_time([0.0], 5.0, 3, 10.0, 1.0, not_before=30.0) == 30.0


async def test_no_window_ever_exceeds_the_limit_with_bursts() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    rng = random.Random(7)
    admissions: list[float] = []
    for _round in range(12):
        burst = rng.choice([1, 5, 25, 60])
        await asyncio.gather(*(_acquire_recording(limiter, clock, admissions) for _ in range(burst)))
        clock.now += rng.choice([0.0, 0.3, 4.0, 11.0, 35.0])  # idle between bursts
    assert len(admissions) >= 200
    assert busiest_window(admissions, WINDOW) <= LIMIT
    gaps = [b - a for a, b in itertools.pairwise(admissions)]
    assert min(gaps) >= WINDOW / LIMIT * 1.02 - 1e-9  # smooth: never two admissions closer than the spacing


async def test_steady_rate_is_just_under_nominal() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    admissions: list[float] = []
    await asyncio.gather(*(_acquire_recording(limiter, clock, admissions) for _ in range(400)))
    rate = (len(admissions) - 1) / (admissions[-1] - admissions[0])
    assert NOMINAL * 0.97 <= rate <= NOMINAL
    assert limiter.admitted == 400


async def test_throttle_halves_the_rate_and_success_recovers_it() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    nominal = limiter.current_rate
    assert nominal == pytest.approx(NOMINAL / 1.02)

    limiter.throttled(None)
    assert limiter.current_rate == pytest.approx(nominal / 2)
    assert limiter.throttle_count == 1

    # Admissions really are spaced at the halved rate.
    admissions: list[float] = []
    await asyncio.gather(*(_acquire_recording(limiter, clock, admissions) for _ in range(5)))
    gaps = [b - a for a, b in itertools.pairwise(admissions)]
    assert gaps == pytest.approx([2 / nominal] * 4)

    for _ in range(7):
        limiter.succeeded()
    assert limiter.current_rate < nominal
    limiter.succeeded()
    assert limiter.current_rate == pytest.approx(nominal)
    limiter.succeeded()
    assert limiter.current_rate == pytest.approx(nominal)  # never above nominal


async def test_throttles_floor_at_an_eighth_and_in_flight_echoes_halve_once() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    nominal = limiter.current_rate
    limiter.throttled(None)
    limiter.throttled(None)  # same event reported by another in-flight call
    assert limiter.current_rate == pytest.approx(nominal / 2)
    for _ in range(6):
        clock.now += WINDOW
        limiter.throttled(None)
    assert limiter.current_rate == pytest.approx(nominal / 8)
    assert limiter.throttle_count == 8


async def test_retry_after_blocks_every_admission_until_it_passes() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    await limiter.acquire()
    limiter.throttled(15.0)
    blocked_at = clock.now
    await limiter.acquire()
    assert clock.now - blocked_at >= 15.0


async def test_pause_blocks_all_admissions() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    limiter.paused(60.0)
    start = clock.now
    admissions: list[float] = []
    await asyncio.gather(*(_acquire_recording(limiter, clock, admissions) for _ in range(3)))
    assert min(admissions) >= start + 60.0
    assert limiter.pause_count == 1
    assert limiter.current_rate == pytest.approx(NOMINAL / 1.02)  # a pause is not a slow-down


async def test_a_pause_arriving_while_waiting_is_honoured() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)  # the waiter is now sleeping on the spacing
    limiter.paused(30.0)
    paused_at = clock.now
    await waiter
    assert clock.now >= paused_at + 30.0 - WINDOW / LIMIT * 1.02


async def test_waiters_are_admitted_in_arrival_order() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    order: list[int] = []

    async def take(n: int) -> None:
        await limiter.acquire()
        order.append(n)

    tasks = []
    for n in range(30):
        tasks.append(asyncio.create_task(take(n)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == list(range(30))


async def test_cancelled_waiter_does_not_consume_a_slot() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.admitted == 1
    await limiter.acquire()
    assert limiter.admitted == 2


async def test_real_clock_smoke() -> None:
    limiter = SharedLimiter(None, 5, 0.25)
    start = time.monotonic()
    stamps: list[float] = []

    async def take() -> None:
        await limiter.acquire()
        stamps.append(time.monotonic())

    await asyncio.gather(*(take() for _ in range(11)))
    assert busiest_window(stamps, 0.25) <= 5
    assert time.monotonic() - start >= 10 * 0.25 / 5


async def test_no_limiter_admits_at_once_and_counts() -> None:
    limiter = NoLimiter()
    await asyncio.gather(*(limiter.acquire() for _ in range(100)))
    limiter.throttled(3.0)
    limiter.paused(3.0)
    limiter.succeeded()
    assert (limiter.stats.admitted, limiter.stats.throttled, limiter.stats.paused) == (100, 1, 1)


def test_adaptive_rate_is_pure() -> None:
    rate = AdaptiveRate(cooldown_s=10.0)
    rate.on_throttle(0.0)
    rate.on_throttle(5.0)
    assert rate.factor == 0.5
    rate.on_throttle(10.0)
    assert rate.factor == 0.25
    rate.on_success()
    assert rate.factor == pytest.approx(0.3125)


@pytest.mark.parametrize("options", [{"limit": 0}, {"window_s": 0.0}, {"safety": -0.1}])
def test_invalid_configuration(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SharedLimiter(**options)  # type: ignore[arg-type]
