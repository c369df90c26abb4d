"""Report views, report functions and every query in catalog/EXAMPLES.sql, on a known sample."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from stemcat import catalog
from stemcat.catalog import connect_catalog_file, open_catalog, refresh_duckdb, run_sql, spend_report, stems_report, write_snapshots
from tests.catalog.catalog_sample import build_sample
from tests.servers.ledgers import BACKENDS, ledger_target_for

EXAMPLES = Path(catalog.__file__).with_name("EXAMPLES.sql")


@pytest.fixture(scope="module", params=BACKENDS)
def data_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's catalog, published from a ledger on each backend: the reports read the same rows."""
    root = tmp_path_factory.mktemp("reports")
    sample = build_sample(root, ledger_target_for(request.param, request, root).ledger)
    write_snapshots(sample.ledger, root)
    refresh_duckdb(root)
    sample.ledger.close()
    return root


@pytest.fixture
def con(data_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_catalog(data_dir)
    yield connection
    connection.close()


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_spend_by_day_splits_on_utc_midnight(con: duckdb.DuckDBPyConnection) -> None:
    frame = spend_report(con, "day")
    rows = [(row.day.date() if hasattr(row.day, "date") else row.day, row.separation_type, row.credits, row.jobs)
            for row in frame.itertuples()]
    assert rows == [
        (dt.date(2025, 3, 1), "separate_vocal", 2, 2),
        (dt.date(2025, 3, 1), "split_stem", 5, 1),
        (dt.date(2025, 3, 2), "separate_vocal", 1, 1),
        (dt.date(2025, 3, 2), "split_stem", 5, 1),
    ]


def test_spend_by_type_and_run(con: duckdb.DuckDBPyConnection) -> None:
    by_type = spend_report(con, "type")
    assert list(by_type[["separation_type", "credits", "jobs"]].itertuples(index=False, name=None)) == [
        ("separate_vocal", 3, 3),
        ("split_stem", 10, 2),
    ]
    by_run = spend_report(con, "run")
    assert list(by_run[["run_id", "credits", "balance_delta", "difference"]].itertuples(index=False, name=None)) == [
        ("r1", 7, -7, 0),
        ("r2", 6, -7, -1),
    ]
    with pytest.raises(ValueError):
        spend_report(con, "month")  # type: ignore[arg-type]


def test_stems_summary(con: duckdb.DuckDBPyConnection) -> None:
    frame = stems_report(con)
    rows = {(r.separation_type, r.stem): (r.n, r.downloaded, round(r.hours, 6), r.silent) for r in frame.itertuples()}
    assert rows == {
        ("separate_vocal", "instrumental"): (1, 1, round(120 / 3600, 6), 0),
        ("separate_vocal", "vocals"): (1, 1, round(120 / 3600, 6), 0),
        ("split_stem", "bass"): (2, 0, 0.0, 0),
        ("split_stem", "drums"): (2, 1, 0.05, 0),
        ("split_stem", "vocals"): (2, 1, 0.05, 1),
    }


def test_jobs_by_status_and_failures(con: duckdb.DuckDBPyConnection) -> None:
    assert sorted(_rows(con, "SELECT separation_type, status, jobs FROM jobs_by_status")) == [
        ("separate_vocal", "downloaded", 1),
        ("separate_vocal", "failed", 1),
        ("separate_vocal", "not_submitted", 1),
        ("separate_vocal", "unknown", 1),
        ("split_stem", "succeeded", 2),
    ]
    assert sorted(_rows(con, "SELECT source, status, error_code, reason, n FROM failures_by_reason"),
                  key=str) == sorted([
        ("job", "failed", 500, "separation failed", 1),
        ("job", "not_submitted", 430, "430 call frequency too high", 1),
        ("job", "unknown", None, "read timeout", 1),
        ("stem", "failed", None, "HTTP 403", 1),
        ("stem", "expired", None, "link expired", 1),
        ("manifest", "rejected", None, "missing audio_id", 2),
    ], key=str)


def test_run_sql_binds_values(con: duckdb.DuckDBPyConnection) -> None:
    frame = run_sql(con, "SELECT audio_id FROM tracks WHERE split = ? ORDER BY audio_id", ["test"])
    assert list(frame["audio_id"]) == ["a3", "a4"]
    assert run_sql(con, "SELECT count(*) AS n FROM spend")["n"][0] == 12


def _examples() -> dict[str, str]:
    text = EXAMPLES.read_text()
    parts = re.split(r"^-- name: *(\w+) *$", text, flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


EXPECTED_EXAMPLES: dict[str, list[tuple]] = {
    "balance_mismatch": [("r2", dt.datetime(2025, 3, 2, 0, 30, 0, 1000, tzinfo=dt.UTC), 6, -7, -1)],
    "silent_stems": [("a1", "One", "split_stem", "vocals", "stems/a1/split_stem/vocals.mp3", -95.0)],
    "expiring_soon": [("a5", "split_stem", "vocals")],
    "hours_per_stem": [("vocals", 0.0833, 2), ("drums", 0.05, 1), ("instrumental", 0.0333, 1)],
    "training_files": [
        ("train", "a1", "drums", "stems/a1/split_stem/drums.mp3", 180.0),
        ("train", "a2", "instrumental", "stems/a2/separate_vocal/instrumental.mp3", 120.0),
        ("train", "a2", "vocals", "stems/a2/separate_vocal/vocals.mp3", 120.0),
    ],
    "clipped_stems": [("a1", "drums", 0.0, 0.02)],
}


def test_examples_file_has_the_promised_queries() -> None:
    examples = _examples()
    assert 5 <= len(examples) <= 8
    assert {"spend_by_day", "silent_stems", "expiring_soon", "failures_by_reason", "hours_per_stem"} <= set(examples)
    assert set(EXPECTED_EXAMPLES) | {"spend_by_day", "failures_by_reason"} == set(examples)


@pytest.mark.parametrize("name", sorted(_examples()))
def test_example_query_runs_and_returns_expected_rows(name: str, con: duckdb.DuckDBPyConnection) -> None:
    rows = _rows(con, _examples()[name])
    if name == "spend_by_day":
        assert [(row[1], row[2]) for row in rows] == [
            ("separate_vocal", 2), ("split_stem", 5), ("separate_vocal", 1), ("split_stem", 5)]
    elif name == "failures_by_reason":
        assert rows[0] == ("manifest", "rejected", None, "missing audio_id", 2)
        assert len(rows) == 6
    elif name == "expiring_soon":
        assert [row[:3] for row in rows] == EXPECTED_EXAMPLES[name]
        assert dt.timedelta(hours=23) < rows[0][4] <= dt.timedelta(days=1)
    else:
        assert rows == EXPECTED_EXAMPLES[name]


def test_examples_also_run_in_catalog_duckdb(data_dir: Path) -> None:
    """The views baked into catalog.duckdb answer like the in-memory ones."""
    con = connect_catalog_file(data_dir)
    try:
        assert _rows(con, _examples()["balance_mismatch"]) == EXPECTED_EXAMPLES["balance_mismatch"]
        assert _rows(con, "SELECT count(*) FROM stems")[0][0] == 8
        tags = _rows(con, "SELECT tags FROM duckdb_databases() WHERE database_name = 'catalog'")[0][0]
        assert tags["storage_version"].startswith("v1.0.0"), "DuckDB 1.x clients must be able to open it"
    finally:
        con.close()


def test_a_moved_data_dir_opens_in_a_plain_duckdb_client(data_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The views name their Parquet files relative to the data directory, never where it was built."""
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(data_dir, moved)
    views = _rows(connect_catalog_file(moved), "SELECT sql FROM duckdb_views() WHERE NOT internal")
    assert views and not any(str(data_dir) in sql for (sql,) in views)
    expected = _rows(open_catalog(data_dir), "SELECT count(*) FROM stems")
    by_search_path = duckdb.connect(str(moved / "catalog.duckdb"), read_only=True,
                                    config={"file_search_path": str(moved)})
    assert _rows(by_search_path, "SELECT count(*) FROM stems") == expected
    by_search_path.close()
    monkeypatch.chdir(moved)  # the other documented way: a client started in the data directory
    in_place = duckdb.connect("catalog.duckdb", read_only=True)
    assert _rows(in_place, "SELECT count(*) FROM stems") == expected
    assert _rows(in_place, "SELECT count(*) FROM spend_by_type") == _rows(open_catalog(data_dir),
                                                                          "SELECT count(*) FROM spend_by_type")
    in_place.close()


def test_empty_catalog_has_typed_empty_tables(tmp_path: Path) -> None:
    con = open_catalog(tmp_path)
    try:
        assert _rows(con, "SELECT count(*) FROM jobs") == [(0,)]
        types = dict(_rows(con, "SELECT column_name, data_type FROM information_schema.columns"
                                " WHERE table_name = 'spend'"))
        assert types["at"] == "TIMESTAMP WITH TIME ZONE" and types["credits"] == "BIGINT"
        for name in _examples():
            con.execute(_examples()[name]).fetchall()
        assert spend_report(con, "run").empty
    finally:
        con.close()
    assert not (tmp_path / "catalog").exists(), "a reader must not write"


def test_refresh_before_any_snapshot_gives_empty_tables(tmp_path: Path) -> None:
    refresh_duckdb(tmp_path)
    con = connect_catalog_file(tmp_path)
    try:
        assert _rows(con, "SELECT count(*) FROM stems_summary") == [(0,)]
        assert _rows(con, "SELECT count(*) FROM tracks") == [(0,)]
    finally:
        con.close()
