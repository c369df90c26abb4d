"""Two processes, one key: a SQLite store (one host) or PostgreSQL (every machine) keeps them under the cap together.

On PostgreSQL the database's clock decides, so those tests judge the windows by the admission
times the database recorded (exact) as well as by when each process sent (real time)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stemcat.client.ratelimit import AdmissionStore, SharedLimiter, SqliteAdmissionStore, budget_id
from stemcat.client.ratelimit.arrivals import current_admission
from stemcat.client.ratelimit.rules import PacingParams, PacingState
from stemcat.sim import SimConfig, SimServer

from .admission_audit import install_admission_audit
from .conftest import busiest_window

LIMIT = 8
WINDOW = 2.0
# 300 ms of guard: on a loaded 2-core machine a process can be descheduled for a tenth of a
# second between its slot and its request reaching the simulator.
SAFETY = 0.15
PER_PROCESS = 7
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(rate_limit=LIMIT, rate_window_s=WINDOW, prerender=False), port=0) as server:
        yield server


def run_two_processes(
    store: str, base_url: str, tmp_path: Path, *, limit: int = LIMIT, window: float = WINDOW,
    safety: float = SAFETY, per_process: int = PER_PROCESS,
) -> list[dict[str, list]]:
    go = tmp_path / "go"
    procs, outs, readies = [], [], []
    for i in range(2):
        out, ready = tmp_path / f"out{i}.json", tmp_path / f"ready{i}"
        outs.append(out)
        readies.append(ready)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.pacing.pacing_worker", "--store", store, "--base-url", base_url,
             "--requests", str(per_process), "--limit", str(limit), "--window", str(window),
             "--safety", str(safety), "--ready", str(ready), "--go", str(go), "--out", str(out)],
            cwd=ROOT,
        ))
    deadline = time.monotonic() + 30
    while not all(r.exists() for r in readies) and time.monotonic() < deadline:
        time.sleep(0.02)
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    return [json.loads(out.read_text()) for out in outs]


def assert_shared_cap(sim: SimServer, results: list[dict[str, list]], rate_limited_before: int) -> None:
    stats = sim.stats()
    assert stats.rate_limited == rate_limited_before  # no 430 at all
    assert stats.max_requests_in_window <= LIMIT  # as the API counted them, on arrival
    admissions = [t for r in results for t in r["admissions"]]
    assert all(not r["errors"] for r in results)
    assert len(admissions) == 2 * PER_PROCESS
    assert busiest_window(admissions, WINDOW) <= LIMIT
    # Together, not each: the pair shares the one budget (two separate ones would be twice the cap).
    # The floor allows for the guard and each process's cold start (logged half a second late).
    rate = (len(admissions) - 1) / (max(admissions) - min(admissions))
    assert 0.5 * LIMIT / WINDOW <= rate <= LIMIT / WINDOW


def test_two_processes_sharing_a_sqlite_store_stay_under_the_cap(sim: SimServer, tmp_path: Path) -> None:
    before = sim.stats().rate_limited
    results = run_two_processes(f"sqlite://{tmp_path / 'rate.sqlite'}", sim.base_url, tmp_path)
    assert_shared_cap(sim, results, before)


async def _first_admission_after_throttle(a: AdmissionStore, b: AdmissionStore) -> None:
    first = SharedLimiter(a, 20, 1.0)
    second = SharedLimiter(b, 20, 1.0)
    await asyncio.gather(first.acquire(), second.acquire())
    throttled_at = time.monotonic()
    first.throttled(0.5)
    await asyncio.sleep(0.02)  # the report is written by a background task
    await second.acquire()
    assert time.monotonic() - throttled_at >= 0.45  # the other user waited for Retry-After too
    stamps = []
    for _ in range(3):
        await second.acquire()
        stamps.append(time.monotonic())
    assert min(b - a for a, b in zip(stamps, stamps[1:], strict=False)) >= 0.9 * 2 * 1.02 / 20  # half the rate
    for limiter in (first, second):
        await limiter.aclose()


async def test_a_throttle_in_one_user_of_a_sqlite_store_slows_the_other(tmp_path: Path) -> None:
    path = tmp_path / "rate.sqlite"
    await _first_admission_after_throttle(SqliteAdmissionStore(path), SqliteAdmissionStore(path))
    assert SqliteAdmissionStore(path).state().throttles == 1


# --- PostgreSQL ---------------------------------------------------------------------------------
# A shorter window and more requests: 30 admissions over about 3.5 s cross three windows.
PG_LIMIT = 10
PG_WINDOW = 1.0
PG_SAFETY = 0.25  # a 0.25 s guard, for processes descheduled on a loaded machine
PG_PER_PROCESS = 15
@pytest.fixture(scope="module")
def fast_sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(rate_limit=PG_LIMIT, rate_window_s=PG_WINDOW, prerender=False), port=0) as server:
        yield server


def _recorded_times(url: str, tickets: list[int]) -> list[float]:
    """Where the database last logged each of these admissions (the log itself is pruned as it goes)."""
    import psycopg

    with psycopg.connect(url) as con:
        rows = con.execute("SELECT DISTINCT ON (ticket) ticket, at FROM admission_audit "
                           "WHERE ticket = ANY(%s) ORDER BY ticket, seq DESC", (tickets,)).fetchall()
    assert len(rows) == len(tickets)
    return [at for _ticket, at in rows]


def test_two_processes_sharing_a_postgres_store_stay_under_the_cap(
    fast_sim: SimServer, postgres_url: str, tmp_path: Path
) -> None:
    install_admission_audit(postgres_url, budget_id(fast_sim.base_url, os.environ["SUNO_API_KEY"]))
    before = fast_sim.stats().rate_limited
    results = run_two_processes(postgres_url, fast_sim.base_url, tmp_path, limit=PG_LIMIT, window=PG_WINDOW,
                                safety=PG_SAFETY, per_process=PG_PER_PROCESS)
    stats = fast_sim.stats()
    sent = [t for r in results for t in r["admissions"]]
    tickets = [t for r in results for t in r["tickets"]]
    assert all(not r["errors"] for r in results)
    assert len(sent) == len(set(tickets)) == 2 * PG_PER_PROCESS
    recorded = _recorded_times(postgres_url, tickets)
    # Exact on the database's clock: never more than the limit in the window the rules enforce.
    guarded = PacingParams(PG_LIMIT, PG_WINDOW, PG_SAFETY).guarded_window
    assert busiest_window(recorded, guarded - 1e-6) <= PG_LIMIT
    # As the processes sent them and as the API counted them on arrival: within the API's window.
    assert busiest_window(sent, PG_WINDOW) <= PG_LIMIT
    assert stats.rate_limited == before and stats.max_requests_in_window <= PG_LIMIT
    # Together, not each: one budget for both (cold starts and the guard leave it above half the cap).
    rate = (len(sent) - 1) / (max(sent) - min(sent))
    assert 0.5 * PG_LIMIT / PG_WINDOW <= rate <= PG_LIMIT / PG_WINDOW


class _TwoUsers:
    """Two limiters on one PostgreSQL budget (two connections, as two machines would have), and a probe."""

    def __init__(self, url: str) -> None:
        from stemcat.client.ratelimit.stores.postgres import PostgresAdmissionStore

        budget = budget_id("http://api.test", f"key-{time.time_ns()}")
        self.url = url
        self.params = PacingParams(20, 1.0)
        self.first = SharedLimiter(PostgresAdmissionStore(url, budget), 20, 1.0)
        self.second = SharedLimiter(PostgresAdmissionStore(url, budget), 20, 1.0)
        self.probe = PostgresAdmissionStore(url, budget)

    async def until(self, done: Callable[[PacingState], bool]) -> PacingState:
        """The budget's state once `done` holds (a limiter writes its reports in the background)."""
        deadline = time.monotonic() + 5
        while not done(state := await self.probe.state()):
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.01)
        return state

    async def admit_second(self, count: int) -> list[float]:
        """Admit `count` requests through the second limiter; the times the database logged them."""
        tickets = []
        for _ in range(count):
            await self.second.acquire()
            admission = current_admission()
            assert admission is not None
            tickets.append(admission.ticket)
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.url) as con:
            rows = await (await con.execute("SELECT at FROM rate_admissions WHERE ticket = ANY(%s) ORDER BY at",
                                            (tickets,))).fetchall()
        assert len(rows) == count
        return [at for (at,) in rows]

    async def aclose(self) -> None:
        for limiter in (self.first, self.second):
            await limiter.aclose()
        await self.probe.aclose()


