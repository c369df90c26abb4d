"""Where a key's rate budget lives, and which store a `rate_store` setting names.

===========================  ==========================================================
store                        who shares the budget
===========================  ==========================================================
``memory``                   the coroutines of this process only
SQLite file (the default)    every process on this host (WAL, ``BEGIN IMMEDIATE``)
``postgresql://…``           every process on every machine that reaches the database
===========================  ==========================================================

A run whose ledger is on PostgreSQL (``STEMCAT_LEDGER_URL=postgresql://…``) keeps the key's
budget in the same database unless ``rate_store`` names another store (`run_rate_store`).

By default a key's budget is ``$XDG_STATE_HOME/stemcat/rate-<budget>.sqlite``
(``~/.local/state`` when unset), where ``<budget>`` hashes the base URL and the key's hash:
every command on the same key shares it whatever its data directory, with no setup.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from stemcat.client.ratelimit.defaults import LEDGER_URL_ENV, MEMORY_STORE, RATE_STORE_ENV, STATE_DIR_ENV
from stemcat.client.ratelimit.rules import budget_id
from stemcat.client.ratelimit.stores.base import AdmissionStore
from stemcat.client.ratelimit.stores.memory import MemoryAdmissionStore
from stemcat.client.ratelimit.stores.sqlite import SqliteAdmissionStore

__all__ = [
    "AdmissionStore",
    "MemoryAdmissionStore",
    "SqliteAdmissionStore",
    "default_state_dir",
    "default_store_path",
    "is_postgres_url",
    "open_admission_store",
    "rate_store_from_env",
    "run_rate_store",
]

POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(spec: str | None) -> bool:
    """Whether `spec` names a PostgreSQL database (``postgresql://…``)."""
    return bool(spec) and urlsplit(str(spec).strip()).scheme.lower() in POSTGRES_SCHEMES


def run_rate_store(rate_store: str | None, ledger_url: str | None) -> str | None:
    """The rate store a run uses: `rate_store` when set, else the ledger's database when it is
    PostgreSQL (the key's budget next to the ledger, shared by every machine), else None
    (the per-key SQLite file on this host)."""
    if rate_store and rate_store.strip():
        return rate_store
    return ledger_url if is_postgres_url(ledger_url) else None


def rate_store_from_env() -> str | None:
    """`run_rate_store` of ``STEMCAT_RATE_STORE`` and ``STEMCAT_LEDGER_URL``: the store a client
    built without a limiter paces on, the same one a run on this environment uses."""
    return run_rate_store(os.environ.get(RATE_STORE_ENV), os.environ.get(LEDGER_URL_ENV))


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/stemcat`, or `~/.local/state/stemcat`."""
    base = os.environ.get(STATE_DIR_ENV) or str(Path.home() / ".local" / "state")
    return Path(base) / "stemcat"


def default_store_path(base_url: str, api_key: str) -> Path:
    """The per-key SQLite budget every command on this host shares by default."""
    return default_state_dir() / f"rate-{budget_id(base_url, api_key)}.sqlite"


def open_admission_store(spec: str | None, *, base_url: str, api_key: str) -> AdmissionStore:
    """The store a `rate_store` setting names.

    None: the per-key SQLite file (`default_store_path`); ``memory``: this process only;
    ``postgresql://user@host:port/db``: that database (`stores.postgres`; needs the ``postgres``
    extra); ``sqlite:///path`` or a plain path: that SQLite file.
    """
    if spec is None or not spec.strip():
        return SqliteAdmissionStore(default_store_path(base_url, api_key))
    value = spec.strip()
    if value == MEMORY_STORE:
        return MemoryAdmissionStore()
    scheme = urlsplit(value).scheme.lower()
    if scheme in POSTGRES_SCHEMES:
        from stemcat.client.ratelimit.stores.postgres import PostgresAdmissionStore  # psycopg is optional

        return PostgresAdmissionStore(value, budget_id(base_url, api_key))
    if scheme == "sqlite":
        return SqliteAdmissionStore(Path(value.removeprefix("sqlite://")))
    if scheme and len(scheme) > 1:
        raise ValueError(f"unknown rate store {value!r}: use memory, a path, sqlite:///path or postgresql://…")
    return SqliteAdmissionStore(Path(value).expanduser())
