"""Several processes at once: exactly-once claims, and readers that are never locked out."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from stemcat.catalog import Ledger, RejectRow, open_catalog, refresh_duckdb, write_snapshots
from stemcat.catalog.duckdb_views import connect_catalog_file
from tests.catalog import catalog_workers
from tests.catalog.catalog_sample import build_sample
from tests.servers.ledgers import BACKENDS, ledger_target_for, sqlite_target

SPAWN = multiprocessing.get_context("spawn")
EXPECTED_COUNTS = {"tracks": 5, "jobs": 6, "stems": 8, "spend": 12, "runs": 2, "callbacks": 1, "rejects": 2}


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {table: con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in EXPECTED_COUNTS}


def _collect(results: multiprocessing.Queue, processes: list, timeout_s: float = 60) -> list:
    """One result per process; fails at once if a process died without answering."""
    collected: list = []
    deadline = time.monotonic() + timeout_s
    while len(collected) < len(processes):
        try:
            collected.append(results.get(timeout=0.2))
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            assert not dead, f"a worker process failed (exit codes {dead})"
            assert time.monotonic() < deadline, "workers did not answer in time"
    return collected


def _stop(processes: list, timeout_s: float = 30) -> None:
    """Join our worker processes; kill any that hang so the session never waits on them."""
    for process in processes:
        process.join(timeout=timeout_s)
        if process.is_alive():
            process.kill()
            process.join()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("published")
    sample = build_sample(root)
    write_snapshots(sample.ledger, root)
    refresh_duckdb(root)
    sample.ledger.close()
    return root


@pytest.mark.parametrize("backend", BACKENDS)
def test_claim_is_exactly_once_across_processes(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Not created yet: the processes race to create the file (or the tables) too.
    if backend == "postgres":
        path = request.getfixturevalue("postgres_server").create_database(empty=True)
    else:
        path = str(tmp_path / "fresh" / "ledger.sqlite")
    keys = [(f"a{i}", "separate_vocal" if i % 2 else "split_stem") for i in range(50)]
    workers = 4
    start = SPAWN.Barrier(workers)
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=catalog_workers.claim_keys, args=(str(path), keys, seed, start, results))
        for seed in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        claimed = _collect(results, processes)
    finally:
        _stop(processes)
    assert [process.exitcode for process in processes] == [0] * workers
    everything = [claim for claims in claimed for claim in claims]
    assert Counter((audio_id, kind) for audio_id, kind, _ in everything) == Counter(keys)
    assert sum(1 for claims in claimed if claims) >= 2, "the race had a single winner; it proves little"
    with Ledger.open(tmp_path, path) if backend == "postgres" else Ledger(Path(path)) as led:
        assert led.spend_total() == 50
        latest = led.latest_jobs(keys)
        assert {job.job_id for job in latest.values()} == {job_id for _, _, job_id in everything}
        assert all(job.attempt == 1 for job in latest.values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_readers_are_not_blocked_by_a_write_transaction_in_another_process(
    backend: str, published: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":  # the same sample, published from a PostgreSQL ledger
        target = ledger_target_for("postgres", request, tmp_path)
        sample = build_sample(tmp_path, target.ledger)
        write_snapshots(sample.ledger, tmp_path)
        sample.ledger.close()
        published = tmp_path
    else:
        target = sqlite_target(published)
    ledger = target.ledger()
    locked, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=catalog_workers.hold_write_lock, args=(target.location, locked, release))
    holder.start()
    try:
        assert locked.wait(timeout=30)
        started = time.monotonic()
        con = open_catalog(published)
        assert _counts(con) == EXPECTED_COUNTS
        con.close()
        # Snapshots read through WAL (a REPEATABLE READ snapshot on PostgreSQL) and do not wait for
        # the writer either; its uncommitted row is invisible.
        assert write_snapshots(ledger, published)["rejects"] == 2
        # Opening another Ledger on an up-to-date database takes no write lock; its writes wait.
        with target.ledger(busy_timeout_s=0.0) as other:
            with pytest.raises(Exception) as refused:
                other.add_rejects([RejectRow(run_id="r1", manifest="m.csv", line=1, reason="waits", raw={})])
        assert target.backend().is_busy(refused.value), refused.value
        assert time.monotonic() - started < 5
    finally:
        release.set()
        _stop([holder])
        ledger.close()
    assert holder.exitcode == 0


@pytest.fixture(scope="module")
def snapshotting(published: Path) -> Iterator[multiprocessing.Value]:
    started, stop = SPAWN.Event(), SPAWN.Event()
    rounds = SPAWN.Value("i", 0)
    process = SPAWN.Process(target=catalog_workers.snapshot_loop, args=(str(published), started, stop, rounds))
    process.start()
    try:
        assert started.wait(timeout=30)
        yield rounds
    finally:
        stop.set()
        _stop([process])
    assert process.exitcode == 0


@dataclass
class Overlap:
    """Reads done while the snapshotter completes rounds; fails if the snapshotter stalls."""

    rounds: multiprocessing.Value
    first_round: int
    deadline: float
    reads: int = 0

    @classmethod
    def start(cls, rounds: multiprocessing.Value, timeout_s: float = 60) -> Overlap:
        return cls(rounds, rounds.value, time.monotonic() + timeout_s)

    def done(self) -> bool:
        completed = self.rounds.value - self.first_round
        assert time.monotonic() < self.deadline, f"snapshotter stalled after {completed} rounds"
        return completed >= 3 and self.reads >= 5


def test_open_catalog_while_another_process_snapshots_in_a_loop(
    published: Path, snapshotting: multiprocessing.Value
) -> None:
    overlap = Overlap.start(snapshotting)
    while not overlap.done():
        con = open_catalog(published)
        try:
            assert _counts(con) == EXPECTED_COUNTS
            assert con.execute("SELECT sum(credits) FROM spend_by_run").fetchone()[0] == 13
        finally:
            con.close()
        overlap.reads += 1


def test_catalog_duckdb_opens_read_only_while_another_process_snapshots(
    published: Path, snapshotting: multiprocessing.Value
) -> None:
    held = connect_catalog_file(published)
    overlap = Overlap.start(snapshotting)
    try:
        # The rebuilds go on while `held` stays open: the loop ends only once several completed.
        while not overlap.done():
            con = connect_catalog_file(published)
            try:
                assert _counts(con) == EXPECTED_COUNTS
            finally:
                con.close()
            overlap.reads += 1
        assert _counts(held) == EXPECTED_COUNTS
    finally:
        held.close()