async def test_a_throttle_recorded_by_one_limiter_halves_the_others_rate(postgres_url: str) -> None:
    users = _TwoUsers(postgres_url)
    try:
        await asyncio.gather(users.first.acquire(), users.second.acquire())
        throttled_at = time.monotonic()
        users.first.throttled(0.5)
        state = await users.until(lambda s: s.throttles == 1)
        assert state.factor == 0.5
        times = await users.admit_second(4)
        assert time.monotonic() - throttled_at >= 0.45  # the other user waited for Retry-After too
        assert times[0] >= state.not_before  # on the database's clock: exactly
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= 2 * users.params.nominal_spacing - 1e-6  # half the rate (epoch floats: µs)
        assert users.second.current_rate == pytest.approx(users.params.limit / users.params.guarded_window / 2)
    finally:
        await users.aclose()


async def test_a_pause_recorded_by_one_limiter_reaches_the_other(postgres_url: str) -> None:
    users = _TwoUsers(postgres_url)
    try:
        await asyncio.gather(users.first.acquire(), users.second.acquire())
        paused_at = time.monotonic()
        users.first.paused(0.6)
        state = await users.until(lambda s: s.pauses == 1)
        (admitted,) = await users.admit_second(1)
        assert time.monotonic() - paused_at >= 0.55
        assert admitted >= state.not_before and state.factor == 1.0  # a pause does not slow the rate down
    finally:
        await users.aclose()
