"""Row 8: API requests per separated job at the cap, with callbacks and without, short and long separations.

The simulator enforces the cap (20 requests / 10 s in full mode) and answers every separation in
a fixed time (0.5 s and 30 s). For each separation time one simulator serves two runs of the same
manifest (separate data dirs, one after the other, in one flow process): one with the run's own
loopback callback receiver, one whose callback URL the simulator cannot reach (the discard port),
so every job must be polled. The count is the run summary's: every API request the run sent
(submits, polls, the two balance reads, anything else) ÷ the jobs it saw finish. The ideal is 1
with callbacks (the submit) and 2 without (submit and one poll). The flow runs with its defaults
(poll schedule timed from observed latencies, 60 s longest wait) except `analyze=False` (the
analysis fetches mixes: file downloads, not API calls).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.environment import BenchEnv
from benchmarks.row1_pacing import Cap
from benchmarks.simulation import small_songs, write_manifest
from benchmarks.table import Row
from stemcat.sim import SimServer

GOAL_WITH_CALLBACKS = 1.05
GOAL_WITHOUT = 2.1
UNREACHABLE_RECEIVER = "http://127.0.0.1:9"  # discard port: the simulator's callbacks never arrive


@dataclass(frozen=True)
class Case:
    separation_s: float
    callbacks: bool
    result: dict[str, Any]

    @property
    def goal(self) -> float:
        return GOAL_WITH_CALLBACKS if self.callbacks else GOAL_WITHOUT

    @property
    def per_job(self) -> float:
        return float(self.result["requests_per_job"] or 0.0)

    @property
    def per_job_past_balance(self) -> float:
        """Requests per job less the run's fixed balance reads (one before, one after)."""
        requests = self.result["requests"]
        jobs = self.result["jobs_finished"] or 1
        return (sum(requests.values()) - requests.get("balance", 0)) / jobs


def _params(manifest: str, data_dir: str, base_url: str, cap: Cap, *, callbacks: bool) -> dict[str, Any]:
    params: dict[str, Any] = dict(manifest=manifest, data_dir=data_dir, base_url=base_url,
                                  separation_type="separate_vocal", rate_limit=cap.limit, rate_window_s=cap.window_s,
                                  analyze=False)
    if not callbacks:
        params["callback_url"] = UNREACHABLE_RECEIVER
    return params


def _run_series(env: BenchEnv, where: Path, series: list[list[dict[str, Any]]], *, timeout_s: float,
                parallel: bool) -> list[dict[str, Any]]:
    """Each simulator's runs in one flow process, one after another; ``parallel``: every run in its own process, all
    at once."""
    if parallel:
        series = [[run] for runs in series for run in runs]
    files = []
    for index, runs in enumerate(series):
        params_file = where / f"runs-{index}.json"
        params_file.write_text(json.dumps(runs))
        files.append((params_file, where / f"results-{index}.json"))
    if not parallel:
        return [run for params, out in files for run in env.run_module(
            "benchmarks.flow_series", ["--params", str(params)], out=out, timeout_s=timeout_s)["runs"]]
    procs = [env.start_module("benchmarks.flow_series", ["--params", str(params), "--out", str(out)],
                              log=out.with_suffix(".log")) for params, out in files]
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    results = []
    for proc, (_params, out) in zip(procs, files, strict=True):
        if proc.returncode != 0 or not out.exists():
            log = out.with_suffix(".log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"benchmarks.flow_series failed with exit status {proc.returncode}:\n{log}")
        results += json.loads(out.read_text())["runs"]
    return results


def run_cases(env: BenchEnv, *, cap: Cap, jobs: int, separations_s: tuple[float, ...],
              parallel: bool = False) -> tuple[list[Case], int, int]:
    """Every case; also the simulators' 430 count and busiest window (all cases together).

    ``parallel`` (the quick smoke size, where the numbers mean nothing) runs every case at once, each in
    its own process: the two runs on one simulator then share its key's budget.
    """
    where = env.scratch("requests-per-job")
    sims = []
    series: list[list[dict[str, Any]]] = []
    labels: list[tuple[float, bool]] = []
    try:
        for seconds in separations_s:
            config = small_songs(env.cache_dir, rate_limit=cap.limit, rate_window_s=cap.window_s).model_copy(
                update={"processing_s": (seconds, seconds)})
            sim = SimServer(config, port=0).start()
            sims.append(sim)
            manifest = write_manifest(sim, jobs, where / f"manifest-{seconds:g}s.csv")
            series.append([])
            for callbacks in (True, False):
                data_dir = where / f"data-{seconds:g}s-{'callbacks' if callbacks else 'polling'}"
                series[-1].append(_params(str(manifest), str(data_dir), sim.base_url, cap, callbacks=callbacks))
                labels.append((seconds, callbacks))
        timeout_s = sum(2 * jobs / cap.rate + s + 120 for s, _ in labels)
        results = _run_series(env, where, series, timeout_s=timeout_s, parallel=parallel)
        refused = sum(sim.stats().rate_limited for sim in sims)
        busiest = max(sim.stats().max_requests_in_window for sim in sims)
    finally:
        for sim in sims:
            sim.stop()
    cases = [Case(seconds, callbacks, result) for (seconds, callbacks), result in zip(labels, results, strict=True)]
    for case in cases:
        if case.result["exit_code"] != 0 or case.result["jobs_finished"] != jobs:
            raise RuntimeError(f"a run did not finish all {jobs} jobs: {case.result}")
    return cases, refused, busiest


def measure(
    env: BenchEnv, *, cap: Cap, jobs: int, separations_s: tuple[float, ...], parallel: bool = False
) -> list[Row]:
    cases, refused, busiest = run_cases(env, cap=cap, jobs=jobs, separations_s=separations_s, parallel=parallel)
    rows = []
    for letter, case in zip("abcdefgh", cases, strict=False):
        requests = case.result["requests"]
        kinds = ", ".join(f"{kind} {n}" for kind, n in requests.items() if n)
        verdict = "met" if case.per_job <= case.goal else "not met"
        how = "with callbacks" if case.callbacks else "without callbacks (every job polled)"
        rows.append(Row(
            f"8{letter}", f"API requests per separated job at the cap, {how}, separations of {case.separation_s:g} s",
            (f"{case.per_job:.3f} requests/job ({kinds}; {case.result['jobs_finished']} jobs); "
             f"{case.per_job_past_balance:.3f} without the run's {requests.get('balance', 0)} balance reads"),
            baseline=f"ideal {1 if case.callbacks else 2}",
            ratio=f"{case.per_job:.3f} (goal ≤ {case.goal:g}: {verdict}, by {case.goal - case.per_job:+.3f})",
            conditions=(f"cap {cap.describe()} enforced by the simulator (430s over all row-8 runs: {refused}; "
                        f"busiest window {busiest}/{cap.limit}); {jobs} separate_vocal jobs per run, each "
                        f"finishing {case.separation_s:g} s after its submit; flow defaults except analyze off; "
                        f"run wall {case.result['wall_s']:.0f} s"
                        + ("; every case ran at once (quick)" if parallel else "")),
        ))
    return rows
