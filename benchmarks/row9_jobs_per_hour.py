"""Row 9: jobs per hour at one key's cap, real split_stem audio, analysis on, and the cores that would take.

One measured end-to-end run: the simulator serves realistic songs (`songs="realistic"`: every
split_stem job is 12 stems + the mix, 3-minute 128 kbps MP3s) under the documented cap, and a
flow process separates ``jobs`` of them with its defaults (callbacks to its own receiver, analysis
on: every stem and the mix decoded once and measured in the analysis pool). Measured: jobs/s on
this machine (wall clock of the flow call) and the stemcat process's CPU-seconds per job (the
flow process, all its threads, plus its analysis worker processes; the simulator runs in this
benchmark process and the Prefect server in its own, neither counted: the Prefect server's is
shown apart).

At one key's cap (20 requests / 10 s) a job costs one request with callbacks, so the key allows
2 jobs/s (7,200/h). Cores needed to keep up with it = 2 jobs/s × CPU-s per job ÷ the analysis
pool's efficiency at N workers (row 7's, measured in the same invocation, else here).
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks import row7_analysis_scaling
from benchmarks.environment import BenchEnv
from benchmarks.row1_pacing import DOCUMENTED_LIMIT, DOCUMENTED_WINDOW_S
from benchmarks.row6_analysis_cpu import describe_songs, realistic_jobs, song_set
from benchmarks.simulation import PLENTY_OF_CREDITS
from benchmarks.table import Row
from stemcat.sim import SimConfig, SimServer, make_tracks_manifest

GOAL_CORES = 16.0
KEY_JOBS_PER_S = DOCUMENTED_LIMIT / DOCUMENTED_WINDOW_S  # one request per job with callbacks


def run_realistic(env: BenchEnv, *, jobs: int, quick: bool) -> tuple[dict[str, Any], float | None, dict[str, Any]]:
    """The flow's result, the Prefect server's CPU-s during the run, and the simulator's counters."""
    root, spec = song_set(env, quick=quick)
    realistic_jobs(env, quick=quick)  # rendered before the run, not during it
    where = env.scratch("realistic-run")
    config = SimConfig(seed=303, songs="realistic", realistic=spec, cache_dir=root, rate_limit=DOCUMENTED_LIMIT,
                       rate_window_s=DOCUMENTED_WINDOW_S, initial_credits=PLENTY_OF_CREDITS, callback_attempts=1)
    with SimServer(config, port=0) as sim:
        manifest = make_tracks_manifest(sim, jobs, where / "manifest.csv", types=("split_stem",))
        params = dict(manifest=str(manifest), data_dir=str(where / "data"), base_url=sim.base_url,
                      separation_type="split_stem", rate_limit=DOCUMENTED_LIMIT, rate_window_s=DOCUMENTED_WINDOW_S)
        params_file = where / "runs.json"
        params_file.write_text(json.dumps([params]))
        prefect_before = env.prefect_cpu_s()
        out = env.run_module("benchmarks.flow_series", ["--params", str(params_file)], out=where / "results.json",
                             timeout_s=600 + 120 * jobs)
        prefect_after = env.prefect_cpu_s()
        stats = sim.stats()
    result = out["runs"][0]
    if result["exit_code"] != 0 or result["counts"].get("downloaded", 0) != jobs:
        raise RuntimeError(f"the run did not finish all {jobs} jobs: {result['counts']} {result['error']}")
    prefect_s = None if prefect_before is None or prefect_after is None else prefect_after - prefect_before
    return result, prefect_s, {"refused": stats.rate_limited, "busiest": stats.max_requests_in_window}


def measure(env: BenchEnv, *, jobs: int, quick: bool, jobs_per_worker: int, rounds: int) -> list[Row]:
    _root, spec = song_set(env, quick=quick)
    result, prefect_s, sim = run_realistic(env, jobs=jobs, quick=quick)
    if "efficiency" not in row7_analysis_scaling.LAST:  # row 7 did not run in this invocation
        row7_analysis_scaling.scaling(realistic_jobs(env, quick=quick), jobs_per_worker=jobs_per_worker,
                                      rounds=rounds)
        source = "measured here (row 7 did not run)"
    else:
        source = "row 7's"
    efficiency = row7_analysis_scaling.LAST["efficiency"]
    workers = int(row7_analysis_scaling.LAST["workers"])
    rate = jobs / result["wall_s"]
    main_s = result["cpu_self_s"] / jobs
    pool_s = result["cpu_children_s"] / jobs
    per_job = main_s + pool_s
    cores = KEY_JOBS_PER_S * per_job / efficiency
    verdict = "met" if cores <= GOAL_CORES else "not met"
    prefect = "" if prefect_s is None else f"; Prefect server (not counted) {prefect_s / jobs:.2f} CPU-s/job"
    return [Row(
        "9", "jobs per hour at one key's cap (real split_stem audio, analysis on): measured here · cores for 2 jobs/s",
        (f"{rate:.3f} jobs/s = {rate * 3600:,.0f} jobs/h here · {per_job:.2f} CPU-s/job (flow process "
         f"{main_s:.2f}, analysis workers {pool_s:.2f}) · {cores:.1f} cores for 2 jobs/s (7,200/h)"),
        baseline=f"the key's cap: {KEY_JOBS_PER_S:g} jobs/s = {KEY_JOBS_PER_S * 3600:,.0f}/h (1 request/job)",
        ratio=f"{cores:.1f} cores (goal ≤ {GOAL_CORES:g}: {verdict}, by {GOAL_CORES - cores:+.1f})",
        conditions=(f"one run of {jobs} split_stem jobs ({result['wall_s']:.1f} s, requests "
                    f"{', '.join(f'{k} {n}' for k, n in result['requests'].items() if n)}); simulator "
                    f"`songs=\"realistic\"` ({describe_songs(spec)}), cap {DOCUMENTED_LIMIT} req / "
                    f"{DOCUMENTED_WINDOW_S:g} s enforced (430s: {sim['refused']}, busiest window "
                    f"{sim['busiest']}/{DOCUMENTED_LIMIT}), separations 0.2–0.6 s; flow defaults (callbacks, "
                    f"analysis on, {workers} analysis workers); CPU = getrusage of the flow process over the run "
                    f"(all threads) + its reaped analysis workers, simulator excluded{prefect}; cores = "
                    f"{KEY_JOBS_PER_S:g} × {per_job:.2f} ÷ efficiency {efficiency:.2f} ({source}, {workers} "
                    f"workers); includes the run's fixed cost (flow start, catalog publish) spread over {jobs} jobs"),
    )]
