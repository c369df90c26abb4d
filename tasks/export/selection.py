"""Read what can be exported from the catalog (DuckDB views over the Parquet snapshots).

One query finds, per song, the latest separation whose every stem is downloaded (the richer
separation type first when a song was separated both ways) and evaluates the track-level
filters (duration, reconstruction SNR, tags) with bound parameters; a second lists those
jobs' stems. Quality columns another part of stemcat adds later are read when present and
are NULL otherwise, so an older catalog still exports.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from stemcat.catalog import JobStatus
from stemcat.tasks.export.options import ExportOptions
from stemcat.tasks.export.records import Candidate, MixFile, SourceStem, StemQuality, TrackInfo

# Columns the analysis adds; absent from older catalogs. Name -> DuckDB type of the NULL stand-in.
OPTIONAL_JOB_COLUMNS: dict[str, str] = {
    "reconstruction_snr_db": "DOUBLE",
    "mix_path": "VARCHAR",
    "mix_sha256": "VARCHAR",
    "mix_duration_s": "DOUBLE",
    "low_snr": "BOOLEAN",
}
OPTIONAL_STEM_COLUMNS: dict[str, str] = {
    "duration_diff_s": "DOUBLE",
    "peak_dbfs": "DOUBLE",
    "rms_dbfs": "DOUBLE",
    "lufs": "DOUBLE",
    "clipped_fraction": "DOUBLE",
    "silent": "BOOLEAN",
}
# A job can be exported from any of these once all its stems are on disk.
EXPORTABLE_JOB_STATUSES: tuple[str, ...] = tuple(
    status.value for status in (JobStatus.DOWNLOADED, JobStatus.SUCCEEDED, JobStatus.EXPIRED)
)

_JOBS_QUERY = """
WITH job_stems AS (
    SELECT job_id,
           count(*) AS n_stems,
           count(*) FILTER (WHERE status = 'downloaded' AND path IS NOT NULL AND sha256 IS NOT NULL) AS n_ready,
           max(duration_s) AS stems_duration_s
    FROM stems
    GROUP BY job_id
),
latest AS (
    SELECT j.job_id, j.audio_id, j.task_id, j.separation_type, {job_optional}, s.stems_duration_s
    FROM jobs AS j JOIN job_stems AS s USING (job_id)
    WHERE list_contains($types, j.separation_type)
      AND list_contains($statuses, j.status)
      AND s.n_stems = s.n_ready
    QUALIFY row_number() OVER (
        PARTITION BY j.audio_id ORDER BY list_position($types, j.separation_type), j.attempt DESC) = 1
),
described AS (
    SELECT l.*, t.title, t.tags, t.model_name, t.metadata, t.split AS pinned_split,
           COALESCE(l.mix_duration_s, l.stems_duration_s, t.duration_s) AS track_duration_s,
           list_transform(string_split(lower(COALESCE(t.tags, '')), ','), lambda x: trim(x)) AS tag_list
    FROM latest AS l LEFT JOIN tracks AS t USING (audio_id)
)
SELECT job_id, audio_id, COALESCE(task_id, audio_id) AS task_id, separation_type, title, tags, model_name, metadata,
       pinned_split, track_duration_s, reconstruction_snr_db, low_snr, mix_path, mix_sha256,
       COALESCE(track_duration_s, 0) >= $min_duration AS passes_duration,
       ($min_snr IS NULL OR COALESCE(reconstruction_snr_db >= $min_snr, false)) AS passes_snr,
       (len($tags) = 0 OR list_has_any(tag_list, $tags)) AS passes_tags
