"""Row 4: `--dry-run` wall time and peak RSS on a million-row manifest.

The manifest is CSV, every row valid and new (so every row is staged as a track and planned
as a paid submit). The run is the real flow in its own process: pass 1 only (validate in
chunks, stage tracks into the ledger in batches, plan), then the catalog snapshot; nothing
is charged. Only the balance read touches the API.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from benchmarks.environment import BenchEnv
from benchmarks.simulation import small_songs
from benchmarks.table import Row
from stemcat.sim import SimServer

RSS_BUDGET_MB = 500


def write_big_manifest(path: Path, rows: int) -> Path:
    """`rows` distinct separate_vocal rows with well-formed ids, written as a stream."""
    with path.open("w") as handle:
        handle.write("task_id,audio_id,type,title\n")
        for index in range(rows):
            handle.write(f"{index:032x},{uuid.UUID(int=index + 1)},separate_vocal,Song {index}\n")
    return path


def measure(env: BenchEnv, *, rows: int) -> list[Row]:
    where = env.scratch("dry-run")
    manifest = write_big_manifest(where / "manifest.csv", rows)
    size_mb = manifest.stat().st_size / 1e6
    with SimServer(small_songs(env.cache_dir, rate_limit=None).model_copy(update={"prerender": False}),
                   port=0) as sim:
        params = dict(manifest=str(manifest), data_dir=str(where / "data"), base_url=sim.base_url,
                      separation_type="separate_vocal", dry_run=True)
        result = env.run_flow(params, where=where, timeout_s=3600)
    plan = result["plan"]
    if result["exit_code"] != 0 or plan["rows"] != rows:
        raise RuntimeError(f"the dry run did not plan all {rows} rows: {plan} {result['error']}")
    verdict = "under" if result["peak_rss_mb"] < RSS_BUDGET_MB else "OVER"
    return [Row(
        "4", f"`--dry-run` on {rows:,} manifest rows: time · peak RSS",
        f"{result['wall_s']:.1f} s · {result['peak_rss_mb']:.0f} MB ({verdict} the {RSS_BUDGET_MB} MB budget)",
        conditions=f"CSV {size_mb:.0f} MB, all rows new: {sum(plan['submit_by_type'].values()):,} submits and "
                   f"{sum(plan['credits_by_type'].values()):,} credits planned; tracks staged in the ledger and "
                   f"snapshotted; interpreter start and imports ({result['import_s']:.1f} s) not counted",
    )]
