"""A throwaway PostgreSQL server for the tests: one cluster per session, one database per test.

The cluster is made by ``initdb`` in a temporary directory and served by ``pg_ctl`` on
127.0.0.1 and a free port, with trust authentication (loopback only, test data only) and no
fsync. PostgreSQL refuses to run as root: as root, every server command runs as the
unprivileged ``postgres`` user (``runuser``), which owns the directory. Each test gets a fresh
database copied from a template (``CREATE DATABASE … TEMPLATE``, milliseconds).

The server binaries are looked up in ``STEMCAT_TEST_PG_BIN``, then on PATH, then in Debian's
``/usr/lib/postgresql/<version>/bin``; where there are none, the tests that need a server are
skipped with that reason.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SERVER_USER = "postgres"
TEMPLATE_DB = "stemcat_template"


def find_bin_dir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None."""
    override = os.environ.get("STEMCAT_TEST_PG_BIN")
    candidates = [Path(override)] if override else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster in its own directory; ``start``/``stop`` may be called again (outage tests)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self._as_user: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._owner = pwd.getpwnam(SERVER_USER)  # checked by the fixture: PostgreSQL refuses root
            self._as_user = ["runuser", "-u", SERVER_USER, "--"]
        # As root, under /tmp: the server's user must be able to reach the folder (a TMPDIR of
        # root's own, like pytest's /tmp/pytest-of-root, is closed to it).
        self.root = Path(tempfile.mkdtemp(prefix="stemcat-pg-", dir="/tmp" if self._owner is not None else None))
        self.data = self.root / "data"
        self.port = _free_port()
        self._counter = itertools.count(1)
        self._admin: Any = None
        self._version_num: int | None = None
        if self._owner is not None:
            os.chmod(self.root, 0o700)
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        result = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")

    def init(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "log_min_messages": "fatal",
        }
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("".join(f"{name} = {value}\n" for name, value in settings.items()))

    def start(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if self._admin is not None:
            self._admin.close()
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def admin_execute(self, *statements: str) -> None:
        """Run statements on the maintenance database (one connection kept for the session)."""
        import psycopg

        for attempt in (1, 2):
            if self._admin is None or self._admin.closed or self._admin.broken:
                self._admin = psycopg.connect(self.url(), autocommit=True)
            try:
                for statement in statements:
                    self._admin.execute(statement)
                return
            except psycopg.OperationalError:
                if attempt == 2 or not self._admin.broken:  # only a connection lost to a restart is retried
                    raise

    def create_database(self, *, empty: bool = False) -> str:
        """A fresh database copied from the template (with the ledger's tables, or ``empty``); returns its URL."""
        name = f"t{os.getpid()}_{next(self._counter)}"
        template = "template0" if empty else TEMPLATE_DB
        # FILE_COPY: about twice as fast as PostgreSQL 15's default WAL_LOG for a small template.
        strategy = " STRATEGY = FILE_COPY" if self._version() >= 150000 else ""
        self.admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
        return self.url(name)

    def _version(self) -> int:
        if self._version_num is None:
            self.admin_execute()
            self._version_num = int(self._admin.info.server_version)
        return self._version_num

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL (skipped where no server binaries or driver exist)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[postgres]')")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) found: set STEMCAT_TEST_PG_BIN to run these tests")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.skip(f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as (it refuses root)")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as another user (it refuses root)")
    started = time.monotonic()
    server = PostgresServer(bin_dir)
    try:
        server.init()
        server.start()
        server.admin_execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        _prepare_template(server)
        server.startup_s = time.monotonic() - started  # type: ignore[attr-defined]
        yield server
    finally:
        server.remove()


def _prepare_template(server: PostgresServer) -> None:
    """Create the ledger's schema in the template once, so each test's copy opens without DDL."""
    from stemcat.catalog.ledger.postgres_backend import PostgresBackend

    backend = PostgresBackend(server.url(TEMPLATE_DB))
    try:
        backend.connect().close()
    finally:
        backend.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty ledger database for this test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
