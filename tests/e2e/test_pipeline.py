"""The foundation's promises, checked over loopback HTTP against the simulator."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
import soundfile as sf

from stemcat.catalog import Ledger, open_catalog
from stemcat.catalog.duckdb_views import connect_catalog_file
from stemcat.client import STEMS_BY_TYPE, SeparationType
from stemcat.sim import make_tracks_manifest

from .conftest import run_flow

pytestmark = pytest.mark.e2e


def _charges_by_key(sim):
    return Counter((c.audio_id, c.type) for c in sim.ledger())


def test_mixed_manifest_yields_exact_stems_durations_and_spend(sim, tmp_path):
    manifest = make_tracks_manifest(sim, 20, tmp_path / "m.csv", types=("separate_vocal", "split_stem"))
    data_dir = tmp_path / "data"
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 0, summary
    con = open_catalog(data_dir)
    stems = con.execute(
        "SELECT audio_id, separation_type, stem, path, bytes, sha256, duration_s, sample_rate, channels "
        "FROM stems WHERE status = 'downloaded'"
    ).fetchall()
    jobs = con.execute("SELECT audio_id, separation_type, status FROM jobs").fetchall()
    assert len(jobs) == 20 and {j[2] for j in jobs} == {"downloaded"}
    by_job: dict[tuple[str, str], set[str]] = {}
    for audio_id, stype, stem, path, nbytes, sha, duration, rate, channels in stems:
        by_job.setdefault((audio_id, stype), set()).add(stem)
        file = data_dir / path
        assert file.stat().st_size == nbytes
        assert hashlib.sha256(file.read_bytes()).hexdigest() == sha
        truth = sim.truth(audio_id)
        assert abs(duration - truth.duration_s) <= 0.05
        info = sf.info(file)
        assert (info.samplerate, info.channels) == (rate, channels) == (truth.sample_rate, truth.channels)
    for (audio_id, stype), names in by_job.items():
        assert names == {str(s) for s in STEMS_BY_TYPE[SeparationType(stype)]}, (audio_id, stype)
    assert len(by_job) == 20
    charged = sum(c.credits for c in sim.ledger())
    assert charged == summary["credits_committed"] == con.execute("SELECT sum(credits) FROM spend").fetchone()[0]
    assert max(_charges_by_key(sim).values()) == 1

    # A rerun of the same manifest charges nothing and keeps every stem.
    before = len(sim.ledger())
    again = run_flow(manifest, data_dir, sim.base_url)
    assert again["exit_code"] == 0 and len(sim.ledger()) == before
    assert again["counts"].get("submitted", 0) == 0

    # The DuckDB file answers from another connection, read-only.
    with connect_catalog_file(data_dir) as db:
        assert db.execute("SELECT count(*) FROM stems").fetchone()[0] == len(stems)


def test_bad_rows_are_set_aside_and_the_rest_complete(sim, tmp_path):
    good = make_tracks_manifest(sim, 3, tmp_path / "good.csv", types=("separate_vocal",))
    lines = good.read_text().splitlines()
    header = lines[0].split(",")
    bad_type = lines[1].split(",")
    bad_type[header.index("type")] = "karaoke"
    missing_task = lines[2].split(",")
    missing_task[header.index("task_id")] = ""
    manifest = tmp_path / "mixed.csv"
    manifest.write_text("\n".join([lines[0], lines[1], ",".join(bad_type), ",".join(missing_task), lines[3],
                                   lines[1]]) + "\n")
    data_dir = tmp_path / "data"
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 0
    assert summary["plan"]["rows"] == 2 and summary["plan"]["rejected"] == 3
    rejects = (data_dir / "rejects").glob("*.csv")
    text = next(rejects).read_text()
    for line, reason in [(3, "karaoke"), (4, "task_id"), (6, "duplicate of line 2")]:
        assert any(r.startswith(f"{line},") and reason in r for r in text.splitlines()), text
    assert len(sim.ledger()) == 2


def test_task_only_rows_expand_to_every_audio_variation(sim, tmp_path):
    manifest = make_tracks_manifest(sim, 4, tmp_path / "m.csv", types=("separate_vocal",), with_audio_id=False)
    summary = run_flow(manifest, tmp_path / "data", sim.base_url)
    assert summary["exit_code"] == 0
    charged = {c.audio_id for c in sim.ledger()}
    assert summary["plan"]["keys"] == len(charged) >= 4


def test_timed_out_job_stays_submitted_and_is_polled_not_paid_next_run(render_cache, tmp_path):
    from stemcat.sim import SimConfig, SimServer

    slow = SimConfig(seed=11, processing_s=(3.0, 3.0), rate_limit=None, cache_dir=render_cache)
    with SimServer(slow, port=0) as sim:
        manifest = make_tracks_manifest(sim, 2, tmp_path / "m.csv", types=("separate_vocal",))
        data_dir = tmp_path / "data"
        first = run_flow(manifest, data_dir, sim.base_url, job_timeout_s=0.5)
        assert first["exit_code"] == 1 and first["counts"]["timed_out"] == 2
        statuses = {j.status for j in Ledger(data_dir / "ledger.sqlite").jobs_by_status(["submitted"])}
        assert statuses == {"submitted"}
        second = run_flow(manifest, data_dir, sim.base_url, job_timeout_s=30)
        assert second["exit_code"] == 0 and second["counts"].get("submitted", 0) == 0
        assert len(sim.ledger()) == 2


def test_each_run_publishes_its_summary_as_prefect_artifacts(sim, tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    manifest = make_tracks_manifest(sim, 2, tmp_path / "m.csv", types=("separate_vocal", "split_stem"))
    summary = run_flow(manifest, tmp_path / "data", sim.base_url)

    async def latest(key):
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                                sort=ArtifactSort.CREATED_DESC, limit=5)
            return found

    markdown = asyncio.run(latest("stemcat-run-summary"))
    assert any(summary["run_id"] in (a.data or "") for a in markdown)
    table = asyncio.run(latest("stemcat-run-credits"))
    assert table and "split_stem" in str(table[0].data)


def test_missing_api_key_is_a_clear_configuration_error(tmp_path):
    import os
    import subprocess
    import sys

    manifest = tmp_path / "m.csv"
    manifest.write_text("task_id,audio_id\nt1,a1\n")
    env = {k: v for k, v in os.environ.items() if k != "SUNO_API_KEY"}
    done = subprocess.run([sys.executable, "-m", "stemcat", "run", str(manifest), "--data-dir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "SUNO_API_KEY is not set" in done.stderr


def test_a_job_downloads_as_soon_as_it_is_separated_not_when_its_batch_is(render_cache, tmp_path):
    from stemcat.sim import SimConfig, SimServer

    # Separations of one batch end over about two seconds; each job's stems should be fetched
    # right after its own separation, not after the batch's slowest one.
    spread = SimConfig(seed=11, processing_s=(0.1, 2.5), rate_limit=None, cache_dir=render_cache)
    with SimServer(spread, port=0) as sim:
        manifest = make_tracks_manifest(sim, 8, tmp_path / "m.csv", types=("separate_vocal",))
        data_dir = tmp_path / "data"
        summary = run_flow(manifest, data_dir, sim.base_url, batch_size=8, concurrency=1, analyze=False)
    assert summary["exit_code"] == 0 and summary["counts"]["downloaded"] == 8
    ledger = Ledger(data_dir / "ledger.sqlite")
    try:
        jobs = ledger.jobs_by_status(["downloaded"])
        completed = [job.completed_at for job in jobs]
        first_download = {job.job_id: min(s.downloaded_at for s in ledger.stems_for_job(job.job_id)) for job in jobs}
    finally:
        ledger.close()
    assert len(jobs) == 8 and None not in completed
    assert max(completed) - min(completed) > 1.0  # the batch's separations really were spread out
    assert min(first_download.values()) < max(completed)


def test_task_runs_are_one_per_batch_not_one_per_call(sim, tmp_path):
    """Prefect's per-task cost is paid per batch: pass 2 re-plans each batch with a plain ledger read."""
    import asyncio
    import sqlite3
    from collections import Counter

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    manifest = make_tracks_manifest(sim, 5, tmp_path / "m.csv", types=("separate_vocal",))
    summary = run_flow(manifest, tmp_path / "data", sim.base_url, batch_size=2, analyze=False)
    assert summary["exit_code"] == 0 and summary["counts"]["downloaded"] == 5
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as con:
        (flow_run_id,) = con.execute("SELECT flow_run_id FROM runs WHERE run_id = ?", (summary["run_id"],)).fetchone()

    async def task_runs():
        async with get_client() as client:
            return await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))

    names = Counter(run.name.rsplit("-", 1)[0] for run in asyncio.run(task_runs()))
    assert names["separate-batch"] == 3  # 5 tracks in batches of 2
    assert names["plan-batch"] == 1  # pass 1, one manifest chunk; pass 2 plans without a task run
