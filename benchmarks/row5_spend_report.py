"""Row 5: the spend report's query time over a synthetic catalog of a million stem rows.

The catalog is written straight to the Parquet snapshots (see `benchmarks.synthetic_catalog`);
each grouping of `stemcat report spend` is timed as the CLI runs it: open the catalog (views
over the Parquet files, in memory) and run the report, cold once, then warm (median of 5).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from benchmarks.environment import BenchEnv
from benchmarks.synthetic_catalog import write_synthetic_catalog
from benchmarks.table import Row
from stemcat.catalog import open_catalog, spend_report
from stemcat.catalog.reports import SpendGrouping

GROUPINGS: tuple[SpendGrouping, ...] = ("day", "type", "run")


def _timed(data_dir: Path, by: SpendGrouping) -> float:
    started = time.perf_counter()
    con = open_catalog(data_dir)
    try:
        spend_report(con, by=by)
    finally:
        con.close()
    return time.perf_counter() - started


def measure(env: BenchEnv, *, stem_rows: int) -> list[Row]:
    data_dir = env.scratch("catalog")
    counts = write_synthetic_catalog(data_dir, stem_rows)
    cells = []
    for by in GROUPINGS:
        cold = _timed(data_dir, by)
        warm = statistics.median(_timed(data_dir, by) for _ in range(5))
        cells.append(f"by {by}: {cold * 1000:.0f} ms cold, {warm * 1000:.0f} ms warm")
    return [Row(
        "5", f"spend report over {counts['stems']:,} stem rows: query time",
        "; ".join(cells),
        conditions=f"{counts['jobs']:,} jobs, {counts['spend']:,} spend rows, {counts['runs']} runs, 90 days; "
                   "open_catalog + spend_report, in process (DuckDB views over zstd Parquet)",
    )]
