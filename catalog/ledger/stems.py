"""Stems: each job's links and downloaded files, and the quality analysis of both stems and jobs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from stemcat.catalog.errors import UnknownJobError
from stemcat.catalog.ledger.backend import Connection, Row
from stemcat.catalog.ledger.core import LedgerCore, relative_data_path, row_values
from stemcat.catalog.models import Job, JobQualityRow, StemQualityRow, StemRow, StemStatus
from stemcat.catalog.schema import STEMS

_STEM_SELECT = "SELECT " + ", ".join(STEMS.column_names) + " FROM stems"


class StemsMixin(LedgerCore):
    def stems_for_job(self, job_id: str) -> list[StemRow]:
        """The job's stems, by name."""
        with self._read() as con:
            rows = con.execute(f"{_STEM_SELECT} WHERE job_id = ? ORDER BY stem", (job_id,)).fetchall()
        return [_stem_from_row(row) for row in rows]

    def record_stem_download(
        self,
        job_id: str,
        stem: str,
        *,
        path: str,
        bytes: int,  # noqa: A002 - the column's name
        sha256: str,
        duration_s: float | None,
        sample_rate: int | None,
        channels: int | None,
    ) -> bool:
        """Record a verified file (``path`` relative to DATA_DIR).

        Returns True when every stem of the job is now downloaded.
        """
        relative = relative_data_path(path)
        with self._write() as con:
            cursor = con.execute(
                "UPDATE stems SET status = 'downloaded', path = ?, bytes = ?, sha256 = ?, duration_s = ?,"
                " sample_rate = ?, channels = ?, downloaded_at = ?, error = NULL WHERE job_id = ? AND stem = ?",
                (relative, bytes, sha256, duration_s, sample_rate, channels, self._clock(), job_id, stem),
            )
            if cursor.rowcount == 0:
                raise UnknownJobError(job_id, stem)
            return all_stems_downloaded(con, job_id)

    def mark_stem(self, job_id: str, stem: str, status: str, error: str | None = None) -> None:
        """Set a stem to pending, failed or expired (downloads go through ``record_stem_download``)."""
        stem_status = StemStatus(status)
        if stem_status == StemStatus.DOWNLOADED:
            raise ValueError("use record_stem_download to mark a stem downloaded")
        with self._write() as con:
            cursor = con.execute(
                "UPDATE stems SET status = ?, error = ? WHERE job_id = ? AND stem = ?",
                (stem_status.value, error, job_id, stem),
            )
            if cursor.rowcount == 0:
                raise UnknownJobError(job_id, stem)

    def record_analysis(self, job_id: str, job: JobQualityRow, stems: Iterable[StemQualityRow]) -> None:
        """Store a whole analysis (the job's row and each analysed stem) in one transaction.

        ``job.mix_path`` is relative to DATA_DIR; ``job.mix_sha256`` is that file's checksum (the export
        uses the mix as the mixture only when the file still matches it).
        """
        with self._write() as con:
            for quality in stems:
                self._update_stem_quality(con, job_id, quality)
            self._update_job_quality(con, job_id, job)

    def jobs_to_analyze(self, *, include_analyzed: bool = False, limit: int | None = None) -> list[str]:
        """Downloaded jobs whose stems have not been analysed yet (or all of them), oldest first."""
        sql = "SELECT job_id FROM jobs WHERE status = 'downloaded'"
        if not include_analyzed:
            sql += " AND analyzed_at IS NULL"
        sql += " ORDER BY created_at, job_id"
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (int(limit),)
        with self._read() as con:
            return [row[0] for row in con.execute(sql, params).fetchall()]

    def _update_stem_quality(self, con: Connection, job_id: str, quality: StemQualityRow) -> None:
        silent = None if quality.silent is None else int(quality.silent)
        cursor = con.execute(
            "UPDATE stems SET peak_dbfs = ?, rms_dbfs = ?, lufs = ?, clipped_fraction = ?, silent = ?,"
            " duration_diff_s = ? WHERE job_id = ? AND stem = ?",
            (quality.peak_dbfs, quality.rms_dbfs, quality.lufs, quality.clipped_fraction, silent,
             quality.duration_diff_s, job_id, quality.stem),
        )
        if cursor.rowcount == 0:
            raise UnknownJobError(job_id, quality.stem)

    def _update_job_quality(self, con: Connection, job_id: str, quality: JobQualityRow) -> None:
        mix_path = None if quality.mix_path is None else relative_data_path(quality.mix_path)
        mix_sha256 = None if mix_path is None else quality.mix_sha256
        low_snr = None if quality.low_snr is None else int(quality.low_snr)
        cursor = con.execute(
            "UPDATE jobs SET reconstruction_snr_db = ?, mix_path = ?, mix_sha256 = ?, mix_duration_s = ?, low_snr = ?,"
            " analyzed_at = ?, analysis_error = ? WHERE job_id = ?",
            (quality.reconstruction_snr_db, mix_path, mix_sha256, quality.mix_duration_s, low_snr, self._clock(),
             quality.analysis_error, job_id),
        )
        if cursor.rowcount == 0:
            raise UnknownJobError(job_id)


def store_stem_links(con: Connection, job: Job, links: Sequence[tuple[str, str, float | None]]) -> None:
    """Upsert ``(stem, url, url_expires_at)`` of a finished job: new stems start ``pending``,
    a downloaded stem keeps its file and gets the fresh link."""
    con.executemany(
        "INSERT INTO stems (job_id, audio_id, separation_type, stem, url, url_expires_at, status)"
        " VALUES (?, ?, ?, ?, ?, ?, 'pending')"
        " ON CONFLICT (job_id, stem) DO UPDATE SET"
        " url = excluded.url, url_expires_at = excluded.url_expires_at,"
        " status = CASE WHEN stems.status = 'downloaded' THEN 'downloaded' ELSE 'pending' END,"
        " error = CASE WHEN stems.status = 'downloaded' THEN stems.error ELSE NULL END",
        [(job.job_id, job.audio_id, job.separation_type, stem, url, expires) for stem, url, expires in links],
    )


def all_stems_downloaded(con: Connection, job_id: str) -> bool:
    """Whether the job has stems and every one of them is downloaded."""
    total, downloaded = con.execute(
        "SELECT COUNT(*), COUNT(CASE WHEN status = 'downloaded' THEN 1 END) FROM stems WHERE job_id = ?", (job_id,)
    ).fetchone()
    return bool(total > 0 and total == downloaded)


def _stem_from_row(row: Row) -> StemRow:
    values = row_values(row)
    values["status"] = StemStatus(values["status"])
    values["silent"] = None if values["silent"] is None else bool(values["silent"])
    return StemRow(**values)
