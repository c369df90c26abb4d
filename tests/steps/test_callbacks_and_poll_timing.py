"""One request per job: a verified callback settles its job without a poll; polls are timed from latencies."""

from __future__ import annotations

import asyncio

from stemcat.catalog import JobStatus
from stemcat.tasks.separation.downloads import download_job
from stemcat.tasks.separation.poll_timing import PROBE_INITIAL_S
from stemcat.tasks.separation.polling import await_one
from stemcat.tasks.separation.submit import submit_one

from .conftest import (
    RECORD_INFO,
    SUBMIT,
    FakeSeparations,
    Harness,
    callback_payload,
    item,
    ok_submit,
    open_harness,
    record,
    stem_files,
)
from tests.servers.ledgers import LedgerTarget

LATE = dict(poll_initial_s=30.0, poll_max_s=30.0)  # no poll falls due within a test


async def test_a_callback_naming_the_jobs_task_settles_it_and_its_stems_download_without_a_poll(
    harness: Harness,
) -> None:
    harness.ctx.options.poll_initial_s = harness.ctx.options.poll_max_s = 30.0
    harness.api.on(SUBMIT, ok_submit("remote-1"))
    stem_files(harness.api, "remote-1")
    job_id, remote = await submit_one(harness.ctx, item())
    waiting = asyncio.create_task(await_one(harness.ctx, job_id, first_poll_now=False, remote_task_id=remote,
                                            separation_type="separate_vocal"))
    await asyncio.sleep(0.01)
    harness.ctx.hub.notify(job_id, callback_payload("remote-1"))
    assert await asyncio.wait_for(waiting, timeout=2) == JobStatus.SUCCEEDED
    assert await download_job(harness.ctx, job_id) == JobStatus.DOWNLOADED
    assert harness.api.calls(RECORD_INFO) == 0 and harness.api.calls(SUBMIT) == 1


async def test_a_callback_that_arrives_before_the_job_waits_is_not_lost(harness: Harness) -> None:
    harness.ctx.options.poll_initial_s = harness.ctx.options.poll_max_s = 30.0
    harness.api.on(SUBMIT, ok_submit("remote-1"))
    job_id, remote = await submit_one(harness.ctx, item())
    harness.ctx.hub.notify(job_id, callback_payload("remote-1"))
    await asyncio.sleep(0)  # delivered to the loop before anyone waits
    status = await asyncio.wait_for(await_one(harness.ctx, job_id, first_poll_now=False, remote_task_id=remote,
                                              separation_type="separate_vocal"), timeout=2)
    assert status == JobStatus.SUCCEEDED and harness.api.calls(RECORD_INFO) == 0


async def test_a_callback_for_another_task_changes_nothing_and_the_job_is_polled(harness: Harness) -> None:
    harness.api.on(SUBMIT, ok_submit("remote-1"))
    harness.api.on(RECORD_INFO, record("remote-1"))
    job_id, remote = await submit_one(harness.ctx, item())
    harness.ctx.hub.notify(job_id, callback_payload("someone-else"))
    await asyncio.sleep(0)
    status = await await_one(harness.ctx, job_id, first_poll_now=False, remote_task_id=remote,
                             separation_type="separate_vocal")
    assert status == JobStatus.SUCCEEDED
    assert harness.api.calls(RECORD_INFO) == 1 and harness.ctx.counts["callbacks_mismatched"] == 1
    assert all(stem.url.startswith("https://files.test/v/remote-1/") for stem in harness.ledger.stems_for_job(job_id))


async def test_a_failure_callback_fails_the_job_without_a_poll(harness: Harness) -> None:
    harness.ctx.options.poll_initial_s = harness.ctx.options.poll_max_s = 30.0
    harness.api.on(SUBMIT, ok_submit("remote-1"))
    job_id, remote = await submit_one(harness.ctx, item())
    failed = {"code": 451, "msg": "Download Failed", "data": {"task_id": "remote-1", "vocal_removal_info": None}}
    harness.ctx.hub.notify(job_id, failed)
    status = await asyncio.wait_for(await_one(harness.ctx, job_id, first_poll_now=False, remote_task_id=remote,
                                              separation_type="separate_vocal"), timeout=2)
    assert status == JobStatus.FAILED and harness.job().error_code == 451
    assert harness.api.calls(RECORD_INFO) == 0


async def _separate(harness: Harness, jobs: int, first: int = 1) -> list[str]:
    async def one(n: int) -> str:
        job_id, remote = await submit_one(harness.ctx, item(n))
        return await await_one(harness.ctx, job_id, first_poll_now=False, remote_task_id=remote,
                               separation_type="separate_vocal")

    return await asyncio.gather(*(one(n) for n in range(first, first + jobs)))


async def test_without_callbacks_most_jobs_finish_with_one_poll(ledger_target: LedgerTarget) -> None:
    fake = FakeSeparations(latency_s=0.2)
    async with open_harness(fake.api, ledger_target, poll_initial_s=None, poll_max_s=5.0) as harness:
        assert set(await _separate(harness, 20)) == {JobStatus.SUCCEEDED}
        polls = fake.api.calls(RECORD_INFO)
    assert fake.api.calls(SUBMIT) == 20
    assert polls <= 22, polls  # one each, plus the probe's early polls while nothing was known


async def test_the_ledgers_history_times_the_first_poll_of_the_next_run(ledger_target: LedgerTarget) -> None:
    # Slower than the probe's first poll: without the history, the probe would poll twice.
    fake = FakeSeparations(latency_s=PROBE_INITIAL_S + 0.1)
    async with open_harness(fake.api, ledger_target, poll_initial_s=None, poll_max_s=5.0) as harness:
        await _separate(harness, 3)
    assert fake.api.calls(RECORD_INFO) > 3
    fake = FakeSeparations(latency_s=PROBE_INITIAL_S + 0.1)
    async with open_harness(fake.api, ledger_target, run_id="run-2", poll_initial_s=None,
                            poll_max_s=5.0) as harness:
        assert set(await _separate(harness, 10, first=4)) == {JobStatus.SUCCEEDED}
    assert fake.api.calls(RECORD_INFO) == 10  # no probe: the history said when to poll


async def test_with_callbacks_no_job_is_polled(ledger_target: LedgerTarget) -> None:
    fake = FakeSeparations(latency_s=0.05)
    async with open_harness(fake.api, ledger_target, poll_initial_s=None, poll_max_s=5.0,
                            callback_url="http://receiver.test") as harness:
        fake.hub = harness.ctx.hub
        assert set(await _separate(harness, 20)) == {JobStatus.SUCCEEDED}
    assert fake.api.calls(SUBMIT) == 20 and fake.api.calls(RECORD_INFO) == 0


async def test_a_fixed_poll_initial_overrides_the_estimate(ledger_target: LedgerTarget) -> None:
    fake = FakeSeparations(latency_s=0.0)
    async with open_harness(fake.api, ledger_target, poll_initial_s=0.3, poll_max_s=5.0) as harness:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await _separate(harness, 1)
        assert loop.time() - started >= 0.3
