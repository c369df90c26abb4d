"""Runs: one row per ``stemcat run``, opened before any work and closed with its counts and spend.

A running run holds a lease on its row (``lease_expires_at``), renewed by the running process
and judged on the database's clock (``Backend.now_sql``): once it has expired, the run's
intents belong to no one and reconciliation may settle them, from any host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stemcat.catalog.errors import UnknownRunError
from stemcat.catalog.jsoncols import redact_secrets, to_json_object_text
from stemcat.catalog.ledger.backend import Connection
from stemcat.catalog.ledger.core import LedgerCore, require_text
from stemcat.catalog.ledger.spend import credits_committed
from stemcat.catalog.models import RunStatus
from stemcat.catalog.schema import RUNS

DEFAULT_RUN_LEASE_S = 60.0

RUN_COUNT_COLUMNS = tuple(name for name in RUNS.column_names if name.startswith("n_"))


class RunsMixin(LedgerCore):
    def start_run(
        self,
        run_id: str,
        *,
        flow_run_id: str | None,
        manifest: str | None,
        params: Mapping[str, Any],
        balance_before: int | None,
        lease_s: float = DEFAULT_RUN_LEASE_S,
    ) -> None:
        """Record a run as ``running``, leased for ``lease_s``; values of secret-looking keys in ``params`` are redacted."""
        require_text(run_id, "run_id")
        params_text = to_json_object_text(redact_secrets(params), what="params")
        with self._write() as con:
            row = {
                "run_id": run_id,
                "flow_run_id": flow_run_id,
                "started_at": self._clock(),
                "manifest": manifest,
                "status": RunStatus.RUNNING.value,
                "balance_before": balance_before,
                "params": params_text,
            }
            if not self._backend.insert_new(con, "runs", row, unique=("run_id",)):
                raise ValueError(f"run {run_id!r} already exists in the ledger")
            self._extend_lease(con, run_id, lease_s)

    def renew_lease(self, run_id: str, lease_s: float = DEFAULT_RUN_LEASE_S) -> bool:
        """Extend a running run's lease to ``lease_s`` from now (database clock); False once it is not running."""
        with self._write() as con:
            return self._extend_lease(con, run_id, lease_s)

    def run_lease_alive(self, run_id: str) -> bool:
        """Whether ``run_id`` is running and its lease has not expired (on the database's clock)."""
        with self._read() as con:
            row = con.execute(
                f"SELECT COUNT(*) FROM runs WHERE run_id = ? AND status = ? AND lease_expires_at > {self._backend.now_sql}",
                (run_id, RunStatus.RUNNING.value),
            ).fetchone()
        return bool(row[0])

    def _extend_lease(self, con: Connection, run_id: str, lease_s: float) -> bool:
        if not lease_s > 0:
            raise ValueError(f"lease_s must be positive, got {lease_s!r}")
        cursor = con.execute(
            f"UPDATE runs SET lease_expires_at = {self._backend.now_sql} + ? WHERE run_id = ? AND status = ?",
            (float(lease_s), run_id, RunStatus.RUNNING.value),
        )
        return cursor.rowcount == 1

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        exit_code: int,
        balance_after: int | None,
        summary: Mapping[str, Any],
        counts: Mapping[str, int],
    ) -> None:
        """Close a run: credits_spent is the run's spend total, balance_delta = after - before.

        ``counts`` may hold any counters; rows, rejected, skipped, submitted, downloaded and failed
        (with or without the ``n_`` prefix) fill the run's columns, missing ones stay NULL.
        """
        run_status = RunStatus(status)
        count_values = _run_counts(counts)
        summary_text = to_json_object_text(redact_secrets(summary), what="summary")
        with self._write() as con:
            row = con.execute("SELECT balance_before FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise UnknownRunError(run_id)
            balance_before = row["balance_before"]
            delta = None if balance_before is None or balance_after is None else balance_after - balance_before
            assignments = ", ".join(f"{column} = ?" for column in RUN_COUNT_COLUMNS)
            con.execute(
                "UPDATE runs SET ended_at = ?, status = ?, exit_code = ?, credits_spent = ?, balance_after = ?,"
                f" balance_delta = ?, summary = ?, {assignments} WHERE run_id = ?",
                (
                    self._clock(),
                    run_status.value,
                    exit_code,
                    credits_committed(con, run_id),
                    balance_after,
                    delta,
                    summary_text,
                    *(count_values[column] for column in RUN_COUNT_COLUMNS),
                    run_id,
                ),
            )


def _run_counts(counts: Mapping[str, Any]) -> dict[str, int | None]:
    """Pick the run-table counts out of a run's counters (``n_rows`` or ``rows``); others stay in the summary."""
    resolved: dict[str, int | None] = dict.fromkeys(RUN_COUNT_COLUMNS)
    for name, value in counts.items():
        column = name if name.startswith("n_") else f"n_{name}"
        if column not in resolved:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"run count {name!r} must be an int, got {value!r}")
        resolved[column] = value
    return resolved
