"""Stopping a run: cancellation while the API asked to wait, and the closing balance read."""

from __future__ import annotations

import asyncio
import time

import pytest

from stemcat.catalog import Ledger
from stemcat.sim import FaultSpec, make_tracks_manifest

from .conftest import FAST

pytestmark = pytest.mark.e2e


async def _wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the simulator")
        await asyncio.sleep(0.05)


def test_cancelled_run_with_a_long_retry_after_stops_in_seconds_and_the_refused_submit_is_not_submitted(
    sim, tmp_path
):
    from stemcat.flows.separate import separate_manifest

    manifest = make_tracks_manifest(sim, 1, tmp_path / "m.csv", types=("separate_vocal",))
    data_dir = tmp_path / "data"
    sim.inject(FaultSpec(route="generate", code=430, retry_after=600, times=-1))

    def refused() -> bool:
        return sim.stats().requests_by_route_and_status.get("generate", {}).get("430", 0) >= 1

    async def cancel_after_refusal() -> float:
        run = asyncio.create_task(separate_manifest(
            manifest=str(manifest), data_dir=str(data_dir), base_url=sim.base_url, **FAST))
        await _wait_for(refused)
        await asyncio.sleep(0.3)  # the client is now waiting out the Retry-After
        started = time.monotonic()
        run.cancel()
        with pytest.raises(BaseException):
            await run
        return time.monotonic() - started

    stopped_in = asyncio.run(cancel_after_refusal())
    assert stopped_in < 8, stopped_in  # the closing balance read gives up after 1 s
    ledger = Ledger(data_dir / "ledger.sqlite")
    try:
        jobs = ledger.jobs_by_status(["intent", "unknown", "not_submitted", "submitted"])
        assert [j.status for j in jobs] == ["not_submitted"]
        assert jobs[0].error_code == 430
        assert sum(ledger.spend_total(run) for run in {j.run_id for j in jobs}) == 0
    finally:
        ledger.close()
    assert sim.ledger() == []


def test_a_success_missing_stems_is_incomplete_then_completed_for_free_by_the_next_run(sim, tmp_path):
    from .conftest import run_flow

    manifest = make_tracks_manifest(sim, 1, tmp_path / "m.csv", types=("split_stem",))
    data_dir = tmp_path / "data"
    # Both channels lack 9 of the 12 stems: the callback (which would settle the job without a poll) and record-info.
    sim.inject(FaultSpec(route="callback", stems_listed=3, times=-1))
    sim.inject(FaultSpec(route="record_info", stems_listed=3, times=-1))
    first = run_flow(manifest, data_dir, sim.base_url)
    assert first["exit_code"] == 1 and first["counts"].get("incomplete") == 1, first
    ((key, missing),) = first["incomplete"].items()
    assert key.endswith("/split_stem") and len(missing) == 9 and "fx" in missing
    assert first["credits_committed"] == 5 and len(sim.ledger()) == 1
    submits = sim.stats().requests_by_route.get("generate", 0)
    assert submits == 1

    sim.clear_faults()
    second = run_flow(manifest, data_dir, sim.base_url)
    assert second["exit_code"] == 0, second
    assert second["incomplete"] == {} and second["credits_committed"] == 0
    assert len(sim.ledger()) == 1 and sim.stats().requests_by_route.get("generate", 0) == submits
    ledger = Ledger(data_dir / "ledger.sqlite")
    try:
        (job,) = ledger.jobs_by_status(["downloaded"])
        assert job.missing == [] and len(ledger.stems_for_job(job.job_id)) == 12
        assert ledger.spend_total() == 5
    finally:
        ledger.close()


def test_a_job_whose_status_cannot_be_read_is_in_the_summary_and_fails_the_run(sim, tmp_path):
    from .conftest import run_flow

    manifest = make_tracks_manifest(sim, 2, tmp_path / "m.csv", types=("separate_vocal",))
    sim.inject(FaultSpec(route="record_info", code=400, times=-1))  # every status answer refused
    summary = run_flow(manifest, tmp_path / "data", sim.base_url)
    assert summary["counts"]["submitted"] == 2 and summary["counts"].get("poll_error") == 2, summary
    # Both jobs stay submitted (the next run polls them, never pays again) and the summary says so.
    assert summary["jobs"] == {"submitted": 2} and summary["exit_code"] == 1
