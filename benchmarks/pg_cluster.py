"""A PostgreSQL server for rows 10 and 11: fresh databases on demand, durable like the SQLite ledger.

The server is the tests' throwaway cluster (`tests/servers/postgres.py`: PostgreSQL binaries on
the machine, loopback, a free port, run as the `postgres` user when we are root), with its
test-only shortcuts undone: the tests turn `fsync`, `synchronous_commit` and `full_page_writes`
off for speed, but a ledger whose commit is not on disk does not guarantee "never pay twice",
and the SQLite ledger it is compared with commits with `synchronous=FULL`. Or the server
`STEMCAT_BENCH_POSTGRES_URL` names (its user must be allowed to create databases).
Where neither exists, `start_cluster` returns None and the rows say why they were not measured.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stemcat.catalog.ledger.urls import masked_url

POSTGRES_URL_ENV = "STEMCAT_BENCH_POSTGRES_URL"
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
NO_SERVER = f"no PostgreSQL server binaries (initdb, pg_ctl) and no {POSTGRES_URL_ENV}"


@dataclass
class Cluster:
    """Where fresh, empty databases come from: `database()` returns a new one's URL each time."""

    admin_url: str  # the maintenance database
    describe: str
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _admin: Any = None

    def database(self) -> str:
        import psycopg

        name = f"bench_{os.getpid()}_{next(self._names)}"
        if self._admin is None:
            self._admin = psycopg.connect(self.admin_url, autocommit=True)
        self._admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')  # name built here, not from input
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()


def _version(bin_dir: Path) -> str:
    """`PostgreSQL 15.8`, from the server binary."""
    try:
        text = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "PostgreSQL"
    found = re.search(r"\(PostgreSQL\) (\S+)", text)
    return "PostgreSQL " + (found.group(1) if found else "?")


@contextlib.contextmanager
def start_cluster() -> Iterator[Cluster | None]:
    """The server `STEMCAT_BENCH_POSTGRES_URL` names, a throwaway durable one, or None when neither is possible."""
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        cluster = Cluster(given, f"the server {POSTGRES_URL_ENV} names ({masked_url(given)})")
        try:
            yield cluster
        finally:
            cluster.close()
        return
    from tests.servers.postgres import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        yield None
        return
    server = PostgresServer(bin_dir)
    cluster = None
    try:
        server.init()
        with open(server.data / "postgresql.conf", "a", encoding="utf-8") as conf:  # later lines win
            conf.write("".join(f"{name} = {value}\n" for name, value in DURABLE_SETTINGS.items()))
        server.start()
        cluster = Cluster(server.url(), f"{_version(bin_dir)} on loopback, fsync and synchronous_commit on")
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        server.remove()
