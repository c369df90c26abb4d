"""`stemcat run --ledger-url postgresql://…` end to end against the simulator: the ledger lives on
the PostgreSQL server, the stems and the catalog in the data directory."""

from __future__ import annotations

import pytest

from stemcat.catalog import Ledger, open_catalog
from stemcat.sim import make_tracks_manifest

pytestmark = pytest.mark.e2e

# tests.e2e.conftest.FAST, as command-line options.
FAST_OPTIONS = ["--rate-limit=200", "--rate-window=1.0", "--poll-initial=0.2", "--poll-max=0.5",
                "--job-timeout=60", "--batch-size=8", "--concurrency=4"]


def test_a_run_with_a_postgres_ledger_pays_once_and_publishes_the_catalog(sim, tmp_path, postgres_url, monkeypatch):
    from typer.testing import CliRunner

    from stemcat.cli.app import app

    manifest = make_tracks_manifest(sim, 6, tmp_path / "m.csv", types=("separate_vocal", "split_stem"))
    data_dir = tmp_path / "data"
    url = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")  # trust auth ignores it
    argv = ["run", str(manifest), "--data-dir", str(data_dir), "--base-url", sim.base_url, "--ledger-url", url,
            *FAST_OPTIONS]
    monkeypatch.delenv("PGPASSWORD", raising=False)  # the command hands the URL's password to libpq there
    runner = CliRunner()
    first = runner.invoke(app, argv)
    assert first.exit_code == 0, first.output
    assert "hunter2" not in first.output
    assert not (data_dir / "ledger.sqlite").exists()
    charged = sum(charge.credits for charge in sim.ledger())
    with Ledger.open(data_dir, postgres_url) as led:
        assert led.spend_total() == charged > 0
    con = open_catalog(data_dir)
    assert {row[0] for row in con.execute("SELECT status FROM jobs").fetchall()} == {"downloaded"}
    assert con.execute("SELECT count(*) FROM jobs").fetchone()[0] == 6
    assert con.execute("SELECT sum(credits) FROM spend").fetchone()[0] == charged
    run_params = con.execute("SELECT params FROM runs").fetchone()[0]
    assert "hunter2" not in run_params and "postgresql" not in run_params

    # A second host (another data directory) sharing the ledger pays for nothing already paid.
    again = runner.invoke(app, [*argv[:2], "--data-dir", str(tmp_path / "other-host"), *argv[4:]])
    assert again.exit_code == 0, again.output
    assert sum(charge.credits for charge in sim.ledger()) == charged
    # It fetched the stems already paid for (free) into its own data directory.
    other = open_catalog(tmp_path / "other-host")
    assert {row[0] for row in other.execute("SELECT status FROM jobs").fetchall()} == {"downloaded"}
    assert other.execute("SELECT count(*) FROM runs").fetchone()[0] == 2


@pytest.mark.timeout(180)
def test_a_ledger_server_gone_mid_run_never_lets_a_request_out_without_a_committed_claim(
    sim, tmp_path, postgres_server, postgres_url
):
    import threading
    import time
    from collections import Counter

    from .conftest import run_flow

    manifest = make_tracks_manifest(sim, 12, tmp_path / "m.csv", types=("separate_vocal",))
    stopped = threading.Event()

    def stop_after_some_charges() -> None:
        deadline = time.monotonic() + 60
        while len(sim.ledger()) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        postgres_server.stop()
        stopped.set()

    watcher = threading.Thread(target=stop_after_some_charges, daemon=True)
    watcher.start()
    try:
        try:  # slow submits (4 a second) so that the server goes away between two of them; the rate
            # budget in this process (by default it would live in the same, stopped, database)
            summary = run_flow(manifest, tmp_path / "data", sim.base_url, ledger_url=postgres_url,
                               rate_limit=4, rate_window_s=1.0, rate_store="memory")
        except Exception as error:  # the run cannot even record its end: it fails, loudly
            summary = {"exit_code": None, "error": str(error)}
        watcher.join(timeout=90)
        assert stopped.is_set()
        assert summary["exit_code"] != 0, summary
    finally:
        postgres_server.start()
    charges = Counter((charge.audio_id, str(charge.type)) for charge in sim.ledger())
    assert 3 <= sum(charges.values()) < 12, "the server went away too late to prove anything"
    with Ledger.open(tmp_path, postgres_url) as led:
        claimed = led.latest_jobs(charges)
        # Every request that reached the API had its claim committed first, and none was paid twice.
        assert set(charges) <= set(claimed) and max(charges.values()) == 1
        assert all(job.attempt == 1 for job in claimed.values())
        assert led.spend_total() >= sum(charge.credits for charge in sim.ledger())
