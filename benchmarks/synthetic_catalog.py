"""A synthetic catalog of any size, written straight to the Parquet snapshots with the declared schemas.

Shaped like a long-lived dataset: a fifth of the jobs are split_stem (12 stems), the rest
separate_vocal (2 stems), spread over 90 days and a few hundred runs; each job has its
`intent` and `accepted` spend rows, and one in fifty was rejected (a third spend row).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stemcat.catalog import CATALOG_TABLES, arrow_schema, parquet_path, refresh_duckdb

SPLIT_STEMS = ("vocals", "backing_vocals", "drums", "bass", "guitar", "keyboard", "percussion", "strings",
               "synth", "fx", "brass", "woodwinds")
VOCAL_STEMS = ("vocals", "instrumental")
SPLIT_SHARE = 5  # one job in five is split_stem
DAYS = 90
RUNS = 400
_START_US = 1_735_689_600 * 1_000_000  # 2025-01-01T00:00:00Z
_DAY_US = 86_400 * 1_000_000
_CHUNK_JOBS = 50_000


def jobs_for_stems(stem_rows: int) -> tuple[int, int]:
    """(split_stem jobs, separate_vocal jobs) whose stems add up to about `stem_rows`."""
    per_block = len(SPLIT_STEMS) + (SPLIT_SHARE - 1) * len(VOCAL_STEMS)  # stems of five jobs
    blocks = max(1, round(stem_rows / per_block))
    return blocks, blocks * (SPLIT_SHARE - 1)


def _table(name: str, columns: dict[str, pa.Array], rows: int) -> pa.Table:
    """A table with the declared schema; columns not given are NULL (the schema says which may be)."""
    schema = arrow_schema(name)
    arrays = []
    for field in schema:
        given = columns.get(field.name)
        if given is None:
            if not field.nullable:
                raise ValueError(f"{name}.{field.name} is NOT NULL and was not generated")
            given = pa.nulls(rows, field.type)
        arrays.append(given.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _ids(prefix: str, start: int, count: int) -> pa.Array:
    return pa.array([f"{prefix}{i:030x}" for i in range(start, start + count)])



def _job_chunks(split_jobs: int, vocal_jobs: int, rng: np.random.Generator) -> Iterator[dict[str, pa.Array]]:
    total = split_jobs + vocal_jobs
    for start in range(0, total, _CHUNK_JOBS):
        count = min(_CHUNK_JOBS, total - start)
        index = np.arange(start, start + count)
        is_split = index % SPLIT_SHARE == 0
        at_us = _START_US + (index * (DAYS * _DAY_US) // total) + rng.integers(0, 60_000_000, count)
        yield {
            "job_id": _ids("j", start, count),
            "audio_id": pa.array([f"a{i // 2:030x}" for i in index]),  # two jobs per song
            "separation_type": pa.array(np.where(is_split, "split_stem", "separate_vocal")),
            "credits": pa.array(np.where(is_split, 5, 1)),
            "run_id": pa.array([f"run-{r:04d}" for r in index * RUNS // total]),
            "at_us": pa.array(at_us),
            "rejected": pa.array(rng.random(count) < 0.02),
        }


def write_synthetic_catalog(data_dir: Path, stem_rows: int, *, seed: int = 5) -> dict[str, int]:
    """Write every snapshot for about `stem_rows` stems; returns the rows per table."""
    rng = np.random.default_rng(seed)
    split_jobs, vocal_jobs = jobs_for_stems(stem_rows)
    parquet_path(data_dir, "jobs").parent.mkdir(parents=True, exist_ok=True)
    writers = {name: pq.ParquetWriter(parquet_path(data_dir, name), arrow_schema(name), compression="zstd")
               for name in ("jobs", "stems", "spend", "tracks")}
    counts = dict.fromkeys(CATALOG_TABLES, 0)
    spend_id = 0
    try:
        for chunk in _job_chunks(split_jobs, vocal_jobs, rng):
            n = len(chunk["job_id"])
            at = pa.array(chunk["at_us"].to_numpy(), pa.timestamp("us", tz="UTC"))
            status = pc.if_else(chunk["rejected"], "not_submitted", "downloaded")
            writers["jobs"].write_table(_table("jobs", {
                "job_id": chunk["job_id"], "audio_id": chunk["audio_id"], "task_id": chunk["audio_id"],
                "separation_type": chunk["separation_type"], "attempt": pa.array(np.ones(n, dtype=np.int64)),
                "status": status, "credits": chunk["credits"], "run_id": chunk["run_id"],
                "created_at": at, "updated_at": at, "poll_count": pa.array(np.ones(n, dtype=np.int64)),
            }, n))
            counts["jobs"] += n
            tracks = _tracks_of(chunk)
            writers["tracks"].write_table(tracks)
            counts["tracks"] += tracks.num_rows
            stems = _stems_of(chunk, at)
            writers["stems"].write_table(stems)
            counts["stems"] += stems.num_rows
            spend, spend_id = _spend_of(chunk, at, spend_id)
            writers["spend"].write_table(spend)
            counts["spend"] += spend.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    runs = _runs()
    pq.write_table(runs, parquet_path(data_dir, "runs"), compression="zstd")
    counts["runs"] = runs.num_rows
    refresh_duckdb(data_dir)  # creates the other (empty) snapshots too
    return counts


def _tracks_of(chunk: dict[str, pa.Array]) -> pa.Table:
    songs = pc.unique(chunk["audio_id"])  # chunks hold whole songs: their size is even
    seen = pa.array(np.full(len(songs), _START_US), pa.timestamp("us", tz="UTC"))
    return _table("tracks", {"audio_id": songs, "task_id": songs, "first_seen_at": seen, "updated_at": seen},
                  len(songs))


def _stems_of(chunk: dict[str, pa.Array], at: pa.Array) -> pa.Table:
    is_split = pc.equal(chunk["separation_type"], "split_stem").to_numpy(zero_copy_only=False)
    per_job = np.where(is_split, len(SPLIT_STEMS), len(VOCAL_STEMS))
    job_index = np.repeat(np.arange(len(per_job)), per_job)
    position = np.arange(len(job_index)) - np.repeat(np.cumsum(per_job) - per_job, per_job)
    names = np.where(np.repeat(is_split, per_job), np.array(SPLIT_STEMS)[np.minimum(position, 11)],
                     np.array(VOCAL_STEMS)[np.minimum(position, 1)])
    take = pa.array(job_index)
    rows = len(job_index)
    return _table("stems", {
        "job_id": pc.take(chunk["job_id"], take), "audio_id": pc.take(chunk["audio_id"], take),
        "separation_type": pc.take(chunk["separation_type"], take), "stem": pa.array(names),
        "status": pa.array(np.full(rows, "downloaded")), "bytes": pa.array(np.full(rows, 16_000, dtype=np.int64)),
        "duration_s": pa.array(np.full(rows, 180.0)), "sample_rate": pa.array(np.full(rows, 44_100, dtype=np.int64)),
        "channels": pa.array(np.full(rows, 2, dtype=np.int64)), "downloaded_at": pc.take(at, take),
    }, rows)


def _spend_of(chunk: dict[str, pa.Array], at: pa.Array, first_id: int) -> tuple[pa.Table, int]:
    rejected = chunk["rejected"].to_numpy(zero_copy_only=False)
    n = len(rejected)
    credits = chunk["credits"].to_numpy()
    # intent (+cost) for every job; accepted (0) or rejected (-cost) after it.
    job_index = np.concatenate([np.arange(n), np.arange(n)])
    events = np.concatenate([np.full(n, "intent"), np.where(rejected, "rejected", "accepted")])
    amounts = np.concatenate([credits, np.where(rejected, -credits, 0)])
    take = pa.array(job_index)
    rows = len(job_index)
    table = _table("spend", {
        "spend_id": pa.array(np.arange(first_id, first_id + rows)), "at": pc.take(at, take),
        "run_id": pc.take(chunk["run_id"], take), "job_id": pc.take(chunk["job_id"], take),
        "audio_id": pc.take(chunk["audio_id"], take), "separation_type": pc.take(chunk["separation_type"], take),
        "credits": pa.array(amounts), "event": pa.array(events),
    }, rows)
    return table, first_id + rows


def _runs() -> pa.Table:
    index = np.arange(RUNS)
    started = pa.array(_START_US + index * (DAYS * _DAY_US) // RUNS, pa.timestamp("us", tz="UTC"))
    return _table("runs", {
        "run_id": pa.array([f"run-{r:04d}" for r in index]), "started_at": started,
        "status": pa.array(np.full(RUNS, "completed")), "balance_delta": pa.array(np.zeros(RUNS, dtype=np.int64)),
    }, RUNS)
