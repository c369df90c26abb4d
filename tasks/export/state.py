"""The export manifest ``OUT/.stemcat-export.json``: what was written, with checksums.

It makes re-runs incremental: a track in it is never written again (unless its files went
missing), its split never changes, and shards already written are never reopened. It is
replaced atomically after every batch, so a crash loses at most the batch in flight, whose
files the next run simply writes again. ``OUT/.stemcat-export.lock`` keeps two exports from
writing one directory at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from stemcat.catalog.atomic_files import replacing
from stemcat.tasks.export.records import ExportedTrack, Refusal, ShardRecord, TrackInfo

STATE_FILENAME = ".stemcat-export.json"
LOCK_FILENAME = ".stemcat-export.lock"
STATE_VERSION = 1


class ExportBusyError(RuntimeError):
    """Another export is writing this directory."""


class ExportRun(BaseModel):
    """One run of the export over this directory."""

    started_at: float
    finished_at: float | None = None
    added: int = 0
    rewritten: int = 0
    refused: list[Refusal] = Field(default_factory=list)
    excluded: dict[str, int] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    command: str = ""


class ExportState(BaseModel):
    """Everything an export directory holds, keyed by track key."""

    version: int = STATE_VERSION
    settings: dict[str, Any]
    created_at: float
    updated_at: float
    tracks: dict[str, ExportedTrack] = Field(default_factory=dict)
    shards: list[ShardRecord] = Field(default_factory=list)
    runs: list[ExportRun] = Field(default_factory=list)

    def task_splits(self) -> dict[str, str]:
        """The split each exported generation task lives in."""
        return {track.info.task_id: track.split for track in self.tracks.values()}

    def exported_jobs(self) -> dict[str, str]:
        return {key: track.info.job_id for key, track in self.tracks.items()}

    def add(self, track: ExportedTrack) -> None:
        self.tracks[track.key] = track

    def refresh(self, infos: dict[str, TrackInfo]) -> None:
        """Replace the catalog facts of exported tracks (quality figures may have been computed since)."""
        for key, info in infos.items():
            if key in self.tracks:
                self.tracks[key] = self.tracks[key].model_copy(update={"info": info})

    def mark_sharded(self, record: ShardRecord) -> None:
        self.shards.append(record)
        for key in record.track_keys:
            self.tracks[key] = self.tracks[key].model_copy(update={"shard": record.path})


def state_path(out_dir: Path) -> Path:
    return out_dir / STATE_FILENAME


def load_state(out_dir: Path) -> ExportState | None:
    path = state_path(out_dir)
    if not path.exists():
        return None
    return ExportState.model_validate_json(path.read_bytes())


def new_state(settings: dict[str, Any]) -> ExportState:
    now = time.time()
    return ExportState(settings=settings, created_at=now, updated_at=now)


def save_state(out_dir: Path, state: ExportState) -> None:
    """Replace the manifest atomically (temp file, fsync, rename, fsync of the directory)."""
    state.updated_at = time.time()
    path = state_path(out_dir)
    payload = state.model_dump(mode="json")
    with replacing(path) as temp, temp.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, separators=(",", ":"))


@contextlib.contextmanager
def export_lock(out_dir: Path) -> Iterator[None]:
    """Hold the directory's lock for the duration of an export; refuses at once when it is taken."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / LOCK_FILENAME).open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise ExportBusyError(f"another export is writing {out_dir}; wait for it to finish") from error
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def missing_files(out_dir: Path, track: ExportedTrack) -> list[str]:
    """Files of an exported track that are gone or changed size (cheap: stat only, never read)."""
    gone: list[str] = []
    for file in track.files:
        try:
            if (out_dir / file.path).stat().st_size != file.bytes:
                gone.append(file.path)
        except FileNotFoundError:
            gone.append(file.path)
    return gone
