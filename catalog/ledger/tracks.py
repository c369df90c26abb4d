"""Tracks (the source songs of the manifests) and the manifest rows that were rejected."""

from __future__ import annotations

from collections.abc import Iterable

from stemcat.catalog.ledger.backend import marks
from stemcat.catalog.ledger.core import LOOKUP_CHUNK, WRITE_CHUNK, LedgerCore, chunks, row_values
from stemcat.catalog.models import RejectRow, TrackRow
from stemcat.catalog.schema import TRACKS

_TRACK_SELECT = f"SELECT {', '.join(TRACKS.column_names)} FROM tracks"


class TracksMixin(LedgerCore):
    def upsert_tracks(self, rows: Iterable[TrackRow]) -> None:
        """Insert or update tracks in batches; ``first_seen_at`` of a known track is kept."""
        columns = TRACKS.column_names
        updates = ", ".join(
            f"{column} = excluded.{column}" for column in columns if column not in ("audio_id", "first_seen_at")
        )
        sql = (
            f"INSERT INTO tracks ({', '.join(columns)}) VALUES ({marks(len(columns))})"
            f" ON CONFLICT (audio_id) DO UPDATE SET {updates}"
        )
        for chunk in chunks(rows, WRITE_CHUNK):
            now = self._clock()
            values = [
                (
                    row.audio_id, row.task_id, row.title, row.tags, row.duration_s, row.source_url,
                    row.model_name, row.split, row.metadata, row.manifest, row.line,
                    row.first_seen_at if row.first_seen_at is not None else now,
                    row.updated_at if row.updated_at is not None else now,
                )
                for row in chunk
            ]
            with self._write() as con:
                con.executemany(sql, values)

    def add_rejects(self, rows: Iterable[RejectRow]) -> None:
        """Append rejected manifest rows in batches."""
        for chunk in chunks(rows, WRITE_CHUNK):
            now = self._clock()
            values = [
                (row.run_id, row.manifest, row.line, row.reason, row.raw, row.at if row.at is not None else now)
                for row in chunk
            ]
            with self._write() as con:
                con.executemany(
                    "INSERT INTO rejects (run_id, manifest, line, reason, raw, at) VALUES (?, ?, ?, ?, ?, ?)",
                    values,
                )

    def tracks_for_tasks(self, task_ids: Iterable[str]) -> dict[str, list[TrackRow]]:
        """Known tracks per music-generation task id (tasks without tracks are left out)."""
        unique_ids = list(dict.fromkeys(task_ids))
        found: dict[str, list[TrackRow]] = {}
        for chunk in chunks(unique_ids, LOOKUP_CHUNK):
            sql = f"{_TRACK_SELECT} WHERE task_id IN ({marks(len(chunk))}) ORDER BY task_id, audio_id"
            with self._read() as con:
                rows = con.execute(sql, chunk).fetchall()
            for row in rows:
                found.setdefault(row["task_id"], []).append(TrackRow(**row_values(row)))
        return found

    def track(self, audio_id: str) -> TrackRow | None:
        """One track by its audio id, or None."""
        with self._read() as con:
            row = con.execute(f"{_TRACK_SELECT} WHERE audio_id = ?", (audio_id,)).fetchone()
        return None if row is None else TrackRow(**row_values(row))
