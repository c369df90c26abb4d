"""Every documented error code, injected into the simulator, yields the documented behaviour."""

from __future__ import annotations

from collections import Counter

import pytest

from stemcat.catalog import Ledger
from stemcat.sim import FaultSpec, make_tracks_manifest

from .conftest import run_flow

pytestmark = pytest.mark.e2e


def _setup(sim, tmp_path, n=3):
    manifest = make_tracks_manifest(sim, n, tmp_path / "m.csv", types=("separate_vocal",))
    rows = manifest.read_text().splitlines()[1:]
    first_audio = rows[0].split(",")[1]
    return manifest, first_audio, tmp_path / "data"


def _jobs(data_dir):
    ledger = Ledger(data_dir / "ledger.sqlite")
    try:
        return {j.audio_id: j for j in ledger.jobs_by_status(
            ["intent", "submitted", "succeeded", "failed", "unknown", "not_submitted", "downloaded", "expired"])}
    finally:
        ledger.close()


@pytest.mark.parametrize("as_json", [False, True], ids=["http", "json"])
@pytest.mark.parametrize("code", [400, 404, 413])
def test_item_fatal_submit_codes_fail_that_item_only(sim, tmp_path, code, as_json):
    manifest, target, data_dir = _setup(sim, tmp_path)
    sim.inject(FaultSpec(route="generate", code=code, as_json=as_json, match=target))
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 1
    jobs = _jobs(data_dir)
    assert jobs[target].status == "not_submitted" and jobs[target].error_code == code
    assert sorted(j.status for a, j in jobs.items() if a != target) == ["downloaded", "downloaded"]
    assert {c.audio_id for c in sim.ledger()} == set(jobs) - {target}
    assert summary["credits_committed"] == 2


@pytest.mark.parametrize("as_json", [False, True], ids=["http", "json"])
@pytest.mark.parametrize("code", [405, 430, 455])
def test_throttle_and_maintenance_codes_are_retried_and_paid_once(sim, tmp_path, code, as_json):
    manifest, target, data_dir = _setup(sim, tmp_path)
    sim.inject(FaultSpec(route="generate", code=code, as_json=as_json, times=2, retry_after=0.2, match=target))
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 0, summary
    assert Counter(c.audio_id for c in sim.ledger())[target] == 1
    assert len(sim.ledger()) == 3


@pytest.mark.parametrize("as_json", [False, True], ids=["http", "json"])
def test_unauthorized_stops_the_whole_run(sim, tmp_path, as_json):
    manifest, _, data_dir = _setup(sim, tmp_path)
    sim.inject(FaultSpec(route="generate", code=401, as_json=as_json, times=-1))
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 4
    assert sim.ledger() == []
    assert "401" in summary["error"] or "nauthori" in summary["error"]


def test_insufficient_credits_stops_paying_but_finishes_what_was_paid(sim, tmp_path):
    manifest, _, data_dir = _setup(sim, tmp_path, n=5)
    sim.set_balance(2)
    summary = run_flow(manifest, data_dir, sim.base_url, allow_partial=True, concurrency=1, batch_size=5)
    assert summary["exit_code"] == 3
    paid = {c.audio_id for c in sim.ledger()}
    assert len(paid) == 2
    jobs = _jobs(data_dir)
    assert {a for a, j in jobs.items() if j.status == "downloaded"} == paid


def test_429_mid_run_stops_submitting(sim, tmp_path):
    manifest, target, data_dir = _setup(sim, tmp_path, n=4)
    sim.inject(FaultSpec(route="generate", code=429, times=-1, match=target))
    summary = run_flow(manifest, data_dir, sim.base_url, concurrency=1, batch_size=1)
    assert summary["exit_code"] == 3
    assert summary["stop_reason"].startswith("out of credits")
    assert target not in {c.audio_id for c in sim.ledger()}


def test_ambiguous_submit_that_was_charged_is_settled_by_its_callback_not_paid_again(sim, tmp_path):
    manifest, target, data_dir = _setup(sim, tmp_path)
    sim.inject(FaultSpec(route="generate", code=500, after_accept=True, match=target))
    first = run_flow(manifest, data_dir, sim.base_url)
    assert first["exit_code"] == 1 and first["counts"]["unknown"] == 1
    assert _jobs(data_dir)[target].status == "unknown"
    charges = len(sim.ledger())
    assert charges == 3  # the simulator did charge the ambiguous submit
    second = run_flow(manifest, data_dir, sim.base_url)
    # The callback (carrying the job's token) named the remote task: polled and downloaded, for free.
    assert second["reconciled"].get("matched_by_callback") == 1
    assert len(sim.ledger()) == charges and second["exit_code"] == 0
    assert _jobs(data_dir)[target].status == "downloaded"


def test_ambiguous_submit_without_callback_stays_unknown_and_is_never_resent(sim, tmp_path):
    manifest, target, data_dir = _setup(sim, tmp_path)
    sim.inject(FaultSpec(route="generate", code=500, after_accept=False, match=target))
    first = run_flow(manifest, data_dir, sim.base_url)
    assert first["exit_code"] == 1 and first["counts"]["unknown"] == 1
    second = run_flow(manifest, data_dir, sim.base_url)
    assert len(sim.ledger()) == 2
    assert second["counts"].get("skip_unknown") == 1 and second["exit_code"] == 1
    assert second["plan"]["skipped_cost"] == {"unknown": 1}


def test_source_download_failure_451_fails_the_job(sim, tmp_path):
    manifest, target, data_dir = _setup(sim, tmp_path)
    sim.inject(FaultSpec(route="generate", code=451, match=target))
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 1
    job = _jobs(data_dir)[target]
    assert job.status == "failed" and job.error_code == 451


@pytest.mark.parametrize("code", [500, 430, 455])
def test_polls_are_retried_on_transient_codes(sim, tmp_path, code):
    manifest, _, data_dir = _setup(sim, tmp_path)
    sim.inject(FaultSpec(route="record_info", code=code, times=3, retry_after=0.1))
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 0, summary
    assert len(sim.ledger()) == 3


def test_truncated_download_resumes_and_verifies(sim, tmp_path):
    manifest, _, data_dir = _setup(sim, tmp_path, n=2)
    sim.inject(FaultSpec(route="file", truncate_at=1000, times=2))
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 0, summary
    assert not list(data_dir.rglob("*.part"))


def test_slow_credit_endpoint_does_not_block_the_run(sim, tmp_path):
    manifest, _, data_dir = _setup(sim, tmp_path, n=1)
    sim.inject(FaultSpec(route="credit", code=500, times=-1))
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 0 and summary["balance_before"] is None


def test_unauthorized_on_the_first_call_ends_cleanly(sim, tmp_path):
    manifest, _, data_dir = _setup(sim, tmp_path, n=1)
    sim.inject(FaultSpec(route="credit", code=401, times=-1))
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 4 and sim.ledger() == []