FROM described
ORDER BY audio_id
"""

_STEMS_QUERY = """
SELECT s.job_id, s.stem, s.path, s.sha256, s.bytes, s.duration_s, s.sample_rate, s.channels, {stem_optional}
FROM stems AS s JOIN selected_jobs AS k USING (job_id)
ORDER BY s.job_id, s.stem
"""


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    # `table` is one of the catalog's own table names, never user input.
    return {column[0] for column in con.execute(f"SELECT * FROM {table} LIMIT 0").description}


def _optional(alias: str, present: set[str], wanted: Mapping[str, str]) -> str:
    return ", ".join(
        f"{alias}.{name}" if name in present else f"CAST(NULL AS {sql_type}) AS {name}"
        for name, sql_type in wanted.items()
    )


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _quality(row: Mapping[str, Any]) -> StemQuality:
    return StemQuality(**{name: row[name] for name in StemQuality.model_fields})


def _source_stem(row: Mapping[str, Any]) -> SourceStem:
    return SourceStem(
        stem=row["stem"], path=row["path"], sha256=row["sha256"], bytes=int(row["bytes"] or 0),
        duration_s=row["duration_s"], sample_rate=row["sample_rate"], channels=row["channels"],
    )


def _metadata_text(value: object) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(json.loads(str(value)), sort_keys=True)
    except json.JSONDecodeError:
        return str(value)


def _candidate(job: Mapping[str, Any], stems: Sequence[SourceStem], quality: Mapping[str, StemQuality]) -> Candidate:
    info = TrackInfo(
        audio_id=job["audio_id"], task_id=job["task_id"], job_id=job["job_id"],
        separation_type=job["separation_type"], title=job["title"], tags=job["tags"], model_name=job["model_name"],
        manifest_metadata=_metadata_text(job["metadata"]), pinned_split=job["pinned_split"],
        duration_s=job["track_duration_s"], reconstruction_snr_db=job["reconstruction_snr_db"],
        low_snr=job["low_snr"], stem_quality=dict(quality),
    )
    mix = MixFile(path=job["mix_path"], sha256=job["mix_sha256"]) if job["mix_path"] and job["mix_sha256"] else None
    return Candidate(
        info=info, stems=tuple(stems), mix=mix, passes_duration=bool(job["passes_duration"]),
        passes_snr=bool(job["passes_snr"]), passes_tags=bool(job["passes_tags"]),
    )


def select_candidates(con: duckdb.DuckDBPyConnection, options: ExportOptions) -> list[Candidate]:
    """Every exportable song of the chosen types (one separation each), filters evaluated, by audio id."""
    job_sql = _JOBS_QUERY.format(job_optional=_optional("j", _columns(con, "jobs"), OPTIONAL_JOB_COLUMNS))
    params = {
        "types": list(options.types),
        "statuses": list(EXPORTABLE_JOB_STATUSES),
        "min_duration": float(options.min_duration_s),
        "min_snr": options.min_snr_db,
        "tags": list(options.tags),
    }
    jobs = _rows(con.execute(job_sql, params))
    if not jobs:
        return []
    stems_by_job: dict[str, list[SourceStem]] = defaultdict(list)
    quality_by_job: dict[str, dict[str, StemQuality]] = defaultdict(dict)
    con.register("selected_jobs", pa.table({"job_id": pa.array([job["job_id"] for job in jobs], pa.string())}))
    try:
        stem_sql = _STEMS_QUERY.format(stem_optional=_optional("s", _columns(con, "stems"), OPTIONAL_STEM_COLUMNS))
        for row in _rows(con.execute(stem_sql)):
            stems_by_job[row["job_id"]].append(_source_stem(row))
            quality_by_job[row["job_id"]][row["stem"]] = _quality(row)
    finally:
        con.unregister("selected_jobs")
    return [_candidate(job, stems_by_job[job["job_id"]], quality_by_job[job["job_id"]]) for job in jobs]


_SPEND_QUERY = """
SELECT s.separation_type, CAST(COALESCE(sum(s.credits), 0) AS BIGINT) AS credits
FROM spend AS s JOIN exported_keys AS k USING (audio_id, separation_type)
GROUP BY s.separation_type
ORDER BY s.separation_type
"""


def credits_spent(con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Credits committed for these (audio_id, separation_type) pairs, failed attempts included, by type."""
    if not keys:
        return {}
    audio_ids, types = zip(*keys, strict=True)
    con.register("exported_keys", pa.table({"audio_id": pa.array(audio_ids, pa.string()),
                                            "separation_type": pa.array(types, pa.string())}))
    try:
        return {row[0]: int(row[1]) for row in con.execute(_SPEND_QUERY).fetchall()}
    finally:
        con.unregister("exported_keys")
