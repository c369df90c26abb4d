"""Row 2: end-to-end tracks/s and peak RSS of a real run against the plain asyncio + httpx baseline.

Both sides get a fresh simulator of the same songs (rendered once, cached), the same
request limit and poll schedule, the same jobs in flight and download concurrency, and both
give the simulator a live callback URL. The flow runs with its defaults otherwise (per-key
SQLite rate store, callbacks, ledger, decoding and hashing every stem, catalog publish at the
end) except the per-batch quality analysis, which makes calls the baseline does not (it fetches
every song's mix): the ratio compares the same calls, and the analysis's cost is measured in a
second flow run and shown next to it. Each side runs in its own process so peak RSS is its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.environment import BenchEnv
from benchmarks.simulation import small_songs, warm_render_cache, write_manifest
from benchmarks.table import Row, ratio
from stemcat.sim import SimServer

RATE_LIMIT = 1000
RATE_WINDOW_S = 1.0
BATCH_SIZE = 50
CONCURRENCY = 4
DOWNLOAD_CONCURRENCY = 8
POLL_INITIAL_S = 0.2
POLL_FACTOR = 1.5
POLL_MAX_S = 1.0
WARM_UP_TRACKS = 20


@dataclass(frozen=True)
class SideResult:
    wall_s: float
    peak_rss_mb: float
    detail: dict[str, Any]


def flow_params(manifest: Path, data_dir: Path, base_url: str, *, analyze: bool = True) -> dict[str, Any]:
    return dict(analyze=analyze,
        manifest=str(manifest), data_dir=str(data_dir), base_url=base_url, separation_type="separate_vocal",
        rate_limit=RATE_LIMIT, rate_window_s=RATE_WINDOW_S, concurrency=CONCURRENCY,
        download_concurrency=DOWNLOAD_CONCURRENCY, batch_size=BATCH_SIZE, poll_initial_s=POLL_INITIAL_S,
        poll_max_s=POLL_MAX_S, job_timeout_s=600.0, max_download_mb=50.0,
    )


def run_flow_side(env: BenchEnv, tracks: int, *, timeout_s: float, analyze: bool = False) -> SideResult:
    where = env.scratch(f"flow-{tracks}" + ("-analyze" if analyze else ""))
    with SimServer(small_songs(env.cache_dir, rate_limit=None), port=0) as sim:
        manifest = write_manifest(sim, tracks, where / "manifest.csv")
        params = flow_params(manifest, where / "data", sim.base_url, analyze=analyze)
        result = env.run_flow(params, where=where, timeout_s=timeout_s)
    if result["exit_code"] != 0 or result["counts"].get("downloaded", 0) != tracks:
        raise RuntimeError(f"the flow did not finish all {tracks} tracks: {result['counts']} {result['error']}")
    return SideResult(result["wall_s"], result["peak_rss_mb"], result)


def run_baseline_side(env: BenchEnv, tracks: int, *, timeout_s: float) -> SideResult:
    where = env.scratch(f"baseline-{tracks}")
    with SimServer(small_songs(env.cache_dir, rate_limit=None), port=0) as sim:
        manifest = write_manifest(sim, tracks, where / "manifest.csv")
        result = env.run_module("benchmarks.baseline", [
            "--manifest", str(manifest), "--base-url", sim.base_url, "--dest", str(where / "stems"),
            "--rate-limit", str(RATE_LIMIT), "--rate-window", str(RATE_WINDOW_S),
            "--in-flight", str(BATCH_SIZE * CONCURRENCY), "--download-concurrency", str(DOWNLOAD_CONCURRENCY),
            "--poll-initial", str(POLL_INITIAL_S), "--poll-factor", str(POLL_FACTOR), "--poll-max", str(POLL_MAX_S),
        ], out=where / "baseline-result.json", timeout_s=timeout_s)
    if result["counts"].get("done", 0) != tracks:
        raise RuntimeError(f"the baseline did not finish all {tracks} tracks: {result['counts']}")
    return SideResult(result["wall_s"], result["peak_rss_mb"], result)


def rss_growth(samples: list[list[float]]) -> str:
    """RSS at the middle of the run and at its end: flat memory shows as equal numbers."""
    if len(samples) < 4:
        return ""
    middle = samples[len(samples) // 2][1]
    end = samples[-1][1]
    return f"RSS mid-run {middle:.0f} MB → end {end:.0f} MB"


def prefect_task_overhead(env: BenchEnv, tasks: int) -> dict[str, Any]:
    """Milliseconds per Prefect task run against the session's server (see benchmarks.prefect_overhead)."""
    where = env.scratch("prefect-overhead")
    return env.run_module("benchmarks.prefect_overhead", ["--tasks", str(tasks)], out=where / "overhead.json",
                          timeout_s=600)


