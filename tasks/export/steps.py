"""The export's Prefect tasks: select, write a batch of tracks, write a shard, write metadata and datasheet.

Each is a thin wrapper over plain functions (callable as ``task.fn`` in tests); none touches
the export manifest, which only the flow updates, one batch at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from prefect import task
from prefect.cache_policies import NONE

from stemcat.catalog import open_catalog
from stemcat.catalog.storage import Storage
from stemcat.tasks.export.audio import AudioTarget, SourceMismatch
from stemcat.tasks.export.datasheet import write_datasheet
from stemcat.tasks.export.metadata import write_metadata
from stemcat.tasks.export.options import ExportOptions
from stemcat.tasks.export.plan import Screening, TrackPlan, screen
from stemcat.tasks.export.records import ExportedTrack, Refusal, ShardRecord
from stemcat.tasks.export.selection import credits_spent, select_candidates
from stemcat.tasks.export.shards import (
    Member,
    member_footprint,
    next_index,
    pack,
    sample_members,
    verified_members,
    write_shard,
)
from stemcat.tasks.export.state import ExportState
from stemcat.tasks.export.writer import write_track


@dataclass
class BatchResult:
    """Tracks a batch wrote, and those it refused with the reason."""

    written: list[ExportedTrack] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ShardJob:
    """One shard to write: its split, index and the tracks it will hold."""

    split: str
    index: int
    tracks: tuple[ExportedTrack, ...]


@dataclass
class ShardResult:
    record: ShardRecord | None
    refused: list[Refusal] = field(default_factory=list)


def select(data_dir: Path, options: ExportOptions, exported_jobs: Mapping[str, str], redo: frozenset[str],
           storage: Storage | None = None) -> Screening:
    con = open_catalog(data_dir, storage)
    try:
        candidates = select_candidates(con, options)
    finally:
        con.close()
    return screen(candidates, options, exported_jobs, redo)


@task(name="export-select", cache_policy=NONE, retries=0)
def select_tracks(
    data_dir: Path, options: ExportOptions, exported_jobs: dict[str, str], redo: frozenset[str],
    storage: Storage | None = None,
) -> Screening:
    """Read the catalog (the one published in ``storage`` if given) and decide which tracks to write."""
    return select(data_dir, options, exported_jobs, redo, storage)


def write_batch(plans: Sequence[TrackPlan], data_dir: Path, out_dir: Path, target: AudioTarget,
                storage: Storage | None = None) -> BatchResult:
    result = BatchResult()
    for plan in plans:
        try:
            result.written.append(write_track(plan, data_dir, out_dir, target, storage))
        except SourceMismatch as error:
            result.refused.append(Refusal(key=plan.key, reason=str(error)))
        except sf.LibsndfileError as error:  # verified bytes that still do not decode
            result.refused.append(Refusal(key=plan.key, reason=f"audio does not decode: {error}"))
    return result


@task(name="export-write-tracks", cache_policy=NONE, retries=0)
def write_tracks(plans: list[TrackPlan], data_dir: Path, out_dir: Path, target: AudioTarget,
                 storage: Storage | None = None) -> BatchResult:
    """Verify the sources of a batch of tracks (fetching missing ones from ``storage``) and write their files."""
    return write_batch(plans, data_dir, out_dir, target, storage)


def plan_shards(state: ExportState, out_dir: Path, limit_bytes: int) -> list[ShardJob]:
    """Pack every track not yet in a shard into new shards, per split, in key order."""
    pending: dict[str, list[ExportedTrack]] = defaultdict(list)
    for track in state.tracks.values():
        if track.shard is None:
            pending[track.split].append(track)
    jobs: list[ShardJob] = []
    for split, tracks in sorted(pending.items()):
        by_key = {track.key: track for track in sorted(tracks, key=lambda t: t.key)}
        footprints = [(key, sum(member_footprint(m.size) for m in sample_members(track, out_dir)))
                      for key, track in by_key.items()]
        start = next_index(state.shards, split)
        for offset, keys in enumerate(pack(footprints, limit_bytes)):
            jobs.append(ShardJob(split=split, index=start + offset, tracks=tuple(by_key[k] for k in keys)))
    return jobs


def shard(job: ShardJob, out_dir: Path) -> ShardResult:
    result = ShardResult(record=None)
    samples: list[tuple[ExportedTrack, list[Member]]] = []
    for track in job.tracks:
        try:
            samples.append((track, verified_members(track, out_dir)))
        except SourceMismatch as error:
            result.refused.append(Refusal(key=track.key, reason=f"not sharded: {error}"))
    if samples:
        result.record = write_shard(out_dir, job.split, job.index, samples)
    return result


@task(name="export-write-shard", cache_policy=NONE, retries=0)
def write_shard_task(job: ShardJob, out_dir: Path) -> ShardResult:
    """Write one WebDataset tar from the layout's files (each checked against its recorded SHA-256)."""
    return shard(job, out_dir)


@dataclass(frozen=True, slots=True)
class Outputs:
    """The dataset-wide files, and the credits the dataset's separations cost."""

    metadata: Path
    datasheet: Path
    credits_by_type: dict[str, int]


def finish(out_dir: Path, data_dir: Path, state: ExportState, options: ExportOptions, command: str,
           storage: Storage | None = None) -> Outputs:
    metadata = write_metadata(out_dir, state)
    con = open_catalog(data_dir, storage)
    try:
        credits = credits_spent(con, sorted({(t.info.audio_id, t.info.separation_type) for t in state.tracks.values()}))
    finally:
        con.close()
    datasheet = write_datasheet(out_dir, state, options, credits, command)
    return Outputs(metadata=metadata, datasheet=datasheet, credits_by_type=credits)


@task(name="export-write-metadata", cache_policy=NONE, retries=1, retry_delay_seconds=1)
def write_outputs(out_dir: Path, data_dir: Path, state: ExportState, options: ExportOptions, command: str,
                  storage: Storage | None = None) -> Outputs:
    """Rewrite metadata.parquet, the datasheet README.md and its chart from the export manifest."""
    return finish(out_dir, data_dir, state, options, command, storage)
