"""The backend contract the ledger's concern modules rely on (``catalog.ledger.backend``), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stemcat.catalog.ledger import Backend
from stemcat.catalog.ledger.backend import Connection
from tests.catalog.conftest import LedgerTarget


@pytest.fixture
def backend(ledger_target: LedgerTarget) -> Iterator[Backend]:
    backend = ledger_target.backend(busy_timeout_s=0.0)
    yield backend
    backend.close()


@pytest.fixture
def con(backend: Backend) -> Iterator[Connection]:
    connection = backend.connect()
    yield connection
    connection.close()


def _run(run_id: str, started_at: float) -> dict[str, object]:
    return {"run_id": run_id, "started_at": started_at, "status": "running"}


def _started(con: Connection) -> list[tuple[str, float]]:
    return [tuple(row) for row in con.execute("SELECT run_id, started_at FROM runs ORDER BY run_id").fetchall()]


def test_insert_new_inserts_once_per_unique_key(backend: Backend, con: Connection) -> None:
    with backend.write_transaction(con):
        assert backend.insert_new(con, "runs", _run("r1", 1.0), unique=("run_id",)) is True
        assert backend.insert_new(con, "runs", _run("r1", 2.0), unique=("run_id",)) is False
        assert backend.insert_new(con, "runs", _run("r2", 3.0), unique=("run_id",)) is True
    assert _started(con) == [("r1", 1.0), ("r2", 3.0)]


def test_rows_are_addressable_by_name_and_position(backend: Backend, con: Connection) -> None:
    with backend.write_transaction(con):
        backend.insert_new(con, "runs", _run("r1", 1.5), unique=("run_id",))
    row = con.execute("SELECT run_id, started_at FROM runs WHERE run_id = ?", ("r1",)).fetchone()
    assert (row["run_id"], row[1], list(row.keys()), tuple(row)) == ("r1", 1.5, ["run_id", "started_at"], ("r1", 1.5))


def test_a_failed_savepoint_undoes_only_itself(backend: Backend, con: Connection) -> None:
    with backend.write_transaction(con):
        with backend.savepoint(con):
            backend.insert_new(con, "runs", _run("kept", 1.0), unique=("run_id",))
        with pytest.raises(RuntimeError), backend.savepoint(con):
            backend.insert_new(con, "runs", _run("undone", 2.0), unique=("run_id",))
            raise RuntimeError("this write fails")
    assert _started(con) == [("kept", 1.0)]


def test_a_failed_write_transaction_is_rolled_back(backend: Backend, con: Connection) -> None:
    with pytest.raises(RuntimeError), backend.write_transaction(con):
        backend.insert_new(con, "runs", _run("undone", 1.0), unique=("run_id",))
        raise RuntimeError("this transaction fails")
    assert _started(con) == []


def test_a_write_lock_held_elsewhere_is_busy(
    ledger_target: LedgerTarget, backend: Backend, con: Connection
) -> None:
    with ledger_target.write_lock_held_elsewhere():
        with pytest.raises(Exception) as caught, backend.write_transaction(con):
            pass
        assert backend.is_busy(caught.value)
        assert not backend.is_busy(ValueError("database is locked"))
    with backend.write_transaction(con):  # the connection is usable again once the lock is free
        backend.insert_new(con, "runs", _run("after", 1.0), unique=("run_id",))
    assert _started(con) == [("after", 1.0)]


def test_a_read_snapshot_does_not_see_later_writes(backend: Backend, con: Connection) -> None:
    with backend.write_transaction(con):
        backend.insert_new(con, "runs", _run("before", 1.0), unique=("run_id",))
    with backend.read_snapshot() as snapshot:
        with backend.write_transaction(con):
            backend.insert_new(con, "runs", _run("after", 2.0), unique=("run_id",))
        assert _started(snapshot) == [("before", 1.0)]
    assert _started(con) == [("after", 2.0), ("before", 1.0)]
