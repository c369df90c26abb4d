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
    assert stopped_in < 10, stopped_in
    ledger = Ledger(data_dir / "ledger.sqlite")
    try:
        jobs = ledger.jobs_by_status(["intent", "unknown", "not_submitted", "submitted"])
        assert [j.status for j in jobs] == ["not_submitted"]
        assert jobs[0].error_code == 430
        assert sum(ledger.spend_total(run) for run in {j.run_id for j in jobs}) == 0
    finally:
        ledger.close()
    assert sim.ledger() == []
