"""`make demo`: the whole pipeline on the embedded default, with nothing to set up.

The simulator runs in this process on a free loopback port; Prefect starts its own
temporary server; the catalog is a local DuckDB file. The simulator is
deterministic from its seed, so running the demo again finds every stem already
downloaded and charges nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

DEMO_QUERY = (
    "SELECT separation_type, stem, count(*) AS files, count(*) FILTER (WHERE silent) AS silent, "
    "round(sum(duration_s), 1) AS seconds FROM stems WHERE status = 'downloaded' "
    "GROUP BY ALL ORDER BY separation_type, stem"
)


def run_demo(console: Console, *, data_dir: Path, tracks: int) -> int:
    from stemcat.catalog import open_catalog
    from stemcat.catalog.reports import run_sql, spend_report
    from stemcat.cli.app import run_flow
    from stemcat.cli.display import print_frame
    from stemcat.flows.services import demo_simulator

    os.environ.setdefault("SUNO_API_KEY", "demo-key")  # the simulator accepts any key; the real API does not
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest = data_dir / "demo-manifest.csv"
    with demo_simulator(manifest, tracks=tracks) as base_url:
        console.print(f"[bold]simulator[/bold] {base_url}   [bold]manifest[/bold] {manifest} ({tracks} tracks)")
        code = run_flow(dict(  # the default rate limit, concurrency and caps; quicker polls for short songs
            manifest=str(manifest), data_dir=str(data_dir), base_url=base_url, batch_size=6,
            poll_max_s=3.0, job_timeout_s=300.0, max_download_mb=50.0,
            ledger_url="",  # the demo's ledger.sqlite, never a shared STEMCAT_LEDGER_URL
        ))
    con = open_catalog(data_dir)
    console.print(f"\n[bold]catalog[/bold] {data_dir / 'catalog.duckdb'}  (Parquet under {data_dir / 'catalog'})")
    console.print(f"[bold]example query[/bold]  stemcat sql --data-dir {data_dir} \"{DEMO_QUERY}\"")
    print_frame(console, run_sql(con, DEMO_QUERY), "table")
    print_frame(console, spend_report(con, by="type"), "table", title="spend by type, all time")
    return code
