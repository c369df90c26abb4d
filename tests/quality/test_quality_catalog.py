"""Quality columns in the ledger, the in-place upgrade of an older ledger, and the report views (the sample
published from a SQLite and from a PostgreSQL ledger)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stemcat.catalog import JobQualityRow, Ledger, StemQualityRow, TrackRow, open_catalog, write_snapshots
from stemcat.catalog.errors import CatalogError
from stemcat.catalog.migrations import missing_columns
from stemcat.catalog.paths import parquet_path
from stemcat.catalog.reports import (
    expiring_report,
    failures_report,
    quality_report,
    spend_report,
    track_quality_report,
    usable_report,
)
from stemcat.catalog.schema import JOBS, SCHEMA_VERSION, STEMS, arrow_schema
from tests.catalog.catalog_sample import build_sample
from tests.servers.ledgers import BACKENDS, LedgerTarget, ledger_target_for

NEW_JOB_COLUMNS = ("reconstruction_snr_db", "mix_path", "mix_duration_s", "low_snr", "analyzed_at", "analysis_error")


@pytest.fixture(scope="module", params=BACKENDS)
def data_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's catalog, published from a ledger on each backend."""
    root = tmp_path_factory.mktemp("quality-reports")
    sample = build_sample(root, ledger_target_for(request.param, request, root).ledger)
    led = sample.ledger
    led.upsert_tracks([
        TrackRow(audio_id="a1", task_id="t1", tags="Rock, Pop"),
        TrackRow(audio_id="a2", task_id="t1", tags=" rock"),
        TrackRow(audio_id="a3", task_id="t2", metadata={"tag": "Jazz"}),
    ])
    led.record_analysis(
        sample.job_ids["a2"],
        JobQualityRow(reconstruction_snr_db=8.0, mix_path="mixes/a2.mp3", mix_duration_s=120.5, low_snr=True),
        [StemQualityRow(stem=stem, peak_dbfs=-1.0, rms_dbfs=-14.0, lufs=-14.0, clipped_fraction=0.0, silent=False,
                        duration_diff_s=-0.5) for stem in ("vocals", "instrumental")],
    )
    led.record_analysis(
        sample.job_ids["a1"],
        JobQualityRow(reconstruction_snr_db=None, mix_path=None, mix_duration_s=None, low_snr=None,
                      analysis_error="no mix: no URL for the mix"),
        [],
    )
    write_snapshots(led, root)
    led.close()
    return root


