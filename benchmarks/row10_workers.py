"""Row 10: 1, 2 and 4 worker processes on one key and one PostgreSQL ledger: jobs/s and requests per job at the cap.

Each worker is a real `stemcat run` process with its own data directory; all of them share one
PostgreSQL ledger (which also holds the key's rate budget: the default with a PostgreSQL ledger),
one simulator, its one key, and the session's Prefect server. The simulator serves realistic
songs (`songs="realistic"`: 3-minute 44.1 kHz stereo 128 kbps MP3s; a separate_vocal job is a
vocals and an instrumental file, about 2.9 MB each) and enforces the cap.

The cap must be what binds, not this machine's CPU: every worker downloads, hashes and decodes
(verifies) every file it fetches, on 2 cores shared with the simulator, PostgreSQL and the
Prefect server. So the row runs separate_vocal jobs with the per-batch analysis off (it would
decode and measure every stem again in the analysis pool: CPU work, no API request, measured by
rows 6, 7 and 9), under a cap of half the documented rate (10 requests / 10 s: one job a second
with callbacks). The API calls' share of the cap over the measured interval shows that it bound.

Two manifests shapes from one list of tracks: disjoint shards (row by row, what the fan-out's
parent hands its children), and overlapping (with 2 or more workers): each worker gets its own
shard interleaved with the next worker's, so every key is in two manifests and wanted by two
workers at about the same moment. The claim decides which one pays; the other waits for its
taskId, polls once and downloads the stems into its own data directory (a request the ideal
does not count: with callbacks only the payer's receiver is called).

Measured: finished jobs (keys whose job is `downloaded` in the ledger, sampled every 0.25 s)
per second from one window after the first API request (past the empty window's burst) to the
last one finishing; the ideal is the cap's rate ÷ 1 request per job with callbacks, ÷ 2 without
(the cases whose callback URL the simulator cannot reach: every job is polled). API requests per
finished job are the simulator's counts (submits, polls, balance reads, generation look-ups)
over the whole run ÷ the keys finished. The baseline is 1 worker, measured in the same invocation.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import wait
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from benchmarks.environment import BenchEnv
from benchmarks.pg_cluster import NO_SERVER, Cluster
from benchmarks.row1_pacing import Cap, sustained
from benchmarks.row6_analysis_cpu import describe_songs, song_set
from benchmarks.simulation import PLENTY_OF_CREDITS, CounterSampler
from benchmarks.table import Row
from stemcat.sim import RealisticSongs, SimConfig, SimServer
from stemcat.sim.render import Renderer
from stemcat.sim.songs import song_name

VOCAL_FILES = ("vocals", "instrumental")
UNREACHABLE_RECEIVER = "http://127.0.0.1:9"  # discard port: the simulator's callbacks never arrive
API_ROUTES = {"generate": "submit", "record_info": "poll", "credit": "balance", "generation": "look-up"}


@dataclass(frozen=True)
class Case:
    workers: int
    overlap: bool
    callbacks: bool = True

    @property
    def ideal_requests_per_job(self) -> int:
        return 1 if self.callbacks else 2  # the submit; without its callback, one poll too

    def label(self) -> str:
        name = f"{self.workers} worker{'s' if self.workers > 1 else ''}"
        name += ", overlapping manifests" if self.overlap else (", disjoint shards" if self.workers > 1 else "")
        return name + ("" if self.callbacks else ", no callbacks (every job polled)")


@dataclass(frozen=True)
class CaseResult:
    case: Case
    jobs: int
    jobs_per_s: float
    steady: bool  # False: the run was too short for one window past the burst, jobs/s is over the whole run
    api_share: float  # API requests per second over the measured interval ÷ the cap's rate
    requests: dict[str, int]
    refused_430: int
    busiest: int
    worker_walls_s: list[float]
    load: str

    @property
    def requests_per_job(self) -> float:
        return sum(self.requests.values()) / self.jobs


def manifests(rows: Sequence[str], workers: int, *, overlap: bool) -> list[list[str]]:
    """Each worker's manifest rows: disjoint shards, or each shard interleaved with the next one (overlap)."""
    shards = [list(rows[index::workers]) for index in range(workers)]
    if not overlap or workers < 2:
        return shards
    mixed = []
    for index, own in enumerate(shards):
        other = shards[(index + 1) % workers]
        mixed.append([row for pair in zip(own, other, strict=False) for row in pair]
                     + own[len(other):] + other[len(own):])
    return mixed