def _median(results: list[SideResult]) -> SideResult:
    return sorted(results, key=lambda r: r.wall_s)[len(results) // 2]


def _spread(results: list[SideResult]) -> str:
    walls = sorted(r.wall_s for r in results)
    return "" if len(walls) < 2 else f", runs {walls[0]:.1f}–{walls[-1]:.1f} s"


def measure(
    env: BenchEnv, sizes: Sequence[int], *, overhead_tasks: int = 200, analysis_up_to: int = 1000,
    repeats: int = 3, repeat_up_to: int = 1000, warm_up_tracks: int = WARM_UP_TRACKS,
) -> list[Row]:
    """Up to `repeat_up_to` tracks, `repeats` flow/baseline pairs run alternately and each side's
    median is reported: two runs of one side on this 2-core machine differ by up to 15%."""
    config = small_songs(env.cache_dir, rate_limit=None)
    warm_s = warm_render_cache(config, max(sizes))
    overhead = prefect_task_overhead(env, overhead_tasks)
    # Not measured: the first flow run against a fresh Prefect server pays one-off costs
    # (measured: 20 tracks took 16 s as a first run; 100 tracks 34 s as a first run, 5 s after).
    warm_up = run_flow_side(env, min(warm_up_tracks, min(sizes)), timeout_s=600) if warm_up_tracks else None
    rows = []
    for letter, tracks in zip("abcdefgh", sizes, strict=False):
        timeout_s = 600 + tracks * 0.5
        flows, baselines = [], []
        for _pair in range(repeats if tracks <= repeat_up_to else 1):
            flows.append(run_flow_side(env, tracks, timeout_s=timeout_s))
            baselines.append(run_baseline_side(env, tracks, timeout_s=timeout_s))
        flow, baseline = _median(flows), _median(baselines)
        conditions = (
            (f"median of {len(flows)} alternating flow/baseline pairs; " if len(flows) > 1 else "")
            + f"sim limit off, both paced at {RATE_LIMIT} req/{RATE_WINDOW_S:g} s; {BATCH_SIZE * CONCURRENCY} jobs "
            f"in flight, {DOWNLOAD_CONCURRENCY} downloads; 2 stems × 1 s 8 kHz per track; "
            f"{rss_growth(flow.detail['rss_samples'])}"
        )
        if tracks <= analysis_up_to:
            analysed = run_flow_side(env, tracks, timeout_s=timeout_s * 2, analyze=True)
            conditions += (
                f"; with the per-batch quality analysis on (the default; it also fetches and decodes every "
                f"mix): {analysed.wall_s:.1f} s, {ratio(analysed.wall_s, baseline.wall_s)} the baseline, "
                f"{analysed.peak_rss_mb:.0f} MB"
            )
        if letter == "a":
            conditions += (
                f"; Prefect costs {overhead['ms_per_task_sequential']:.0f} ms per task run awaited alone, "
                f"{overhead['ms_per_task_concurrent']:.0f} ms each when {overhead_tasks} run at once, and the flow "
                f"makes 1 task run per {BATCH_SIZE} tracks (2 with the analysis); one-off: Prefect server start "
                f"{env.prefect_start_s:.0f} s, render cache warm-up {warm_s:.0f} s"
                + (f", an unmeasured warm-up run of {warm_up_tracks} tracks {warm_up.wall_s:.1f} s" if warm_up else "")
            )
        rows.append(Row(
            row_id=f"2{letter}",
            measure=f"end-to-end, {tracks:,} tracks: tracks/s · peak RSS",
            stemcat=(f"{tracks / flow.wall_s:.1f} tracks/s · {flow.peak_rss_mb:.0f} MB "
                     f"({flow.wall_s:.1f} s{_spread(flows)})"),
            baseline=(f"{tracks / baseline.wall_s:.1f} tracks/s · {baseline.peak_rss_mb:.0f} MB "
                      f"({baseline.wall_s:.1f} s{_spread(baselines)})"),
            ratio=f"{ratio(flow.wall_s, baseline.wall_s)} time",
            conditions=conditions,
        ))
    return rows
