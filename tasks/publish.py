"""Publish the ledger as the user-facing catalog (Parquet snapshots + DuckDB views)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from stemcat.catalog import Ledger, refresh_duckdb, write_snapshots


def publish(ledger: Ledger, data_dir: Path) -> dict[str, int]:
    rows = write_snapshots(ledger, data_dir)
    refresh_duckdb(data_dir)
    return rows


@task(name="publish-catalog", cache_policy=NONE, retries=2, retry_delay_seconds=1)
async def publish_catalog(ledger: Ledger, data_dir: Path) -> dict[str, int]:
    """Write Parquet snapshots of every table and rebuild catalog.duckdb's views."""
    return await asyncio.to_thread(publish, ledger, data_dir)