def render_vocal_files(root: Path, spec: RealisticSongs) -> None:
    """Render every song's vocals and instrumental before the runs (an instrumental is ~10 CPU-s of encoding)."""
    renderer = Renderer(SimConfig(songs="realistic", realistic=spec, prerender=False), root)
    try:
        futures = [renderer.request_file(song_name(index), name) for index in range(spec.count) for name in VOCAL_FILES]
        wait(futures)
        for future in futures:
            future.result()
    finally:
        renderer.close()


class FinishedSampler:
    """Samples how many jobs the ledger holds as `downloaded`: (time.monotonic(), count)."""

    def __init__(self, url: str, every_s: float = 0.25) -> None:
        self.samples: list[tuple[float, int]] = []
        self._url = url
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="finished-jobs", daemon=True)
        self._con: Any = None

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), self._count()))
        if self._con is not None:
            self._con.close()

    def _count(self) -> int:
        import psycopg

        try:
            if self._con is None:  # one connection for the whole run: a new one forks a server process
                self._con = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
            row = self._con.execute("SELECT count(*) FROM jobs WHERE status = 'downloaded'").fetchone()
        except psycopg.Error:  # the first worker has not created the tables yet
            return 0
        return int(row[0]) if row else 0

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self.samples.append((time.monotonic(), self._count()))


def finished_rate(finished: Sequence[tuple[float, int]], first_request_at: float, window_s: float,
                  jobs: int) -> tuple[float, float, float, bool]:
    """Finished jobs/s from one window after the first request to the last finish: (rate, start, end, steady).

    When the run finished within that first window (smoke sizes), the rate is over the whole run instead.
    """
    done_at = next((at for at, count in finished if count >= jobs), finished[-1][0])
    start_at = first_request_at + window_s
    steady = done_at - start_at >= window_s
    if not steady:
        start_at = first_request_at
    before = max((count for at, count in finished if at <= start_at), default=0)
    seconds = max(done_at - start_at, 1e-9)
    return (jobs - before) / seconds, start_at, done_at, steady


def _start_worker(env: BenchEnv, where: Path, manifest_rows: list[str], *, base_url: str, ledger_url: str,
                  cap: Cap, callbacks: bool) -> tuple[subprocess.Popen[bytes], float]:
    manifest = where / "manifest.csv"
    manifest.write_text("\n".join(["task_id,audio_id,type", *manifest_rows]) + "\n")
    proc = env.start_module("stemcat", [
        "run", str(manifest), "--data-dir", str(where / "data"), "--base-url", base_url, "--ledger-url", ledger_url,
        "--type", "separate_vocal", "--rate-limit", str(cap.limit), "--rate-window", f"{cap.window_s:g}",
        "--no-analyze", *([] if callbacks else ["--callback-url", UNREACHABLE_RECEIVER])], log=where / "worker.log")
    return proc, time.monotonic()


def run_case(env: BenchEnv, cluster: Cluster, case: Case, *, jobs: int, cap: Cap, quick: bool) -> CaseResult:
    root, spec = song_set(env, quick=quick)
    where = env.scratch(f"workers-{case.workers}{'-overlap' if case.overlap else ''}"
                        f"{'' if case.callbacks else '-polled'}")
    config = SimConfig(seed=404, songs="realistic", realistic=spec, cache_dir=root, rate_limit=cap.limit,
                       rate_window_s=cap.window_s, initial_credits=PLENTY_OF_CREDITS, callback_attempts=1)
    ledger_url = cluster.database()
    with SimServer(config, port=0) as sim:
        rows = [f"{t.music_task_id},{t.audio_id},separate_vocal" for t in sim.create_tracks(jobs)]
        parts = manifests(rows, case.workers, overlap=case.overlap)
        with CounterSampler(sim, every_s=0.25) as requests, FinishedSampler(ledger_url) as finished:
            started = [_start_worker(env, env.scratch(f"worker-{index}"), part, base_url=sim.base_url,
                                     ledger_url=ledger_url, cap=cap, callbacks=case.callbacks)
                       for index, part in enumerate(parts)]
            deadline = time.monotonic() + 180 + 3 * jobs / cap.rate
            walls = []
            for proc, began in started:
                try:
                    proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    for other, _ in started:
                        other.kill()
                    raise RuntimeError(f"the workers did not finish in time; logs under {where.parent}") from None
                walls.append(time.monotonic() - began)
        stats = sim.stats()
    failed = [proc.returncode for proc, _ in started if proc.returncode != 0]
    if failed or finished.samples[-1][1] != jobs:
        raise RuntimeError(f"workers exited {failed or 0} with {finished.samples[-1][1]} of {jobs} jobs downloaded; "
                           f"logs under {where.parent}")
    first_request = next((s.at for s in requests.samples if s.api_requests > requests.samples[0].api_requests),
                         requests.samples[-1].at)
    rate, start_at, done_at, steady = finished_rate(finished.samples, first_request, cap.window_s, jobs)
    in_interval = [s for s in requests.samples if s.at <= done_at]
    api = sustained(in_interval, cap, stats.rate_limited, stats.max_requests_in_window)
    share = api.api_rate / cap.rate if steady else float("nan")
    counted = {kind: stats.requests_by_route.get(route, 0) for route, kind in API_ROUTES.items()}
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return CaseResult(case, jobs, rate, steady, share, counted, stats.rate_limited, stats.max_requests_in_window,
                      walls, load)


