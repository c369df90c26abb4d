"""Two `stemcat run` processes (two hosts: two data directories) on manifests sharing half their rows,
one PostgreSQL ledger and so one rate budget for the key, against a simulator enforcing the same cap."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from stemcat.client.ratelimit import budget_id
from stemcat.client.ratelimit.rules import PacingParams
from stemcat.sim import SimConfig, SimServer, make_tracks_manifest
from tests.killtest import ROOT
from tests.killtest_workers import overlapping_manifests
from tests.pacing.admission_audit import admission_times, install_admission_audit
from tests.pacing.conftest import busiest_window

pytestmark = pytest.mark.e2e

LIMIT = 10  # requests per WINDOW: the runs' --rate-limit and the simulator's own cap
WINDOW = 1.0


@pytest.mark.timeout(180)
def test_two_workers_on_overlapping_manifests_at_the_cap_never_exceed_it_and_pay_each_pair_once(
    tmp_path: Path, postgres_url: str, render_cache: Path
) -> None:
    from prefect.settings import get_current_settings

    config = SimConfig(seed=13, processing_s=(0.2, 0.6), rate_limit=LIMIT, rate_window_s=WINDOW,
                       cache_dir=render_cache)
    with SimServer(config, port=0) as sim:
        full = make_tracks_manifest(sim, 27, tmp_path / "all.csv", types=("separate_vocal",))
        workers = overlapping_manifests(full, tmp_path)  # 18 rows each, 9 of them in both
        install_admission_audit(postgres_url, budget_id(sim.base_url, os.environ["SUNO_API_KEY"]))
        env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url), "STEMCAT_LEDGER_URL": postgres_url}
        env.pop("STEMCAT_RATE_STORE", None)  # the budget follows the ledger into PostgreSQL
        procs = []
        for manifest, _ in workers:
            log = open(manifest.parent / "run.log", "wb")  # noqa: SIM115 (closed when the run ends)
            procs.append((subprocess.Popen(
                [sys.executable, "-m", "stemcat", "run", str(manifest), "--data-dir", str(manifest.parent / "data"),
                 "--base-url", sim.base_url, "--rate-limit", str(LIMIT), "--rate-window", str(WINDOW),
                 "--poll-initial", "0.3", "--poll-max", "1", "--batch-size", "6", "--concurrency", "3",
                 "--no-analyze"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
        codes = []
        for proc, log in procs:
            codes.append(proc.wait(timeout=150))
            log.close()
        stats, charges = sim.stats(), sim.ledger()
    logs = [(manifest.parent / "run.log").read_text(errors="replace") for manifest, _ in workers]
    assert codes == [0, 0], logs
    # As the API counted them on arrival, across both workers: never over the cap, never a 430.
    assert stats.rate_limited == 0
    assert stats.max_requests_in_window <= LIMIT
    # On the database's clock, the window the rules enforce never held more than the limit either.
    guarded = PacingParams(LIMIT, WINDOW).guarded_window
    admitted = admission_times(postgres_url)
    assert busiest_window(admitted, guarded - 1e-6) <= LIMIT
    # At the cap, together: the busiest second was full, while both workers' runs were sending.
    assert stats.max_requests_in_window >= LIMIT - 1
    runs = _runs(postgres_url)
    assert len(runs) == 2 and all(submits > 0 for _, _, submits in runs)
    assert max(start for start, _, _ in runs) < min(end for _, end, _ in runs)  # they overlapped
    # The shared half was paid for once, by whichever worker claimed it first.
    paid = Counter((charge.audio_id, str(charge.type)) for charge in charges)
    assert set(paid) == set().union(*(keys for _, keys in workers)) and set(paid.values()) == {1}


def _runs(url: str) -> list[tuple[float, float, int]]:
    import psycopg

    with psycopg.connect(url) as con:
        return con.execute("SELECT started_at, ended_at, n_requests_submit FROM runs").fetchall()
