"""Row 1: the rate a key sustains at the documented cap, the 430s it receives, and two runs sharing it.

The simulator enforces the cap on real time (its clock speed does not touch the rate window)
and counts every request on arrival, so rates and refusals here are what the API would see.
Sub-rows: (a) the client alone, nothing but paid submits; (b) a real run, where submits
and polls share the budget; (c) two runs on one key in two processes at once (default
per-key SQLite store); (d) the same on the PostgreSQL rate store (the budget of runs on several
machines; a throwaway server, or the database named by STEMCAT_BENCH_POSTGRES_URL).
The sustained rate is measured from one window after the first request to the moment the
runs are stopped, so neither the start-up of a run nor its shutdown (a flow process takes
seconds to exit after SIGTERM, sending nothing) is counted against it; 430s and the busiest
window count everything the simulator saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.environment import BENCH_API_KEY, BenchEnv
from benchmarks.row2_throughput import flow_params
from benchmarks.simulation import (
    CounterSample,
    CounterSampler,
    api_counters,
    small_songs,
    warm_render_cache,
    write_manifest,
)
from benchmarks.table import Row
from stemcat.client import GenerateRequest, SeparationType, SunoClient
from stemcat.client.ratelimit import SharedLimiter, budget_id, open_admission_store
from stemcat.sim import SimServer

POSTGRES_URL_ENV = "STEMCAT_BENCH_POSTGRES_URL"
DOCUMENTED_LIMIT = 20
DOCUMENTED_WINDOW_S = 10.0
_STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Cap:
    limit: int
    window_s: float

    @property
    def rate(self) -> float:
        return self.limit / self.window_s

    def describe(self) -> str:
        return f"{self.limit} req / {self.window_s:g} s"


@dataclass(frozen=True)
class Sustained:
    """What the simulator saw over the measured interval."""

    seconds: float
    api_rate: float
    submit_rate: float
    refused_430: int
    max_in_window: int


def sustained(samples: Sequence[CounterSample], cap: Cap, refused: int, max_in_window: int) -> Sustained:
    """Rates from one window after the first request to the last sample."""
    first_active = next((s for s in samples if s.api_requests > samples[0].api_requests), samples[-1])
    start_at = first_active.at + cap.window_s
    start = next((s for s in samples if s.at >= start_at), samples[-1])
    end = samples[-1]
    seconds = end.at - start.at
    if seconds <= 0:
        return Sustained(0.0, 0.0, 0.0, refused, max_in_window)
    return Sustained(
        seconds,
        (end.api_requests - start.api_requests) / seconds,
        (end.submits - start.submits) / seconds,
        refused,
        max_in_window,
    )


def _cells(result: Sustained, cap: Cap, *, submits_only: bool) -> tuple[str, str]:
    if submits_only:
        rate = f"submits {result.submit_rate / cap.rate:.1%} of cap"
    else:
        rate = (f"all calls {result.api_rate / cap.rate:.1%} of cap (submits {result.submit_rate / cap.rate:.0%}, "
                f"polls and balance reads the rest)")
    return rate, f"430s: {result.refused_430}; busiest window {result.max_in_window}/{cap.limit}"


async def _submit_stream(
    base_url: str, manifest_ids: list[tuple[str, str]], seconds: float, cap: Cap, state_dir: Path
) -> None:
    # The default per-key store, under the session's own state directory.
    store_path = state_dir / "stemcat" / f"rate-{budget_id(base_url, BENCH_API_KEY)}.sqlite"
    store = open_admission_store(f"sqlite://{store_path}", base_url=base_url, api_key=BENCH_API_KEY)
    limiter = SharedLimiter(store, cap.limit, cap.window_s)
    pending = iter(manifest_ids)
    deadline = time.monotonic() + seconds

    async def submitter() -> None:
        for task_id, audio_id in pending:
            if time.monotonic() >= deadline:
                return
            request = GenerateRequest(task_id=task_id, audio_id=audio_id, type=SeparationType.SEPARATE_VOCAL,
                                      callback_url="http://127.0.0.1:9/callback")
            await client.submit(request)

    async with SunoClient(api_key=BENCH_API_KEY, base_url=base_url, limiter=limiter) as client:
        await asyncio.gather(*(submitter() for _ in range(32)))
    await limiter.aclose()


def measure_client_submits(env: BenchEnv, cap: Cap, seconds: float) -> Row:
    config = small_songs(env.cache_dir, rate_limit=cap.limit, rate_window_s=cap.window_s)
    tracks = int(seconds * cap.rate) + 2 * cap.limit
    with SimServer(config.model_copy(update={"prerender": False}), port=0) as sim:
        ids = [(t.music_task_id, t.audio_id) for t in sim.create_tracks(tracks)]
        with CounterSampler(sim) as sampler:
            asyncio.run(_submit_stream(sim.base_url, ids, seconds, cap, Path(env.env["XDG_STATE_HOME"])))
        stats = sim.stats()
    result = sustained(sampler.samples, cap, stats.rate_limited, stats.max_requests_in_window)
    rate, refusals = _cells(result, cap, submits_only=True)
    return Row("1a", "sustained submit rate at the cap · 430s (client alone, paid submits only)",
               f"{rate}; {refusals}",
               conditions=f"cap {cap.describe()}; {result.seconds:.0f} s measured; 32 concurrent submitters; "
                          "default per-key SQLite store")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_flows_for(env: BenchEnv, cap: Cap, seconds: float, runs: int, rate_store: str | None,
                   name: str) -> Sustained:
    """`runs` flow processes on one key and one simulator, stopped after `seconds` of traffic."""
    config = small_songs(env.cache_dir, rate_limit=cap.limit, rate_window_s=cap.window_s)
    per_run = int(seconds * cap.rate) + 4 * cap.limit  # more than can finish: the runs never starve
    warm_render_cache(config, per_run * runs)
    with SimServer(config, port=0) as sim:
        procs = []
        tracks = sim.create_tracks(per_run * runs)
        for index in range(runs):
            where = env.scratch(f"{name}-{index}")
            manifest = where / "manifest.csv"
            lines = ["task_id,audio_id,type"] + [f"{t.music_task_id},{t.audio_id},separate_vocal"
                                                  for t in tracks[index * per_run:(index + 1) * per_run]]
            manifest.write_text("\n".join(lines) + "\n")
            params = flow_params(manifest, where / "data", sim.base_url)
            # The flow's own poll defaults (10 s, backing off to 60 s; a callback wakes a poll early).
            params.update(rate_limit=cap.limit, rate_window_s=cap.window_s, poll_initial_s=10.0, poll_max_s=60.0,
                          rate_store=rate_store)
            procs.append(env.start_flow(params, where=where))
        with CounterSampler(sim) as sampler:
            started = None
            while started is None or time.monotonic() - started < seconds:
                time.sleep(0.25)
                if started is None and sampler.samples[-1].api_requests > sampler.samples[0].api_requests:
                    started = time.monotonic()
                if any(p.poll() is not None for p in procs):
                    break
            finished_early = [p.returncode for p in procs if p.poll() is not None]
            # The measured interval ends when the run is stopped: a flow takes seconds to shut
            # down (sending nothing), and that is not sustained traffic. 430s and the busiest
            # window still count everything the simulator saw, shutdown included.
            stopped = api_counters(sim)
            for proc in procs:
                _stop(proc)
        stats = sim.stats()
    if finished_early:
        raise RuntimeError(f"a flow run ended early (exit {finished_early}); see the logs under {env.root}")
    samples = [s for s in sampler.samples if s.at < stopped.at] + [stopped]
    return sustained(samples, cap, stats.rate_limited, stats.max_requests_in_window)


def measure_flow_runs(env: BenchEnv, cap: Cap, seconds: float) -> Row:
    result = _run_flows_for(env, cap, seconds, 1, None, "pacing-one")
    rate, refusals = _cells(result, cap, submits_only=False)
    return Row("1b", "sustained rate at the cap · 430s (one real run)", f"{rate}; {refusals}",
               conditions=f"cap {cap.describe()}; {result.seconds:.0f} s measured (run stopped then; its shutdown "
                          "not counted); polls back off per job and are woken by callbacks; default per-key SQLite store")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database for row 1d: STEMCAT_BENCH_POSTGRES_URL, or the throwaway server the tests start."""
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        yield given
        return
    from tests.servers.postgres import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(f"no PostgreSQL server binaries (initdb, pg_ctl): set {POSTGRES_URL_ENV} to run row 1d")
    server = PostgresServer(bin_dir)
    try:
        server.init()
        server.start()
        yield server.url()
    finally:
        server.remove()


