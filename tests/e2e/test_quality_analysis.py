"""Stem analysis over a catalog made by a real flow run against the simulator (loopback HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stemcat.catalog import Ledger, open_catalog
from stemcat.catalog.reports import failures_report, track_quality_report
from stemcat.client import SunoClient
from stemcat.sim import SimConfig, SimServer, make_tracks_manifest
from stemcat.services.callbacks import CallbackHub
from stemcat.tasks.analysis.steps import analyze_batch
from stemcat.tasks.context import RunContext, RunOptions
from stemcat.tasks.analysis.metrics import DEFAULT_MIN_SNR_DB

from .conftest import run_flow

pytestmark = pytest.mark.e2e


def _analyze(data_dir: Path, **overrides: Any) -> dict[str, Any]:
    from stemcat.flows.analyze import analyze_catalog

    return asyncio.run(analyze_catalog(data_dir=str(data_dir), **overrides))


@pytest.fixture(scope="module")
def sim(render_cache: Path) -> Iterator[SimServer]:
    """One simulator for the module: both tests read the catalog of one flow run."""
    config = SimConfig(seed=11, processing_s=(0.1, 0.4), rate_limit=None, cache_dir=render_cache)
    with SimServer(config, port=0) as server:
        yield server


@pytest.fixture(scope="module")
def separated(sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quality-e2e")
    manifest = make_tracks_manifest(sim, 8, root / "m.csv", types=("split_stem", "separate_vocal"))
    data_dir = root / "data"
    summary = run_flow(manifest, data_dir, sim.base_url)
    assert summary["exit_code"] == 0, summary
    return data_dir


def _expected_silent(sim: SimServer, audio_id: str, separation_type: str) -> set[str]:
    truth = sim.truth(audio_id)
    if separation_type == "split_stem":
        return set(truth.silent_stems)
    # separate_vocal: the lead vocal alone, and everything else (never silent in the simulator).
    return {"vocals"} if "vocals" not in truth.instruments else set()


def test_analysis_finds_exactly_the_missing_instruments_and_stems_add_up(sim: SimServer, separated: Path) -> None:
    # reanalyze: whether or not the run itself already analysed its batches, measure all 8 jobs here.
    summary = _analyze(separated, base_url=sim.base_url, reanalyze=True)
    assert summary["jobs"] == 8 and summary["outcomes"] == {"analysed": 8}, summary

    con = open_catalog(separated)
    stems = con.execute(
        "SELECT audio_id, separation_type, stem, silent, peak_dbfs, lufs, duration_diff_s FROM stems"
    ).fetchall()
    found: dict[tuple[str, str], set[str]] = {}
    for audio_id, separation_type, stem, silent, peak, lufs, diff in stems:
        assert silent is not None and peak is not None and diff == pytest.approx(0.0, abs=1e-6)
        if silent:
            found.setdefault((audio_id, separation_type), set()).add(stem)
        else:
            assert lufs is not None and -60 < lufs < 0 and peak <= 0.5
    keys = {(row[0], row[1]) for row in stems}
    assert {key: found.get(key, set()) for key in keys} == {key: _expected_silent(sim, *key) for key in keys}
    assert any(found.values())  # the sample does contain songs without some instruments

    jobs = con.execute(
        "SELECT audio_id, reconstruction_snr_db, low_snr, mix_path, mix_duration_s, analysis_error FROM jobs"
    ).fetchall()
    for audio_id, snr, low_snr, mix_path, mix_duration, error in jobs:
        assert snr is not None and snr > DEFAULT_MIN_SNR_DB and low_snr is False and error is None, (audio_id, snr)
        assert mix_path == f"mixes/{audio_id}.mp3" and (separated / mix_path).is_file()
        assert mix_duration == pytest.approx(sim.truth(audio_id).duration_s, abs=1e-3)
    assert track_quality_report(con, low_snr_only=True).empty
    assert "quality" not in set(failures_report(con).source)
    con.close()

    # A pass without reanalyze has nothing left to do; reanalyze measures again from the files on disk.
    assert _analyze(separated, base_url=sim.base_url)["jobs"] == 0
    mtimes = {p: p.stat().st_mtime_ns for p in (separated / "mixes").iterdir()}
    again = _analyze(separated, base_url=sim.base_url, reanalyze=True, silent_threshold_dbfs=-20.0)
    assert again["jobs"] == 8
    assert {p: p.stat().st_mtime_ns for p in (separated / "mixes").iterdir()} == mtimes  # mixes reused
    con = open_catalog(separated)
    loud_enough = con.execute("SELECT count(*) FROM stems WHERE NOT silent AND peak_dbfs < -20").fetchone()[0]
    assert loud_enough == 0  # the new threshold was applied
    con.close()


def test_analyze_batch_inside_a_run_context(sim: SimServer, separated: Path) -> None:
    async def analyse() -> tuple[dict[str, str], dict[str, int]]:
        ledger = Ledger(separated / "ledger.sqlite")
        job_ids = ledger.jobs_to_analyze(include_analyzed=True)
        options = RunOptions(data_dir=separated, base_url=sim.base_url)
        async with SunoClient(base_url=sim.base_url) as client:
            ctx = RunContext(run_id="analysis-test", options=options, ledger=ledger, client=client, secret=b"s" * 32,
                             callback_base="http://127.0.0.1:9", hub=CallbackHub())
            outcomes = await analyze_batch.fn(ctx, job_ids + ["no-such-job"])
        ledger.close()
        return outcomes, dict(ctx.counts)

    outcomes, counts = asyncio.run(analyse())
    assert outcomes.pop("no-such-job") == "skipped"
    assert len(outcomes) == 8 and set(outcomes.values()) == {"analysed"}
    assert counts["stems_analysed"] > 8 and counts["silent_stems"] > 0 and counts.get("low_snr", 0) == 0


def test_analyze_and_report_commands(sim: SimServer, separated: Path, tmp_path: Path) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from stemcat.cli.cmd_analyze import analyze_command
    from stemcat.cli.cmd_report import report_app

    app = typer.Typer()
    app.command("analyze")(analyze_command)
    app.add_typer(report_app, name="report")
    runner = CliRunner()
    where = ["--data-dir", str(separated)]
    # An absurd threshold flags every separation; the command still succeeds (flags are data, not errors).
    result = runner.invoke(app, ["analyze", *where, "--reanalyze", "--min-snr", "200", "--base-url", sim.base_url])
    assert result.exit_code == 0, result.output
    assert "low SNR (< 200 dB)" in result.stdout and "│ 8" in result.stdout
    flagged = runner.invoke(app, ["report", "quality", "--low-snr", "--format", "json", *where])
    assert flagged.exit_code == 0, flagged.output
    assert len(json.loads(flagged.stdout)) == 8
    charts = tmp_path / "charts"
    overview = runner.invoke(app, ["report", *where, "--plot", str(charts)])
    assert overview.exit_code == 0 and len(list(charts.glob("*.png"))) == 3
    # Back to the defaults, without fetching anything (the mixes are on disk already).
    again = runner.invoke(app, ["analyze", *where, "--reanalyze", "--no-fetch-mixes"])
    assert again.exit_code == 0, again.output
    assert json.loads(runner.invoke(app, ["report", "quality", "--low-snr", "--format", "json", *where]).stdout) == []


def test_a_run_without_analysis_downloads_only_stems_and_analyze_catches_up(
    sim: SimServer, tmp_path: Path
) -> None:
    manifest = make_tracks_manifest(sim, 3, tmp_path / "m.csv", types=("separate_vocal",))
    data_dir = tmp_path / "data"
    files_before = sim.stats().requests_by_route.get("file", 0)
    summary = run_flow(manifest, data_dir, sim.base_url, analyze=False, poll_share=0.3)
    assert summary["exit_code"] == 0, summary
    assert summary["counts"]["downloaded"] == 3
    assert "stems_analysed" not in summary["counts"]
    # Two stems per track and no mix: the quality pass did not run.
    assert sim.stats().requests_by_route.get("file", 0) - files_before == 6
    with Ledger(data_dir / "ledger.sqlite") as ledger:
        assert len(ledger.jobs_to_analyze(include_analyzed=False)) == 3

    later = _analyze(data_dir, base_url=sim.base_url)
    assert later["jobs"] == 3 and later["outcomes"] == {"analysed": 3}, later
    with Ledger(data_dir / "ledger.sqlite") as ledger:
        assert ledger.jobs_to_analyze(include_analyzed=False) == []


def test_a_run_measures_each_job_in_the_pass_that_verifies_its_downloads(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decode once: the download's verification pass stores the analysis, the batch step finds nothing left."""
    import stemcat.flows.separate as separate

    left_for_the_batch_step: list[str] = []
    real = separate.analyze_batch

    async def counting(ctx: RunContext, job_ids: list[str], *args: Any, **kwargs: Any) -> Any:
        left_for_the_batch_step.extend(job_ids)
        return await real(ctx, job_ids, *args, **kwargs)

    monkeypatch.setattr(separate, "analyze_batch", counting)
    manifest = make_tracks_manifest(sim, 4, tmp_path / "m.csv", types=("split_stem", "separate_vocal"))
    summary = run_flow(manifest, tmp_path / "data", sim.base_url)
    assert summary["exit_code"] == 0, summary
    assert left_for_the_batch_step == []
    assert summary["counts"]["stems_analysed"] > 0
    ledger = Ledger(tmp_path / "data" / "ledger.sqlite")
    try:
        jobs = [ledger.get_job(job_id) for job_id in ledger.jobs_to_analyze(include_analyzed=True)]
        assert len(jobs) == 4 and all(job is not None and job.analyzed_at is not None for job in jobs)
        assert all(job is not None and job.reconstruction_snr_db is not None for job in jobs)
    finally:
        ledger.close()