@pytest.fixture
def con(data_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_catalog(data_dir)
    yield connection
    connection.close()


def _downloaded_job(led: Ledger) -> str:
    """A second fully downloaded separate_vocal job (a5's), not analysed yet."""
    job = led.claim("a5", "t3", "separate_vocal", 1, "r2")
    assert job is not None
    led.mark_submitted(job.job_id, "remote-a5-vocal")
    stems = ("vocals", "instrumental")
    led.mark_succeeded(job.job_id, success_flag="SUCCESS", completed_at=None, origin_url=None,
                       stems=[(stem, f"https://file.example.test/a5-{stem}.mp3", None) for stem in stems])
    for stem in stems:
        led.record_stem_download(job.job_id, stem, path=f"stems/a5/separate_vocal/{stem}.mp3", bytes=500,
                                 sha256="dd", duration_s=150.0, sample_rate=44100, channels=2)
    led.mark_status(job.job_id, "downloaded")
    return job.job_id


def test_record_analysis_round_trips_through_the_ledger(ledger_target: LedgerTarget) -> None:
    sample = build_sample(ledger_target.data_dir, ledger_target.ledger)
    led = sample.ledger
    analysed = sample.job_ids["a2"]  # the sample's downloaded job, analysed when the sample was built
    job_id = _downloaded_job(led)
    assert led.jobs_to_analyze() == [job_id]  # the one fully downloaded job not analysed yet
    led.record_analysis(
        job_id,
        JobQualityRow(reconstruction_snr_db=31.5, mix_path="mixes/a5.mp3", mix_duration_s=120.0, low_snr=False),
        [StemQualityRow(stem="vocals", peak_dbfs=-3.0, rms_dbfs=-20.0, lufs=-18.0, clipped_fraction=0.0,
                        silent=False, duration_diff_s=0.01)],
    )
    job = led.get_job(job_id)
    assert job is not None
    assert (job.reconstruction_snr_db, job.mix_path, job.mix_duration_s, job.low_snr) == (31.5, "mixes/a5.mp3",
                                                                                          120.0, False)
    assert job.analyzed_at is not None and job.analysis_error is None
    vocals = next(s for s in led.stems_for_job(job_id) if s.stem == "vocals")
    assert (vocals.lufs, vocals.silent, vocals.duration_diff_s) == (-18.0, False, 0.01)
    assert led.jobs_to_analyze() == []
    assert led.jobs_to_analyze(include_analyzed=True) == [analysed, job_id]
    with pytest.raises(ValueError, match="relative"):
        led.record_analysis(
            job_id,
            JobQualityRow(reconstruction_snr_db=None, mix_path="/etc/passwd", mix_duration_s=None, low_snr=None),
            [],
        )
    led.close()


def test_an_older_ledger_gains_the_quality_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    # SQLite only: an older file's columns and PRAGMA user_version. The PostgreSQL upgrade is
    # tests/catalog/test_postgres_ledger.py::test_an_older_postgres_ledger_is_upgraded_and_a_newer_one_refused.
    sample = build_sample(tmp_path)
    sample.ledger.close()
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as raw:
        # A version-1 ledger had neither the quality columns nor the later `missing_stems` and `mix_sha256`.
        for column in (*NEW_JOB_COLUMNS, "missing_stems", "mix_sha256"):
            raw.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
        raw.execute("ALTER TABLE stems DROP COLUMN duration_diff_s")
        raw.execute("PRAGMA user_version = 1")
    raw.close()

    led = Ledger(path)
    with sqlite3.connect(path) as check:
        job_columns = [row[1] for row in check.execute("PRAGMA table_info(jobs)")]
        stem_columns = [row[1] for row in check.execute("PRAGMA table_info(stems)")]
        version = check.execute("PRAGMA user_version").fetchone()[0]
    check.close()
    assert job_columns == list(JOBS.column_names) and stem_columns == list(STEMS.column_names)
    assert version == SCHEMA_VERSION
    job = led.get_job(sample.job_ids["a2"])
    assert job is not None and job.status == "downloaded" and job.reconstruction_snr_db is None
    led.record_analysis(
        job.job_id,
        JobQualityRow(reconstruction_snr_db=20.0, mix_path="mixes/a2.mp3", mix_duration_s=1.0, low_snr=False),
        [],
    )
    led.close()


def test_a_missing_not_null_column_is_refused() -> None:
    with pytest.raises(CatalogError, match="job_id"):
        missing_columns(JOBS, set(JOBS.column_names) - {"job_id"})
    assert [c.name for c in missing_columns(JOBS, set(JOBS.column_names) - {"low_snr"})] == ["low_snr"]


def test_views_over_snapshots_from_before_the_upgrade_read_null_quality(tmp_path: Path) -> None:
    for table in ("jobs", "stems"):
        schema = arrow_schema(table)
        old = pa.schema([f for f in schema if f.name not in (*NEW_JOB_COLUMNS, "duration_diff_s")])
        target = parquet_path(tmp_path, table)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(old.empty_table(), target)
    con = open_catalog(tmp_path)
    assert con.execute("SELECT count(*), count(low_snr) FROM jobs").fetchone() == (0, 0)
    assert track_quality_report(con).empty and usable_report(con).empty
    con.close()


def test_spend_by_week_joins_saturday_and_sunday(con: duckdb.DuckDBPyConnection) -> None:
    rows = list(spend_report(con, "week").itertuples(index=False, name=None))
    week = rows[0][0].date() if hasattr(rows[0][0], "date") else rows[0][0]
    assert week == dt.date(2025, 2, 24)  # the Monday of 2025-03-01 (Sat) and 2025-03-02 (Sun)
    assert [row[1:] for row in rows] == [("separate_vocal", 3, 3), ("split_stem", 10, 2)]


def test_spend_by_tag_splits_normalises_and_reads_the_manifest_tag(con: duckdb.DuckDBPyConnection) -> None:
    rows = set(spend_report(con, "tag").itertuples(index=False, name=None))
    assert rows == {
        ("rock", "separate_vocal", 1, 1),
        ("rock", "split_stem", 5, 1),
        ("pop", "split_stem", 5, 1),
        ("jazz", "separate_vocal", 1, 1),  # the refused first attempt nets to zero
        ("(untagged)", "separate_vocal", 1, 1),
        ("(untagged)", "split_stem", 5, 1),
    }


def test_credits_per_usable_minute(con: duckdb.DuckDBPyConnection) -> None:
    rows = {r.separation_type: r for r in usable_report(con).itertuples()}
    assert set(rows) == {"separate_vocal", "split_stem", "all"}
    # separate_vocal: 3 credits for 2 x 120 s usable; split_stem: 10 credits, drums usable, vocals silent.
    assert (rows["separate_vocal"].credits, rows["separate_vocal"].usable_minutes) == (3, 4.0)
    assert rows["separate_vocal"].credits_per_usable_minute == pytest.approx(0.75)
    assert (rows["split_stem"].usable_minutes, rows["split_stem"].silent_minutes) == (3.0, 3.0)
    assert rows["split_stem"].credits_per_usable_minute == pytest.approx(10 / 3)
    assert rows["all"].credits_per_usable_minute == pytest.approx(13 / 7)


def test_expiring_within_n_days(con: duckdb.DuckDBPyConnection) -> None:
    assert [(r.audio_id, r.stem) for r in expiring_report(con, 3).itertuples()] == [("a5", "vocals")]
    soon = expiring_report(con, 11)
    assert [(r.audio_id, r.stem) for r in soon.itertuples()] == [("a5", "vocals"), ("a5", "drums")]
    assert 0.9 < soon.days_left.iloc[0] <= 1.0 and 9.9 < soon.days_left.iloc[1] <= 10.0
    # The failed a1 bass still has 14 days; the expired a5 bass is gone and not listed.
    assert ("a1", "bass") in {(r.audio_id, r.stem) for r in expiring_report(con, 14).itertuples()}
    assert ("a5", "bass") not in {(r.audio_id, r.stem) for r in expiring_report(con, 365).itertuples()}
    with pytest.raises(ValueError):
        expiring_report(con, -1)


def test_failures_include_quality_problems(con: duckdb.DuckDBPyConnection) -> None:
    rows = {(r.source, r.status, r.reason, r.n) for r in failures_report(con).itertuples()}
    assert ("quality", "analysis_incomplete", "no mix: no URL for the mix", 1) in rows
    assert any(r[:2] == ("quality", "low_snr") and r[3] == 1 for r in rows)
    assert ("manifest", "rejected", "missing audio_id", 2) in rows


def test_quality_views(con: duckdb.DuckDBPyConnection) -> None:
    by_stem = {(r.separation_type, r.stem): r for r in quality_report(con).itertuples()}
    vocals = by_stem[("split_stem", "vocals")]
    assert (vocals.analysed, vocals.silent) == (1, 1)
    assert pd.isna(vocals.median_lufs)  # silent stems stay out of the loudness statistics
    drums = by_stem[("split_stem", "drums")]
    assert (drums.analysed, drums.silent, drums.clipped, drums.max_peak_dbfs) == (1, 0, 1, 0.0)
    assert by_stem[("separate_vocal", "vocals")].max_abs_duration_diff_s == 0.5
    tracks = track_quality_report(con)
    assert list(tracks.audio_id) == ["a1", "a2"]  # NULL SNR first, then ascending
    flagged = track_quality_report(con, low_snr_only=True)
    assert list(flagged.audio_id) == ["a2"] and flagged.reconstruction_snr_db.iloc[0] == 8.0
    assert flagged.stems.iloc[0] == 2 and flagged.silent_stems.iloc[0] == 0
    assert con.execute("SELECT count(*) FROM stems WHERE silent").fetchone()[0] == 1  # one query finds silence
