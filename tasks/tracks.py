"""Turn validated manifest rows into catalog tracks, expanding task-only rows.

A row without `audio_id` stands for every audio variation of its generation task;
those are listed by the (free) music-generation record-info call, once: the tracks
table remembers them, so a rerun or a second pass asks the API again for nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NONE

from stemcat.catalog import Ledger, RejectRow, TrackRow
from stemcat.client import SunoClient, SunoError
from stemcat.exit_codes import ExitCode
from stemcat.tasks.context import RunAborted
from stemcat.tasks.manifest import ManifestRow
from stemcat.tasks.paths import UnsafePathPart, check_id


@dataclass(frozen=True)
class TrackKey:
    """One unit of paid work: an audio variation and a separation type."""

    audio_id: str
    task_id: str
    separation_type: str


def _track_row(row: ManifestRow, manifest: str, now: float, **api: object) -> TrackRow:
    return TrackRow(
        audio_id=str(api.get("audio_id") or row.audio_id),
        task_id=row.task_id,
        title=row.title or api.get("title"),  # type: ignore[arg-type]
        tags=row.tags or api.get("tags"),  # type: ignore[arg-type]
        duration_s=api.get("duration_s"),  # type: ignore[arg-type]
        source_url=api.get("source_url"),  # type: ignore[arg-type]
        model_name=api.get("model_name"),  # type: ignore[arg-type]
        split=row.split,
        metadata=json.dumps(row.metadata, sort_keys=True, default=str),
        manifest=manifest,
        line=row.line,
        first_seen_at=now,
        updated_at=now,
    )


async def stage_rows(
    ledger: Ledger, client: SunoClient | None, rows: list[ManifestRow], *, manifest: str, run_id: str,
    write: bool = True,
) -> tuple[list[TrackKey], list[RejectRow]]:
    """Resolve rows to (audio_id, type) keys, record the tracks, and reject rows that cannot be expanded."""
    now = time.time()
    keys: list[TrackKey] = []
    tracks: list[TrackRow] = []
    rejects: list[RejectRow] = []
    task_only = sorted({r.task_id for r in rows if r.audio_id is None})
    known = await asyncio.to_thread(ledger.tracks_for_tasks, task_only) if task_only else {}
    missing = [t for t in task_only if not known.get(t)]
    fetched: dict[str, list[dict[str, object]] | str] = {}
    if missing:
        if client is None:
            raise RunAborted("manifest rows without audio_id need the API to list their variations", ExitCode.BAD_CONFIG)

        async def fetch(task_id: str) -> None:
            try:
                record = await client.generation_record(task_id)
            except SunoError as error:
                if error.policy.value == "run":
                    raise RunAborted(str(error), ExitCode.UNAUTHORIZED) from error
                fetched[task_id] = f"could not list the audio variations of task {task_id}: {error}"
                return
            variations = []
            for audio in record.audios:
                try:
                    check_id(audio.id, "audio_id")
                except UnsafePathPart as error:
                    fetched[task_id] = f"task {task_id}: {error}"
                    return
                variations.append({
                    "audio_id": audio.id, "title": audio.title, "tags": audio.tags, "duration_s": audio.duration_s,
                    "source_url": audio.audio_url, "model_name": audio.model_name,
                })
            fetched[task_id] = variations or f"task {task_id} has no audio variations"

        await asyncio.gather(*(fetch(t) for t in missing))
    for row in rows:
        if row.audio_id is not None:
            keys.append(TrackKey(row.audio_id, row.task_id, row.separation_type))
            tracks.append(_track_row(row, manifest, now))
            continue
        cached = known.get(row.task_id)
        if cached:
            keys.extend(TrackKey(t.audio_id, row.task_id, row.separation_type) for t in cached)
            continue
        found = fetched.get(row.task_id)
        if isinstance(found, str) or found is None:
            rejects.append(RejectRow(run_id=run_id, manifest=manifest, line=row.line,
                                     reason=found or "not expanded", raw=row.model_dump_json(), at=now))
            continue
        for variation in found:
            keys.append(TrackKey(str(variation["audio_id"]), row.task_id, row.separation_type))
            tracks.append(_track_row(row, manifest, now, **variation))
    if write and tracks:
        await asyncio.to_thread(ledger.upsert_tracks, tracks)
    return keys, rejects


@task(name="stage-tracks", cache_policy=NONE, retries=0)
async def stage_tracks(
    ledger: Ledger, client: SunoClient | None, rows: list[ManifestRow], manifest: str, run_id: str
) -> tuple[list[TrackKey], list[RejectRow]]:
    """Record a chunk's tracks and list its (audio_id, type) keys (free calls only)."""
    return await stage_rows(ledger, client, rows, manifest=manifest, run_id=run_id)
