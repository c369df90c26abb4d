"""Submit, poll, download and settle, one job at a time, against a scripted API: what is paid, what is sent."""

from __future__ import annotations

import httpx
import pytest

from stemcat.catalog import JobStatus
from stemcat.client import CREDITS_PER_TYPE, SeparationType
from stemcat.tasks.separation.actions import Action
from stemcat.tasks.separation.pipeline import run_job
from stemcat.tasks.separation.planning import classify
from stemcat.tasks.separation.submit import submit_one
from stemcat.tasks.tracks import TrackKey

from .conftest import RECORD_INFO, SUBMIT, Harness, item, ok_submit, record, stem_files

CREDITS = CREDITS_PER_TYPE[SeparationType.SEPARATE_VOCAL]


def replan(harness: Harness, n: int = 1) -> str:
    key = TrackKey(audio_id=f"audio-{n}", task_id=f"task-{n}", separation_type="separate_vocal")
    (planned,) = classify(harness.ledger, [key], harness.ctx.options.policy)
    return planned.action


async def test_a_500_after_the_request_was_sent_leaves_the_job_unknown_and_nothing_is_sent_again(
    harness: Harness,
) -> None:
    harness.api.on(SUBMIT, httpx.Response(500, json={"code": 500, "msg": "oops"}))
    assert await submit_one(harness.ctx, item()) is None
    await harness.ctx.writes.drain()
    job = harness.job()
    assert job.status is JobStatus.UNKNOWN
    assert harness.ledger.spend_total() == CREDITS  # maybe charged: the spend row stays
    assert harness.ctx.counts["unknown"] == 1
    # A rerun plans no payment for it, and running that plan sends nothing.
    assert replan(harness) == Action.SKIP_UNKNOWN
    assert await run_job(harness.ctx, item(action=Action.SKIP_UNKNOWN, status=JobStatus.UNKNOWN)) is None
    assert harness.api.calls(SUBMIT) == 1


@pytest.mark.parametrize("code", [405, 430, 455])
async def test_not_executed_codes_leave_the_job_not_submitted_and_release_its_credits(
    harness: Harness, code: int
) -> None:
    harness.api.on(SUBMIT, httpx.Response(code, json={"code": code, "msg": "not now"}))
    assert await submit_one(harness.ctx, item()) is None
    await harness.ctx.writes.drain()
    assert harness.job().status is JobStatus.NOT_SUBMITTED
    assert harness.ledger.spend_total() == 0
    assert harness.ctx.budget.committed == 0
    assert replan(harness) == Action.SUBMIT  # the API did not execute it: it may be paid for later


async def test_success_after_a_pending_poll_then_the_stems_are_downloaded(harness: Harness) -> None:
    harness.api.on(SUBMIT, ok_submit("remote-1"))
    harness.api.on(RECORD_INFO, record("remote-1", "PENDING"), record("remote-1"))
    stem_files(harness.api, "remote-1")
    job_id, status = await run_job(harness.ctx, item())
    assert status == JobStatus.DOWNLOADED
    job = harness.job()
    assert job.job_id == job_id and job.status is JobStatus.DOWNLOADED
    stems = harness.ledger.stems_for_job(job_id)
    assert {s.stem for s in stems} == {"vocals", "instrumental"}
    assert all((harness.ctx.options.data_dir / s.path).is_file() for s in stems)
    assert harness.api.calls(SUBMIT) == 1 and harness.api.calls(RECORD_INFO) == 2
    assert harness.ledger.spend_total() == CREDITS


async def test_a_failed_separation_is_recorded_and_not_downloaded(harness: Harness) -> None:
    harness.api.on(SUBMIT, ok_submit("remote-1"))
    harness.api.on(RECORD_INFO, record("remote-1", "CREATE_TASK_FAILED"))
    assert await run_job(harness.ctx, item()) is None
    assert harness.job().status is JobStatus.FAILED
    assert replan(harness) == Action.SKIP_FAILED