def measure_two_runs(env: BenchEnv, cap: Cap, seconds: float, *, on_postgres: bool) -> Row:
    if on_postgres:
        with postgres_database() as url:
            result = _run_flows_for(env, cap, seconds, 2, url, "pacing-postgres")
    else:
        result = _run_flows_for(env, cap, seconds, 2, None, "pacing-two")
    rate, refusals = _cells(result, cap, submits_only=False)
    store = ("PostgreSQL rate store (`rate_store=postgresql://…`, the default with a PostgreSQL ledger)"
             if on_postgres else "default per-key SQLite store")
    return Row("1d" if on_postgres else "1c", f"two runs on one key at once · 430s ({store.split(' (')[0]})",
               f"together: {rate}; {refusals}",
               conditions=f"cap {cap.describe()}; two processes, separate data dirs; {result.seconds:.0f} s "
                          f"measured; {store}")


def measure(env: BenchEnv, *, seconds: float, pair_seconds: float, cap: Cap, quick: bool = False) -> list[Row]:
    """Rows 1a–1d; `quick` (the smoke test) runs 1a only: the others need flow processes and tens of seconds."""
    rows = [measure_client_submits(env, cap, min(seconds, pair_seconds))]
    if not quick:
        rows += [
            measure_flow_runs(env, cap, seconds),
            measure_two_runs(env, cap, pair_seconds, on_postgres=False),
            measure_two_runs(env, cap, pair_seconds, on_postgres=True),
        ]
    return rows
