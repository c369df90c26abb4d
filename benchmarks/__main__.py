"""`python -m benchmarks [--quick] [--only N ...]`: run the suite and print the markdown table.

Every row is measured in this one invocation, on this machine; see benchmarks/README.md for
what each row means. `--quick` is the smoke size the test suite runs (numbers meaningless).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks import (
    row1_pacing,
    row2_throughput,
    row3_downloads,
    row4_dry_run,
    row5_spend_report,
    row6_analysis_cpu,
    row7_analysis_scaling,
    row8_requests_per_job,
    row9_jobs_per_hour,
    row10_workers,
    row11_claim_latency,
)
from benchmarks.environment import BenchEnv
from benchmarks.machine import describe_machine
from benchmarks.row1_pacing import DOCUMENTED_LIMIT, DOCUMENTED_WINDOW_S, Cap
from benchmarks.table import Row, render_markdown

ROW_IDS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is."""

    sustain_s: float
    pair_s: float
    cap: Cap
    throughput: tuple[int, ...]
    download_songs: int
    download_song_s: float
    download_rounds: int
    dry_run_rows: int
    catalog_stems: int
    overhead_tasks: int
    repeats: int = 3  # row 2: alternating flow/baseline pairs per size up to 1,000 tracks (medians)
    analysis_up_to: int = 1_000  # row 2: also time a run with the quality analysis up to this size
    warm_up_tracks: int = 20  # row 2: an unmeasured first flow run (0: none)
    cpu_repeats: int = 3  # row 6: best of this many per stage
    jobs_per_worker: int = 4  # row 7 (and row 9 without row 7): analysis jobs per worker per round
    scaling_rounds: int = 2  # row 7: alternating rounds, best rate kept
    request_cap: Cap = Cap(DOCUMENTED_LIMIT, DOCUMENTED_WINDOW_S)  # row 8
    request_jobs: int = 30  # row 8: jobs per case
    separations_s: tuple[float, ...] = (0.5, 30.0)  # row 8
    realistic_jobs: int = 10  # row 9
    worker_cap: Cap = Cap(10, DOCUMENTED_WINDOW_S)  # row 10: half the documented rate, so the key binds on 2 cores
    worker_jobs: int = 80  # row 10: jobs per case, all workers together
    worker_cases: tuple[row10_workers.Case, ...] = (
        row10_workers.Case(1, False), row10_workers.Case(2, False), row10_workers.Case(4, False),
        row10_workers.Case(2, True), row10_workers.Case(4, True), row10_workers.Case(1, False, callbacks=False),
        row10_workers.Case(4, False, callbacks=False))
    claim_keys: int = 1_000  # row 11: timed claims per process and case
    quick: bool = False


FULL = Sizes(
    sustain_s=600.0, pair_s=120.0, cap=Cap(DOCUMENTED_LIMIT, DOCUMENTED_WINDOW_S), throughput=(100, 1_000, 10_000),
    download_songs=8, download_song_s=30.0, download_rounds=3, dry_run_rows=1_000_000, catalog_stems=1_000_000,
    overhead_tasks=200,
)
QUICK = Sizes(
    sustain_s=3.0, pair_s=3.0, cap=Cap(10, 1.0), throughput=(10,), download_songs=2, download_song_s=2.0,
    download_rounds=1, dry_run_rows=2_000, catalog_stems=10_000, overhead_tasks=10, repeats=1, analysis_up_to=0,
    warm_up_tracks=0, cpu_repeats=1, jobs_per_worker=1, scaling_rounds=1, request_cap=Cap(10, 1.0), request_jobs=4,
    separations_s=(0.5,), realistic_jobs=1, worker_cap=Cap(10, 1.0), worker_jobs=1,
    worker_cases=(row10_workers.Case(1, False),), claim_keys=20, quick=True,
)