def _row(letter: str, result: CaseResult, baseline: CaseResult | None, cap: Cap, spec: RealisticSongs,
         describe_pg: str) -> Row:
    ideal = cap.rate / result.case.ideal_requests_per_job
    kinds = ", ".join(f"{kind} {n}" for kind, n in result.requests.items() if n)
    rate = f"{result.jobs_per_s:.3f} jobs/s ({result.jobs_per_s / ideal:.2f} of the ideal {ideal:g})"
    if not result.steady:
        rate += " over the whole run (too short for a steady state)"
    share = "" if not result.steady else f"; API calls {result.api_share:.0%} of the cap over that interval"
    stemcat = (f"{rate} · {result.requests_per_job:.3f} requests/job ({kinds}; {result.jobs} jobs){share}; "
               f"430s: {result.refused_430}; busiest window {result.busiest}/{cap.limit}")
    if baseline is None or baseline is result:
        per_job = result.case.ideal_requests_per_job
        base = f"the cap: {ideal:g} jobs/s at {per_job} request{'s' if per_job > 1 else ''}/job"
        ratio = f"{result.jobs_per_s / ideal:.2f} of ideal"
    else:
        base = f"1 worker: {baseline.jobs_per_s:.3f} jobs/s, {baseline.requests_per_job:.3f} requests/job"
        ratio = f"{result.jobs_per_s / baseline.jobs_per_s:.2f}× the 1-worker jobs/s"
    receiver = ("callbacks to each worker's receiver" if result.case.callbacks
                else f"callback URL {UNREACHABLE_RECEIVER} (never arrives): every job polled")
    manifests_text = ("overlapping: each worker's shard interleaved with the next worker's, every key in two "
                      "manifests" if result.case.overlap else "disjoint shards of one manifest")
    return Row(
        f"10{letter}", f"{result.case.label()} (`stemcat run` each) on one key and one PostgreSQL ledger: jobs/s · "
                       "API requests per finished job at the cap",
        stemcat, baseline=base, ratio=ratio,
        conditions=(f"cap {cap.describe()} enforced by the simulator, the budget shared in the ledger's database; "
                    f"{result.jobs} separate_vocal jobs, {manifests_text}; each worker its own data dir; "
                    f"{describe_songs(spec)} served, separations 0.2–0.6 s; {receiver}; "
                    f"analysis off (CPU work, no API requests; rows 6, 7, 9); jobs/s = keys finished (`downloaded`) "
                    f"from one window after the first request to the last; requests = every API request the "
                    f"simulator counted ÷ keys finished; worker wall times "
                    f"{', '.join(f'{w:.0f}' for w in result.worker_walls_s)} s (start-up included); "
                    f"{describe_pg}; load average after {result.load}"),
    )


def measure(env: BenchEnv, *, jobs: int, cap: Cap, cases: Sequence[Case], quick: bool) -> list[Row]:
    root, spec = song_set(env, quick=quick)
    render_vocal_files(root, spec)
    cluster = env.postgres()
    if cluster is None:
        return [Row("10", "worker processes on one key and one PostgreSQL ledger", f"not measured: {NO_SERVER}")]
    results = [run_case(env, cluster, case, jobs=jobs, cap=cap, quick=quick) for case in cases]
    rows = []
    for letter, result in zip("abcdefgh", results, strict=False):
        # The baseline: 1 worker with the same callbacks setting.
        baseline = next((r for r in results if r.case.workers == 1 and r.case.callbacks == result.case.callbacks), None)
        rows.append(_row(letter, result, baseline, cap, spec, cluster.describe))
    return rows
