"""The group-committing ledger writer: shared transactions, durable on return, failures kept apart
(on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from stemcat.catalog import JobStatus, Ledger, LedgerWriter, UnknownJobError
from tests.catalog.conftest import LedgerTarget


@pytest.fixture
def ledger_path(ledger_target: LedgerTarget) -> LedgerTarget:
    ledger_target.ledger().close()  # schema created by an ordinary ledger, as a run does
    return ledger_target


def _open_writer(target: LedgerTarget) -> LedgerWriter:
    """A writer on its own connection, busy timeout zero (retried by the writer), as a run opens it."""
    return LedgerWriter(target.ledger(busy_timeout_s=0.0))


def _count(target: LedgerTarget, sql: str) -> int:
    return int(target.query(sql)[0][0])


async def test_concurrent_writes_share_commits_and_are_on_disk_when_awaited(ledger_path: LedgerTarget) -> None:
    writer = _open_writer(ledger_path)
    try:
        jobs = await asyncio.gather(*(
            writer.write(Ledger.claim, f"audio-{i}", "task", "separate_vocal", 1, "run") for i in range(200)
        ))
        # Another connection sees every intent and its spend row as soon as the awaits returned.
        assert _count(ledger_path, "SELECT COUNT(*) FROM jobs WHERE status = 'intent'") == 200
        assert _count(ledger_path, "SELECT COALESCE(SUM(credits), 0) FROM spend") == 200
        assert all(job is not None for job in jobs)
        assert writer.writes == 200
        assert writer.commits < 20  # one turn of the loop queued them all: a handful of transactions
    finally:
        writer.close()


async def test_a_failing_write_fails_alone_and_its_batch_mates_commit(ledger_path: LedgerTarget) -> None:
    writer = _open_writer(ledger_path)
    try:
        job = await writer.write(Ledger.claim, "audio", "task", "separate_vocal", 1, "run")
        assert job is not None
        results = await asyncio.gather(
            writer.write(Ledger.mark_submitted, job.job_id, "remote-1"),
            writer.write(Ledger.mark_submitted, "no-such-job", "remote-2"),
            writer.write(Ledger.claim, "audio-2", "task", "separate_vocal", 5, "run"),
            return_exceptions=True,
        )
        assert results[0] is True
        assert isinstance(results[1], UnknownJobError)
        assert results[2] is not None and not isinstance(results[2], BaseException)
        stored = await writer.read(Ledger.get_job, job.job_id)
        assert stored is not None and stored.status == JobStatus.SUBMITTED and stored.remote_task_id == "remote-1"
        assert _count(ledger_path, "SELECT COALESCE(SUM(credits), 0) FROM spend") == 6
    finally:
        writer.close()


async def test_a_busy_database_is_waited_for_without_blocking_the_loop(ledger_path: LedgerTarget) -> None:
    writer = _open_writer(ledger_path)
    # Another process's writer, mid-transaction.
    with ledger_path.write_lock_held_elsewhere() as release:
        try:
            write = asyncio.ensure_future(writer.write(Ledger.claim, "audio", "task", "separate_vocal", 1, "run"))
            ticks = 0
            for _ in range(20):  # the loop keeps turning while the write waits for the lock
                await asyncio.sleep(0.005)
                ticks += 1
            assert not write.done()
            assert ticks == 20
            release()
            job = await asyncio.wait_for(write, timeout=5)
            assert job is not None
            assert _count(ledger_path, "SELECT COUNT(*) FROM jobs") == 1
        finally:
            writer.close()


def test_ledger_batch_commits_together_and_a_failed_write_rolls_back_only_itself(ledger_path: LedgerTarget) -> None:
    ledger = ledger_path.ledger()
    try:
        with ledger.batch():
            job = ledger.claim("audio", "task", "separate_vocal", 1, "run")
            assert job is not None
            with pytest.raises(UnknownJobError):
                ledger.mark_submitted("no-such-job", "remote")
            ledger.mark_submitted(job.job_id, "remote")
            # Not visible to another connection before the batch ends.
            assert _count(ledger_path, "SELECT COUNT(*) FROM jobs") == 0
        assert _count(ledger_path, "SELECT COUNT(*) FROM jobs WHERE status = 'submitted'") == 1
        with pytest.raises(RuntimeError, match="do not nest"), ledger.batch(), ledger.batch():
            pass
    finally:
        ledger.close()
