"""Callbacks the API posted, kept verbatim: reconciliation matches them to jobs by token."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stemcat.catalog.ledger.core import LedgerCore, row_values


class CallbacksMixin(LedgerCore):
    def record_callback(
        self, token: str | None, remote_task_id: str | None, code: int | None, payload: Mapping[str, Any]
    ) -> None:
        """Keep a received callback verbatim (duplicates are normal and all kept)."""
        payload_text = json.dumps(dict(payload), sort_keys=True, ensure_ascii=False, default=str)
        with self._write() as con:
            con.execute(
                "INSERT INTO callbacks (token, remote_task_id, code, received_at, payload) VALUES (?, ?, ?, ?, ?)",
                (token, remote_task_id, code, self._clock(), payload_text),
            )

    def callbacks_for_token(self, token: str) -> list[dict[str, Any]]:
        """Callbacks received for a job token, oldest first, with ``payload`` decoded."""
        with self._read() as con:
            rows = con.execute(
                "SELECT id, token, remote_task_id, code, received_at, payload FROM callbacks"
                " WHERE token = ? ORDER BY id",
                (token,),
            ).fetchall()
        callbacks = []
        for row in rows:
            record = row_values(row)
            record["payload"] = json.loads(record["payload"]) if record["payload"] is not None else None
            callbacks.append(record)
        return callbacks
