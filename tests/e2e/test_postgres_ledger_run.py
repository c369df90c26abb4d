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
