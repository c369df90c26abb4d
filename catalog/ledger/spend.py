"""The credit ledger: one ``spend`` row per event that commits or releases credits."""

from __future__ import annotations

from stemcat.catalog.ledger.backend import Connection
from stemcat.catalog.ledger.core import LedgerCore
from stemcat.catalog.models import Job, SpendEvent


class SpendMixin(LedgerCore):
    def spend_total(self, run_id: str | None = None) -> int:
        """Credits committed (all runs, or one run)."""
        with self._read() as con:
            return credits_committed(con, run_id)


def credits_committed(con: Connection, run_id: str | None = None) -> int:
    """``SUM(credits)`` of the spend rows, of all runs or of one."""
    sql = "SELECT COALESCE(SUM(credits), 0) FROM spend"
    params: tuple[str, ...] = ()
    if run_id is not None:
        sql += " WHERE run_id = ?"
        params = (run_id,)
    return int(con.execute(sql, params).fetchone()[0])


def insert_spend(con: Connection, job: Job, event: SpendEvent, credits: int, at: float) -> None:
    """Append one spend row for ``job`` inside the caller's transaction."""
    con.execute(
        "INSERT INTO spend (at, run_id, job_id, audio_id, separation_type, credits, event)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, job.run_id, job.job_id, job.audio_id, job.separation_type, credits, event.value),
    )
