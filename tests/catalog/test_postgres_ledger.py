"""What only the PostgreSQL ledger has: URL selection and masking, racing claimers on several
connections, and a server that goes away mid-run."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from pathlib import Path

import pytest

from stemcat.catalog import Ledger, LedgerUnavailableError
from stemcat.catalog.ledger import SqliteBackend, ledger_backend
from stemcat.catalog.ledger.postgres_backend import PostgresBackend, to_pyformat
from stemcat.catalog.ledger.urls import masked_url, split_password
from stemcat.cli.ledger_option import resolve_ledger_url
from stemcat.settings import Settings
from tests.servers.postgres import PostgresServer


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


def test_ledger_open_with_a_url_uses_postgres(postgres_url: str, tmp_path: Path) -> None:
    with Ledger.open(tmp_path, postgres_url) as led:
        assert led.path is None and isinstance(led.backend, PostgresBackend)
        assert led.claim("a1", "t1", "separate_vocal", 1, "r1") is not None
    assert not (tmp_path / "ledger.sqlite").exists()
    with Ledger.open(tmp_path, postgres_url) as again:  # reopening keeps the data and the schema
        assert again.spend_total() == 1
