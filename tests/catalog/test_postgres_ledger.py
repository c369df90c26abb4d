"""What only the PostgreSQL ledger has: URL selection and masking, racing claimers on several
connections, and a server that goes away mid-run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")

from stemcat.catalog import Ledger, LedgerUnavailableError  # noqa: E402
from stemcat.catalog.ledger import SqliteBackend, ledger_backend  # noqa: E402
from stemcat.catalog.ledger.postgres_backend import PostgresBackend, to_pyformat  # noqa: E402
from stemcat.catalog.ledger.urls import chosen_ledger_url, masked_url, split_password  # noqa: E402
from stemcat.cli.ledger_option import resolve_ledger_url  # noqa: E402
from stemcat.settings import Settings  # noqa: E402
from tests.servers.postgres import PostgresServer  # noqa: E402


def test_placeholders_are_rewritten_outside_quotes_only() -> None:
    sql = "SELECT '?%', \"a?\" FROM t WHERE x LIKE '%z' AND y = ? AND z = ?"
    assert to_pyformat(sql) == "SELECT '?%%', \"a?\" FROM t WHERE x LIKE '%%z' AND y = %s AND z = %s"


def test_passwords_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://stemcat:s3cr%40t@db.internal:5432/ledger?sslmode=require&password=other"
    backend = PostgresBackend(url)
    for shown in (str(backend), repr(backend), masked_url(url)):
        assert "s3cr" not in shown and "other" not in shown and "***" in shown
    assert split_password(url) == ("postgresql://stemcat@db.internal:5432/ledger?sslmode=require", "s3cr@t")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    assert resolve_ledger_url(url, Settings()) == "postgresql://stemcat@db.internal:5432/ledger?sslmode=require"
    import os

    assert os.environ["PGPASSWORD"] == "s3cr@t"


def test_the_url_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(ledger_backend(tmp_path), SqliteBackend)
    assert ledger_backend(tmp_path).path == tmp_path / "ledger.sqlite"
    assert isinstance(ledger_backend(tmp_path, "postgresql://u@h/db"), PostgresBackend)
    with pytest.raises(ValueError, match="postgresql://"):
        ledger_backend(tmp_path, "mysql://u:pw@h/db")
    with Ledger.open(tmp_path) as led:
        assert led.path == tmp_path / "ledger.sqlite"


def test_a_flow_parameter_overrides_the_configured_url_and_empty_means_sqlite() -> None:
    configured = "postgresql://u@shared/db"
    assert chosen_ledger_url(None, configured) == configured
    assert chosen_ledger_url("postgresql://u@other/db", configured) == "postgresql://u@other/db"
    assert chosen_ledger_url("", configured) is None  # the demo insists on its own ledger.sqlite
    assert chosen_ledger_url(None, None) is None


def test_ledger_open_with_a_url_uses_postgres(postgres_url: str, tmp_path: Path) -> None:
    with Ledger.open(tmp_path, postgres_url) as led:
        assert led.path is None and isinstance(led.backend, PostgresBackend)
        assert led.claim("a1", "t1", "separate_vocal", 1, "r1") is not None
    assert not (tmp_path / "ledger.sqlite").exists()
    with Ledger.open(tmp_path, postgres_url) as again:  # reopening keeps the data and the schema
        assert again.spend_total() == 1


def test_two_claimers_of_one_key_on_two_connections_exactly_one_wins(postgres_url: str) -> None:
    ledgers = [Ledger(backend=PostgresBackend(postgres_url)) for _ in range(2)]
    start = threading.Barrier(2)
    results: list[object] = [None, None]

    def claim(index: int) -> None:
        start.wait(timeout=10)
        results[index] = ledgers[index].claim("a1", "t1", "split_stem", 5, f"run-{index}")

    threads = [threading.Thread(target=claim, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        winners = [job for job in results if job is not None]
        assert len(winners) == 1
        assert ledgers[0].spend_total() == 5
        assert ledgers[1].latest_jobs([("a1", "split_stem")])[("a1", "split_stem")].job_id == winners[0].job_id  # type: ignore[attr-defined]
    finally:
        for ledger in ledgers:
            ledger.close()


def test_the_unique_row_alone_admits_one_claimer_without_the_write_lock(postgres_url: str) -> None:
    """Exactly-once rests on INSERT … ON CONFLICT on the attempt key, not on the write lock."""
    backend = PostgresBackend(postgres_url)
    first, second = backend.connect(), backend.connect()
    row = {"job_id": "j1", "audio_id": "a1", "task_id": "t", "separation_type": "split_stem", "attempt": 1,
           "status": "intent", "credits": 5, "created_at": 1.0, "updated_at": 1.0, "poll_count": 0}
    key = ("audio_id", "separation_type", "attempt")
    outcome: dict[str, bool] = {}
    try:
        first.execute("BEGIN")
        assert backend.insert_new(first, "jobs", row, unique=key) is True  # not committed yet

        def race() -> None:  # waits on the unique index until the first commits
            outcome["second"] = backend.insert_new(second, "jobs", {**row, "job_id": "j2"}, unique=key)

        thread = threading.Thread(target=race)
        thread.start()
        thread.join(timeout=0.3)
        assert thread.is_alive(), "the second insert should wait for the first transaction"
        first.execute("COMMIT")
        thread.join(timeout=10)
        assert outcome == {"second": False}
        assert [tuple(r) for r in first.execute("SELECT job_id FROM jobs").fetchall()] == [("j1",)]
    finally:
        first.close()
        second.close()
        backend.close()


def _claim_then_send(led: Ledger, audio_id: str, sent: list[str]) -> None:
    """What a run does: the claim is committed, and only then the paid request leaves."""
    job = led.claim(audio_id, "t1", "separate_vocal", 1, "r1")
    if job is not None:
        sent.append(job.job_id)


def test_a_server_gone_mid_run_fails_the_claim_clearly_and_restarting_keeps_the_state(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with_password = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    sent: list[str] = []
    with Ledger(backend=PostgresBackend(with_password, connect_timeout_s=0.5)) as led:
        _claim_then_send(led, "a1", sent)
        led.mark_submitted(sent[0], "remote-1")
        postgres_server.stop()
        try:
            with pytest.raises(LedgerUnavailableError) as caught:
                _claim_then_send(led, "a2", sent)
            assert sent == [sent[0]], "a request was sent without a committed claim"
            message = str(caught.value)
            assert "unavailable" in message and "nothing was written" in message and "hunter2" not in message
            with pytest.raises(LedgerUnavailableError):
                led.spend_total()
        finally:
            postgres_server.start()
        # The same ledger reconnects; what was committed is intact, the failed claim left nothing.
        assert led.get_job(sent[0]).status == "submitted"  # type: ignore[union-attr]
        assert led.latest_jobs([("a2", "separate_vocal")]) == {}
        assert led.spend_total() == 1
        _claim_then_send(led, "a2", sent)
        assert len(sent) == 2 and led.spend_total() == 2


def test_a_server_gone_before_commit_leaves_no_claim(postgres_server: PostgresServer, postgres_url: str) -> None:
    with Ledger(backend=PostgresBackend(postgres_url, connect_timeout_s=0.5)) as led:
        with pytest.raises(LedgerUnavailableError) as caught, led.batch():
            assert led.claim("a1", "t1", "separate_vocal", 1, "r1") is not None
            postgres_server.stop()  # the batch's COMMIT never reaches the server
        postgres_server.start()
        assert caught.value.commit_unknown and "outcome is unknown" in str(caught.value)
        assert led.latest_jobs([("a1", "separate_vocal")]) == {}
        assert led.spend_total() == 0



def test_an_older_postgres_ledger_is_upgraded_and_a_newer_one_refused(postgres_url: str) -> None:
    import psycopg

    from stemcat.catalog import CatalogError
    from stemcat.catalog.schema import SCHEMA_VERSION

    Ledger(backend=PostgresBackend(postgres_url)).close()
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # as version 2 left it
        admin.execute("ALTER TABLE runs DROP COLUMN lease_expires_at")
        admin.execute("DELETE FROM stemcat_migrations")
        admin.execute("INSERT INTO stemcat_migrations (version, applied_at) VALUES (2, 0)")
    with Ledger(backend=PostgresBackend(postgres_url)) as led:
        led.start_run("r1", flow_run_id=None, manifest=None, params={}, balance_before=None)
        assert led.run_lease_alive("r1")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        assert admin.execute("SELECT MAX(version) FROM stemcat_migrations").fetchone()[0] == SCHEMA_VERSION
        admin.execute("INSERT INTO stemcat_migrations (version, applied_at) VALUES (%s, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(CatalogError, match="newer than this stemcat"):
        Ledger(backend=PostgresBackend(postgres_url))


def test_a_writer_gone_silent_mid_transaction_does_not_hold_the_write_lock(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from stemcat.catalog.ledger import postgres_backend

    monkeypatch.setattr(postgres_backend, "IDLE_IN_WRITE_TRANSACTION_S", 0.3)
    stuck = PostgresBackend(postgres_url)
    con = stuck.connect()
    try:
        with pytest.raises(LedgerUnavailableError), stuck.write_transaction(con):
            time.sleep(0.6)  # a host cut off mid-transaction: the server ends the transaction
            con.execute("SELECT 1")
        with Ledger(backend=PostgresBackend(postgres_url, busy_timeout_s=1.0)) as other:
            assert other.claim("a1", "t1", "separate_vocal", 1, "r1") is not None
    finally:
        con.close()
        stuck.close()
