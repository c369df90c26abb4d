"""Owner liveness: a run's lease in the ledger (database clock) on both backends, and which signal
``run_is_alive`` trusts on each (the lease on PostgreSQL, the run's flock on SQLite)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stemcat.catalog import Ledger
from stemcat.tasks.context import RunLease, RunLock, run_is_alive
from tests.catalog.conftest import LedgerTarget


def _start(led: Ledger, run_id: str, lease_s: float) -> None:
    led.start_run(run_id, flow_run_id=None, manifest=None, params={}, balance_before=None, lease_s=lease_s)


def test_a_lease_lives_until_it_expires_or_the_run_ends(ledger_target: LedgerTarget) -> None:
    with ledger_target.ledger() as led:
        _start(led, "r1", lease_s=0.3)
        _start(led, "r2", lease_s=60)
        assert led.run_lease_alive("r1") and led.run_lease_alive("r2")
        assert not led.run_lease_alive("never-started")
        time.sleep(0.35)
        assert not led.run_lease_alive("r1")
        assert led.renew_lease("r1", 60) and led.run_lease_alive("r1")
        led.finish_run("r2", status="completed", exit_code=0, balance_after=None, summary={}, counts={})
        assert not led.run_lease_alive("r2")
        assert not led.renew_lease("r2", 60)  # a finished run cannot be revived
        with pytest.raises(ValueError):
            led.renew_lease("r1", 0)


def test_run_lease_renews_while_the_run_lives(ledger_target: LedgerTarget) -> None:
    with ledger_target.ledger() as led:
        _start(led, "r1", lease_s=0.4)
        with RunLease(led, "r1", lease_s=0.4):
            time.sleep(0.7)
            assert led.run_lease_alive("r1")
        time.sleep(0.45)  # the process "died": nobody renews
        assert not led.run_lease_alive("r1")


def test_run_is_alive_trusts_the_lease_on_postgres_and_the_flock_on_sqlite(
    ledger_target: LedgerTarget, tmp_path: Path
) -> None:
    with ledger_target.ledger() as led:
        _start(led, "r1", lease_s=60)
        if ledger_target.kind == "postgres":
            # Another host's run: no lock file here, the lease in the shared ledger says it lives.
            assert run_is_alive(tmp_path, "r1", led)
            led.finish_run("r1", status="partial", exit_code=1, balance_after=None, summary={}, counts={})
            assert not run_is_alive(tmp_path, "r1", led)
        else:
            assert not run_is_alive(tmp_path, "r1", led)  # no process holds its flock on this host
            with RunLock(tmp_path, "r1"):
                assert run_is_alive(tmp_path, "r1", led)


def test_reconciliation_settles_only_intents_whose_owner_is_gone(ledger_target: LedgerTarget, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from stemcat.tasks.separation.reconcile import settle

    with ledger_target.ledger() as led:
        _start(led, "crashed", lease_s=0.05)
        _start(led, "alive", lease_s=60)
        orphan = led.claim("a1", "t", "separate_vocal", 1, "crashed")
        in_flight = led.claim("a2", "t", "separate_vocal", 1, "alive")
        assert orphan is not None and in_flight is not None
        time.sleep(0.1)
        ctx = SimpleNamespace(ledger=led, run_id="now", options=SimpleNamespace(data_dir=tmp_path))
        with RunLock(tmp_path, "alive"):  # the live run's process, on this host
            counts = settle(ctx)  # type: ignore[arg-type]
        assert counts == {"in_flight_elsewhere": 1, "marked_unknown": 1}
        assert led.get_job(orphan.job_id).status == "unknown"  # type: ignore[union-attr]
        assert led.get_job(in_flight.job_id).status == "intent"  # type: ignore[union-attr]