def _scenarios(sizes: Sizes) -> dict[str, Callable[[BenchEnv], list[Row]]]:
    return {
        "1": lambda env: row1_pacing.measure(env, seconds=sizes.sustain_s, pair_seconds=sizes.pair_s, cap=sizes.cap,
                                             quick=sizes.quick),
        "2": lambda env: row2_throughput.measure(env, sizes.throughput, overhead_tasks=sizes.overhead_tasks,
                                                    repeats=sizes.repeats, analysis_up_to=sizes.analysis_up_to,
                                                    warm_up_tracks=sizes.warm_up_tracks),
        "3": lambda env: row3_downloads.measure(env, songs=sizes.download_songs, seconds=sizes.download_song_s,
                                                rounds=sizes.download_rounds),
        "4": lambda env: row4_dry_run.measure(env, rows=sizes.dry_run_rows),
        "5": lambda env: row5_spend_report.measure(env, stem_rows=sizes.catalog_stems),
        "6": lambda env: row6_analysis_cpu.measure(env, quick=sizes.quick, repeats=sizes.cpu_repeats),
        "7": lambda env: row7_analysis_scaling.measure(env, quick=sizes.quick, jobs_per_worker=sizes.jobs_per_worker,
                                                       rounds=sizes.scaling_rounds),
        "8": lambda env: row8_requests_per_job.measure(env, cap=sizes.request_cap, jobs=sizes.request_jobs,
                                                       separations_s=sizes.separations_s, parallel=sizes.quick),
        "9": lambda env: row9_jobs_per_hour.measure(env, jobs=sizes.realistic_jobs, quick=sizes.quick,
                                                    jobs_per_worker=sizes.jobs_per_worker,
                                                    rounds=sizes.scaling_rounds),
        "10": lambda env: row10_workers.measure(env, jobs=sizes.worker_jobs, cap=sizes.worker_cap,
                                                cases=sizes.worker_cases, quick=sizes.quick),
        "11": lambda env: row11_claim_latency.measure(env, keys=sizes.claim_keys),
    }


def _load() -> str:
    try:
        return ", ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "?"


def run_suite(sizes: Sizes, only: Sequence[str], env: BenchEnv, *, log: Callable[[str], None]) -> list[Row]:
    """Measure the chosen rows in order; a row that fails becomes a FAILED line, the others still run."""
    rows: list[Row] = []
    for row_id, scenario in _scenarios(sizes).items():
        if row_id not in only:
            continue
        started = time.perf_counter()
        log(f"row {row_id}: running (load average {_load()})")
        try:
            rows.extend(scenario(env))
        except Exception as error:  # reported in the table; the run's exit status says so too
            log(traceback.format_exc())
            rows.append(Row(row_id, "FAILED", f"{type(error).__name__}: {str(error)[:200]}"))
        log(f"row {row_id}: {time.perf_counter() - started:.0f} s")
    return rows


def report(rows: Sequence[Row], *, quick: bool, load_before: str, load_after: str) -> str:
    notes = [
        f"Machine: {describe_machine()}. Load average (1, 5, 15 min) before: {load_before}; after: {load_after}.",
        "Simulator clock: real time throughout (no acceleration); its rate window is always real time.",
    ]
    if quick:
        notes.insert(0, "QUICK smoke sizes: the numbers mean nothing.")
    return render_markdown(rows) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smallest sizes (what the test suite runs)")
    parser.add_argument("--only", action="append", choices=ROW_IDS, help="run only this row (repeatable)")
    parser.add_argument("--sustain-seconds", type=float, help="length of row 1b (default 600)")
    parser.add_argument("--pair-seconds", type=float, help="length of rows 1a, 1c and 1d (default 120)")
    parser.add_argument("--sizes", type=int, nargs="+", help="track counts of row 2 (default 100 1000 10000)")
    parser.add_argument("--repeats", type=int, help="row 2: flow/baseline pairs per size up to 1,000 tracks (default 3)")
    parser.add_argument("--request-jobs", type=int, help="row 8: jobs per case (default 30)")
    parser.add_argument("--realistic-jobs", type=int, help="row 9: split_stem jobs in the run (default 10)")
    parser.add_argument("--worker-jobs", type=int, help="row 10: jobs per case, all workers together (default 80)")
    parser.add_argument("--claims", type=int, help="row 11: timed claims per process and case (default 1000)")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    parser.add_argument("--workdir", type=Path, help="keep scratch files here instead of a temp dir")
    parser.add_argument("--cache-dir", type=Path, help="rendered simulator audio (default ~/.cache/stemcat-bench)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.sustain_seconds:
        sizes = replace(sizes, sustain_s=args.sustain_seconds)
    if args.pair_seconds:
        sizes = replace(sizes, pair_s=args.pair_seconds)
    if args.sizes:
        sizes = replace(sizes, throughput=tuple(args.sizes))
    if args.repeats:
        sizes = replace(sizes, repeats=args.repeats)
    if args.request_jobs:
        sizes = replace(sizes, request_jobs=args.request_jobs)
    if args.realistic_jobs:
        sizes = replace(sizes, realistic_jobs=args.realistic_jobs)
    if args.worker_jobs:
        sizes = replace(sizes, worker_jobs=args.worker_jobs)
    if args.claims:
        sizes = replace(sizes, claim_keys=args.claims)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    load_before = _load()
    with BenchEnv(workdir=args.workdir, cache_dir=args.cache_dir) as env:
        log(f"Prefect server up in {env.prefect_start_s:.1f} s; scratch in {env.root}")
        rows = run_suite(sizes, args.only or ROW_IDS, env, log=log)
    text = report(rows, quick=args.quick, load_before=load_before, load_after=_load())
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if any(row.measure == "FAILED" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
