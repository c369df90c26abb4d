"""Parquet snapshots of the public ledger tables, streamed in record batches and replaced atomically."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stemcat.catalog.atomic_files import creating_if_absent, replacing, sweep_stale_temps
from stemcat.catalog.ledger import Ledger
from stemcat.catalog.paths import parquet_path
from stemcat.catalog.schema import CATALOG_TABLES, arrow_schema

DEFAULT_BATCH_SIZE = 50_000


def rows_to_record_batch(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    """Turn exported ledger rows (schema column order) into a batch of exactly ``schema``."""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    if len(columns) != len(schema):
        raise ValueError(f"rows have {len(columns)} columns, the schema has {len(schema)}")
    arrays = [_to_array(values, field.type) for values, field in zip(columns, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _to_array(values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array:
    # The ledger exports timestamps as integer microseconds and booleans as 0/1.
    if pa.types.is_timestamp(arrow_type) or pa.types.is_boolean(arrow_type):
        return pa.array(values, type=pa.int64()).cast(arrow_type)
    return pa.array(values, type=arrow_type)


def write_parquet_atomic(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Write batches to ``path`` via a fsynced temp file and a rename; returns the rows written.

    If anything fails part-way, the previous file at ``path`` is left untouched.
    """
    rows = 0
    with replacing(path) as temp, pq.ParquetWriter(temp, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def write_snapshots(ledger: Ledger, data_dir: Path, *, batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, int]:
    """Snapshot every public table from one consistent ledger read; returns rows written per table."""
    written: dict[str, int] = {}
    with ledger.read_snapshot() as reader:
        for table in CATALOG_TABLES:
            schema = arrow_schema(table)
            batches = (rows_to_record_batch(rows, schema) for rows in reader.table_batches(table, batch_size))
            written[table] = write_parquet_atomic(parquet_path(data_dir, table), schema, batches)
    sweep_stale_temps(parquet_path(data_dir, table) for table in CATALOG_TABLES)
    return written


def ensure_snapshot_files(data_dir: Path) -> None:
    """Create an empty, correctly typed snapshot for each table that has none, never replacing one."""
    for table in CATALOG_TABLES:
        target = parquet_path(data_dir, table)
        if target.exists():
            continue
        schema = arrow_schema(table)
        with creating_if_absent(target) as temp:
            pq.write_table(schema.empty_table(), temp, compression="zstd")
