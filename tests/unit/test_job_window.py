"""The run's job window: a job starts as soon as any other ends, whichever batch it is in."""

from __future__ import annotations

import asyncio

import pytest

from stemcat.tasks.separation.window import JobWindow


async def _run_batch(window: JobWindow, entry, durations: dict[str, float], log: list[tuple[str, str]]) -> None:
    async def job(name: str) -> None:
        async with window.job(entry):
            log.append(("start", name))
            await asyncio.sleep(durations[name])
            log.append(("end", name))

    await asyncio.gather(*(job(name) for name in durations))


async def test_the_next_batch_starts_when_slots_free_not_when_the_slow_job_of_the_last_batch_ends():
    window = JobWindow(2)
    log: list[tuple[str, str]] = []
    first = await window.enter(2)
    running = asyncio.create_task(_run_batch(window, first, {"a-fast": 0.01, "a-slow": 0.3}, log))
    second = await window.enter(1)  # the first batch's jobs hold both slots: let in at once
    await _run_batch(window, second, {"b": 0.01}, log)
    assert log.index(("start", "b")) > log.index(("end", "a-fast"))
    assert ("end", "a-slow") not in log  # b ran in the slot a-fast gave back
    await running
    assert window.in_flight == 0


async def test_never_more_jobs_in_flight_than_the_window():
    window = JobWindow(3)
    peak = 0

    async def batch(jobs: int) -> None:
        nonlocal peak
        entry = await window.enter(jobs)

        async def job() -> None:
            nonlocal peak
            async with window.job(entry):
                peak = max(peak, window.in_flight)
                await asyncio.sleep(0.001)

        asyncio.ensure_future(asyncio.gather(*(job() for _ in range(jobs))))

    for _ in range(5):
        await batch(2)
    while window.in_flight:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.02)
    assert peak == 3


async def _second_batch_kept_waiting(window: JobWindow, first_jobs: int):
    """Admit a first batch of `first_jobs`, then start a second one's entry, checked to be waiting."""
    first = await window.enter(first_jobs)
    entering = asyncio.create_task(window.enter(1))
    await asyncio.sleep(0.01)
    assert not entering.done()
    return first, entering


async def test_a_batch_waits_to_enter_until_every_job_of_the_previous_one_holds_a_slot():
    window = JobWindow(1)
    first, entering = await _second_batch_kept_waiting(window, 2)
    hold = asyncio.Event()

    async def job() -> None:
        async with window.job(first):
            await hold.wait()

    jobs = [asyncio.create_task(job()) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert not entering.done()  # one of the first batch's jobs still waits for the only slot
    hold.set()
    await asyncio.gather(*jobs)
    await asyncio.wait_for(entering, 1)


async def test_a_batch_that_ends_early_lets_the_next_one_in():
    first, entering = await _second_batch_kept_waiting(JobWindow(4), 3)
    first.close()  # its task failed before starting its jobs
    await asyncio.wait_for(entering, 1)


def test_a_window_has_room_for_one_job_at_least():
    with pytest.raises(ValueError):
        JobWindow(0)
