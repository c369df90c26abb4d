"""Publish the ledger as the user-facing catalog (Parquet snapshots + DuckDB views), and to the storage if any."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from stemcat.catalog import Ledger, refresh_duckdb, write_snapshots
from stemcat.catalog.published import publish_to_storage, publishing_lock
from stemcat.catalog.storage import Storage


def publish(ledger: Ledger, data_dir: Path, storage: Storage | None = None) -> dict[str, int]:
    if storage is None:
        rows = write_snapshots(ledger, data_dir)
        refresh_duckdb(data_dir)
        return rows
    # Snapshot and upload under one lock: the versions reach CURRENT in the order they were read.
    with publishing_lock(ledger, data_dir):
        rows = write_snapshots(ledger, data_dir)
        refresh_duckdb(data_dir)
        publish_to_storage(data_dir, storage)
    return rows


@task(name="publish-catalog", cache_policy=NONE, retries=2, retry_delay_seconds=1)
async def publish_catalog(ledger: Ledger, data_dir: Path, storage: Storage | None = None) -> dict[str, int]:
    """Write Parquet snapshots of every table, rebuild catalog.duckdb's views, publish them to the storage."""
    return await asyncio.to_thread(publish, ledger, data_dir, storage)
