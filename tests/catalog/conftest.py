"""The catalog's tests share the suite-wide ``ledger_target`` fixture (``tests.servers.ledgers``,
registered in ``tests/conftest.py``): every ledger test runs on SQLite and on PostgreSQL. The
names stay importable from here."""

from tests.servers.ledgers import BACKENDS, LedgerTarget

__all__ = ["BACKENDS", "LedgerTarget"]
