"""Two processes, one key: a SQLite store or the HTTP pacer keeps them under the cap together."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stemcat.client.ratelimit import (
    AdmissionStore,
    HttpAdmissionStore,
    SharedLimiter,
    SqliteAdmissionStore,
    budget_id,
)
from stemcat.client.ratelimit.pacer_service import running_pacer
from stemcat.sim import SimConfig, SimServer

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


@pytest.fixture(scope="module")
def pacer_url() -> Iterator[str]:
    with running_pacer() as url:
        yield url


def run_two_processes(store: str, base_url: str, tmp_path: Path) -> list[dict[str, list]]:
    go = tmp_path / "go"
    procs, outs, readies = [], [], []
    for i in range(2):
        out, ready = tmp_path / f"out{i}.json", tmp_path / f"ready{i}"
        outs.append(out)
        readies.append(ready)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.pacing.pacing_worker", "--store", store, "--base-url", base_url,
             "--requests", str(PER_PROCESS), "--limit", str(LIMIT), "--window", str(WINDOW),
             "--safety", str(SAFETY), "--ready", str(ready), "--go", str(go), "--out", str(out)],
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


def test_two_processes_sharing_the_http_pacer_stay_under_the_cap(
    sim: SimServer, pacer_url: str, tmp_path: Path
) -> None:
    before = sim.stats().rate_limited
    time.sleep(WINDOW)  # a fresh pacer admits nothing during its first window; and the sim's window empties
    results = run_two_processes(pacer_url, sim.base_url, tmp_path)
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


async def test_a_throttle_through_the_pacer_slows_the_other_user(pacer_url: str) -> None:
    budget = budget_id(pacer_url, "throttle-test")
    await asyncio.sleep(1.02 * 1.0)  # past the fresh-budget window of the pacer
    await _first_admission_after_throttle(HttpAdmissionStore(pacer_url, budget), HttpAdmissionStore(pacer_url, budget))


async def test_the_pacer_refuses_bad_bodies_and_names(pacer_url: str) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=pacer_url) as http:
        body = {"limit": 1, "window_s": 1, "safety": 0, "count": 1}
        bad_name = await http.post("/v1/budgets/NOT-HEX/reserve", json=body)
        bad_body = await http.post(f"/v1/budgets/{'a' * 32}/reserve", json={"limit": 0})
        health = await http.get("/healthz")
    assert bad_name.status_code == 400 and bad_body.status_code == 400 and health.json() == {"ok": True}
