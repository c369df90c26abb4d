"""Parquet snapshots: declared schema, exact values, no bearer links, atomic replacement (from either backend)."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stemcat.catalog import CATALOG_TABLES, Ledger, arrow_schema, parquet_path, write_snapshots
from stemcat.catalog.schema import TABLES
from stemcat.catalog.snapshots import rows_to_record_batch, write_parquet_atomic
from tests.catalog.catalog_sample import DAY1, SECRET_URL_PART, build_sample
from tests.servers.ledgers import BACKENDS, LedgerTarget, ledger_target_for


@dataclass
class Published:
    root: Path
    open_ledger: Callable[..., Ledger]


@pytest.fixture(scope="module", params=BACKENDS)
def published(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Published:
    root = tmp_path_factory.mktemp("snap")
    target = ledger_target_for(request.param, request, root)
    sample = build_sample(root, target.ledger)
    written = write_snapshots(sample.ledger, root, batch_size=3)
    sample.ledger.close()
    assert written == {"tracks": 5, "jobs": 6, "stems": 8, "spend": 12, "runs": 2, "callbacks": 1, "rejects": 2}
    return Published(root, target.ledger)


@pytest.fixture
def snapshot_dir(published: Published) -> Path:
    return published.root


@pytest.mark.parametrize("table", CATALOG_TABLES)
def test_snapshot_schema_is_the_declared_schema(snapshot_dir: Path, table: str) -> None:
    stored = pq.read_schema(parquet_path(snapshot_dir, table))
    declared = arrow_schema(table)
    assert stored.equals(declared, check_metadata=True)
    assert all(field.metadata and field.metadata[b"description"] for field in stored)


def test_every_column_is_declared_with_a_description() -> None:
    for table in TABLES.values():
        for column in table.columns:
            assert column.doc.strip(), f"{table.name}.{column.name}"
            assert "\n" not in column.doc


def test_jobs_snapshot_matches_the_ledger_exactly(published: Published, snapshot_dir: Path) -> None:
    with published.open_ledger() as led:
        expected = {job.job_id: job for job in led.jobs_by_status(["intent", "submitted", "succeeded", "failed",
                                                                       "unknown", "not_submitted", "downloaded",
                                                                       "expired"])}
    rows = pq.read_table(parquet_path(snapshot_dir, "jobs")).to_pylist()
    assert {row["job_id"] for row in rows} == set(expected)
    for row in rows:
        job = expected[row["job_id"]]
        assert row["status"] == job.status.value and row["attempt"] == job.attempt
        assert row["created_at"].utcoffset() == dt.timedelta(0)
        assert abs(row["created_at"].timestamp() - job.created_at) <= 1e-6
    first = min(rows, key=lambda row: row["created_at"])
    assert abs(first["created_at"].timestamp() - DAY1) < 1


def test_stems_snapshot_has_no_url_column_and_quality_as_bool(snapshot_dir: Path) -> None:
    table = pq.read_table(parquet_path(snapshot_dir, "stems"))
    assert "url" not in table.column_names
    assert table.schema.field("silent").type == pa.bool_()
    assert sorted(v for v in table.column("silent").to_pylist() if v is not None) == [False, False, False, True]


def test_no_bearer_link_in_any_snapshot(snapshot_dir: Path) -> None:
    for table in CATALOG_TABLES:
        raw = parquet_path(snapshot_dir, table).read_bytes()
        assert SECRET_URL_PART.encode() not in raw, table
        values = str(pq.read_table(parquet_path(snapshot_dir, table)).to_pylist())
        assert SECRET_URL_PART not in values, table
    payload = pq.read_table(parquet_path(snapshot_dir, "callbacks")).column("payload")[0].as_py()
    assert "https://file.example.test/" in payload  # the host survives, the path does not


def test_snapshots_of_an_empty_ledger_are_typed_and_empty(ledger_target: LedgerTarget, tmp_path: Path) -> None:
    with ledger_target.ledger() as led:
        written = write_snapshots(led, tmp_path)
    assert written == dict.fromkeys(CATALOG_TABLES, 0)
    for table in CATALOG_TABLES:
        stored = pq.read_table(parquet_path(tmp_path, table))
        assert stored.num_rows == 0 and stored.schema.equals(arrow_schema(table))


def _failing_batches(schema: pa.Schema, good_rows: list[tuple]) -> Iterator[pa.RecordBatch]:
    yield rows_to_record_batch(good_rows, schema)
    raise RuntimeError("disk full, mid-write")


def test_failed_write_never_replaces_a_good_file(published: Published, snapshot_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "catalog" / "jobs.parquet"
    target.parent.mkdir()
    target.write_bytes(parquet_path(snapshot_dir, "jobs").read_bytes())
    before = target.read_bytes()
    schema = arrow_schema("jobs")
    with published.open_ledger() as led:
        one_row = next(led.table_batches("jobs", batch_size=1))
    with pytest.raises(RuntimeError, match="mid-write"):
        write_parquet_atomic(target, schema, _failing_batches(schema, one_row))
    assert target.read_bytes() == before
    assert pq.read_table(target).num_rows == 6
    assert sorted(p.name for p in target.parent.iterdir()) == ["jobs.parquet"], "temp file left behind"


def test_rows_to_record_batch_rejects_a_wrong_shape() -> None:
    with pytest.raises(ValueError):
        rows_to_record_batch([("only", "two")], arrow_schema("rejects"))


def test_temp_files_of_killed_writers_are_swept(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as led:
        write_snapshots(led, tmp_path)
        catalog_dir = tmp_path / "catalog"
        stale = catalog_dir / ".jobs.parquet.999.deadbeef.tmp"
        fresh = catalog_dir / ".jobs.parquet.998.cafe.tmp"
        unrelated = catalog_dir / ".someone-else.tmp"
        for path in (stale, fresh, unrelated):
            path.write_bytes(b"partial")
        old = time.time() - 7200
        os.utime(stale, (old, old))
        os.utime(unrelated, (old, old))
        write_snapshots(led, tmp_path)
    assert not stale.exists()
    assert fresh.exists(), "a recent temp file may belong to a live writer"
    assert unrelated.exists()
