"""Row 7: real-audio analysis jobs/s through ``AnalysisPool`` with 1, 2, … N worker processes (N = cores).

Each job is a realistic split_stem job (12 stems + mix, decoded once and measured by every meter,
as a run's analysis does), cycling through the realistic song set so every worker count does the
same mix of songs. Wall clock, after one unmeasured warm-up job per worker (process spawn and
imports). Each count is measured ``rounds`` times, alternating counts, and the best rate is kept
(other work on the machine only ever slows a round down). Efficiency of n workers:
rate(n) ÷ (n × rate(1)); the goal is ≥ 0.8 of linear at N.

The last efficiency measured is kept in ``LAST`` for row 9's projection.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.environment import BenchEnv
from benchmarks.row6_analysis_cpu import Job, describe_songs, realistic_jobs, song_set
from benchmarks.table import Row
from stemcat.tasks.analysis.decode import JobRequest, decode_job
from stemcat.tasks.analysis.metrics import QualityThresholds
from stemcat.tasks.analysis.pool import AnalysisPool, default_workers

GOAL = 0.8
LAST: dict[str, float] = {}  # "workers", "efficiency", "rate_1": the latest measurement in this process


@dataclass(frozen=True)
class PoolRate:
    jobs_per_s: float
    cpu_per_job_s: float  # the workers' CPU-seconds per job (time.process_time inside each job)
    others_cores: float  # machine-wide busy cores during the timing, less the workers' and this process's


def timed_job(request: JobRequest) -> float:
    """One analysis job in a worker; returns the CPU-seconds it took there."""
    started = time.process_time()
    decode_job(request)
    return time.process_time() - started


def _busy_s() -> float | None:
    """Machine-wide busy CPU-seconds so far (from /proc/stat), None where unreadable."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def pool_rate(jobs: list[Job], workers: int, count: int) -> PoolRate:
    """``count`` jobs through a pool of ``workers`` processes: jobs/s (wall clock) and the CPU it took."""
    requests = [JobRequest(stems, mix, QualityThresholds()) for stems, mix in jobs]
    with AnalysisPool(workers) as pool:

        async def run(n: int) -> list[float]:
            return list(await asyncio.gather(*(pool.run(timed_job, requests[i % len(requests)]) for i in range(n))))

        asyncio.run(run(workers))  # start every worker outside the timing
        busy_before, own_before, started = _busy_s(), time.process_time(), time.monotonic()
        cpu = asyncio.run(run(count))
        wall = time.monotonic() - started
        busy_after, own = _busy_s(), time.process_time() - own_before
    others = 0.0 if busy_before is None or busy_after is None else (busy_after - busy_before - sum(cpu) - own) / wall
    return PoolRate(count / wall, sum(cpu) / count, max(0.0, others))


def scaling(jobs: list[Job], *, jobs_per_worker: int, rounds: int) -> dict[int, PoolRate]:
    """Best jobs/s for 1..N workers; also stores the N-worker efficiency in ``LAST``."""
    sizes = list(range(1, default_workers() + 1))
    best: dict[int, PoolRate] = {}
    for _round in range(rounds):
        for workers in sizes:
            rate = pool_rate(jobs, workers, workers * jobs_per_worker)
            if workers not in best or rate.jobs_per_s > best[workers].jobs_per_s:
                best[workers] = rate
    top = max(sizes)
    LAST.update(workers=float(top), efficiency=best[top].jobs_per_s / (top * best[1].jobs_per_s),
                rate_1=best[1].jobs_per_s)
    return best


def _load() -> str:
    try:
        return ", ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "?"


def measure(env: BenchEnv, *, quick: bool, jobs_per_worker: int, rounds: int) -> list[Row]:
    _root, spec = song_set(env, quick=quick)
    jobs = realistic_jobs(env, quick=quick)
    load_before = _load()
    rates = scaling(jobs, jobs_per_worker=jobs_per_worker, rounds=rounds)
    one = rates[1].jobs_per_s
    cells = [f"{n} worker{'s' if n > 1 else ''} {r.jobs_per_s:.3f} jobs/s ({r.jobs_per_s / (n * one):.2f} of linear)"
             for n, r in rates.items()]
    top = max(rates)
    efficiency = rates[top].jobs_per_s / (top * one)
    cpu = ", ".join(f"{n}: {r.cpu_per_job_s:.2f}" for n, r in rates.items())
    others = ", ".join(f"{n}: {r.others_cores:.2f}" for n, r in rates.items())
    verdict = "met" if efficiency >= GOAL else "not met"
    return [Row(
        "7", f"real-audio analysis jobs/s with 1…{top} worker processes, ÷ (n × the 1-worker rate)",
        " · ".join(cells),
        baseline=f"1 worker × {top}: {top * one:.3f} jobs/s (linear)",
        ratio=f"{efficiency:.2f} of linear at {top} workers (goal ≥ {GOAL:g}: {verdict})",
        conditions=(f"AnalysisPool (spawned worker processes), decode + every meter per job; {describe_songs(spec)}, "
                    f"cycled; {jobs_per_worker} jobs per worker per round, best of {rounds} alternating rounds, "
                    f"wall clock after a warm-up job per worker; {os.cpu_count()} cores; "
                    f"load average {load_before} before, {_load()} after; the workers' CPU-s per job by worker "
                    f"count {cpu} (equal: the pool adds no work per job); cores busy with other processes during the "
                    f"timed rounds kept, by worker count: {others} (from /proc/stat, less the workers' and the "
                    f"benchmark's own CPU)"),
    )]
