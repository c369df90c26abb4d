"""Entry points for the processes the concurrency tests spawn (importable by a fresh interpreter)."""

from __future__ import annotations

import random
import time
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

from stemcat.catalog import Ledger, refresh_duckdb, write_snapshots
from stemcat.catalog.ledger import SqliteBackend, ledger_backend


def claim_keys(path: str, keys: list[tuple[str, str]], seed: int, start: Barrier, results: Queue) -> None:
    """Race the other processes to open (maybe create) the ledger, then to claim every key.

    ``path`` is the SQLite file or a ``postgresql://`` URL.
    """
    start.wait(timeout=60)
    ledger = Ledger.open(Path(path).parent, path) if path.startswith("postgresql://") else Ledger(Path(path))
    start.wait(timeout=60)
    order = list(keys)
    random.Random(seed).shuffle(order)
    claimed = []
    for audio_id, kind in order:
        job = ledger.claim(audio_id, "task", kind, 1, f"run-{seed}")
        if job is not None:
            claimed.append((audio_id, kind, job.job_id))
            time.sleep(0.002)  # the paid POST a real run sends now; lets the others at the lock
    ledger.close()
    results.put(claimed)


def hold_write_lock(path: str, locked: Event, release: Event) -> None:
    """Hold an open write transaction on the ledger until told to stop, like a writer mid-commit.

    ``path`` is the SQLite file or a ``postgresql://`` URL; the transaction is the backend's own
    (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's ledger write lock), rolled back at the end.
    """
    backend = (ledger_backend(Path(path).parent, path) if path.startswith("postgresql://")
               else SqliteBackend(Path(path), busy_timeout_s=30))
    con = backend.connect()
    try:
        with backend.write_transaction(con):
            con.execute("INSERT INTO rejects (reason, at) VALUES ('held by another process', 0)")
            locked.set()
            release.wait(timeout=60)
            raise _RollBack
    except _RollBack:
        pass
    finally:
        con.close()
        backend.close()


class _RollBack(Exception):
    """Ends the held transaction without committing its row."""


def snapshot_loop(data_dir: str, started: Event, stop: Event, rounds: Synchronized) -> None:
    """Publish the catalog over and over, like a run snapshotting after every batch."""
    ledger = Ledger(Path(data_dir) / "ledger.sqlite")
    while not stop.is_set():
        write_snapshots(ledger, Path(data_dir))
        refresh_duckdb(Path(data_dir))
        with rounds.get_lock():
            rounds.value += 1
        started.set()
    ledger.close()
