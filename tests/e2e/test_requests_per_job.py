"""One request per job: what a finished job costs in API requests, with and without callbacks.

Separations finish in 0.5 s. The ideal is one request per job (its submit) when callbacks come
and two (submit and one poll) when they do not; the run's two balance reads and the probe's
early poll are all that may come on top.
"""

from __future__ import annotations

import sqlite3

import pytest

from stemcat.sim import SimConfig, SimServer, make_tracks_manifest

from .conftest import run_flow

pytestmark = pytest.mark.e2e

TRACKS = 80
UNREACHABLE_RECEIVER = "http://127.0.0.1:9"  # discard port: the simulator's callbacks never arrive


def test_requests_per_finished_job_with_and_without_callbacks(render_cache, tmp_path):
    config = SimConfig(seed=11, processing_s=(0.5, 0.5), min_duration_s=0.5, max_duration_s=1.0, rate_limit=None,
                       cache_dir=render_cache)
    with SimServer(config, port=0) as sim:
        manifest = make_tracks_manifest(sim, TRACKS, tmp_path / "m.csv", types=("separate_vocal",))
        common = dict(poll_initial_s=None, poll_max_s=30.0, analyze=False, batch_size=20, concurrency=3)
        with_callbacks = run_flow(manifest, tmp_path / "a", sim.base_url, **common)
        without = run_flow(manifest, tmp_path / "b", sim.base_url, callback_url=UNREACHABLE_RECEIVER, **common)
    for summary in (with_callbacks, without):
        assert summary["exit_code"] == 0, summary
        assert summary["jobs_finished"] == TRACKS and summary["requests"]["submit"] == TRACKS
        assert summary["requests"]["balance"] == 2
    print("requests per finished job:", with_callbacks["requests_per_job"], with_callbacks["requests"],
          without["requests_per_job"], without["requests"])
    assert with_callbacks["requests_per_job"] <= 1.05, with_callbacks["requests"]
    assert without["requests_per_job"] <= 2.1, without["requests"]
    with sqlite3.connect(tmp_path / "b" / "ledger.sqlite") as con:  # the counts are in the runs table too
        row = con.execute("SELECT n_jobs_finished, n_requests_submit, n_requests_poll, n_requests_balance,"
                          " n_requests_other FROM runs").fetchone()
    assert row == (TRACKS, TRACKS, without["requests"]["poll"], 2, without["requests"]["other"])
