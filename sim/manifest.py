"""Writing a track manifest (the input file of a stemcat run) for tracks the simulator created."""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import cycle
from pathlib import Path
from typing import Literal, Protocol

from stemcat.sim.models import SimTrack
from stemcat.sim.stems import SEPARATION_TYPES, SeparationType

ManifestFormat = Literal["csv", "jsonl", "parquet"]
_SUFFIX_FORMATS: dict[str, ManifestFormat] = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


class TrackSource(Protocol):
    """Anything that can create tracks: a `SimServer` or an `AdminClient`."""

    def create_tracks(self, n: int = ...) -> list[SimTrack]: ...


def manifest_rows(
    tracks: Sequence[SimTrack], types: Sequence[SeparationType], *, with_audio_id: bool
) -> list[dict[str, str]]:
    """Manifest rows: one per track, or one per music task when audio ids are left out."""
    if not types or any(t not in SEPARATION_TYPES for t in types):
        raise ValueError(f"types must be a non-empty selection of {SEPARATION_TYPES}")
    chosen = tracks
    if not with_audio_id:
        first_of_task: dict[str, SimTrack] = {}
        for track in tracks:
            first_of_task.setdefault(track.music_task_id, track)
        chosen = list(first_of_task.values())
    rows: list[dict[str, str]] = []
    for track, separation_type in zip(chosen, cycle(types)):
        row = {"task_id": track.music_task_id}
        if with_audio_id:
            row["audio_id"] = track.audio_id
        row.update({"type": separation_type, "title": track.title, "tags": track.tags, "genre": track.genre})
        rows.append(row)
    return rows


def write_manifest(rows: list[dict[str, str]], path: Path, fmt: ManifestFormat) -> Path:
    """Write rows atomically (temp file, then rename) in the given format."""
    import pandas as pd  # deferred: importing stemcat.sim should not pay for pandas

    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    partial = path.with_name(f".{path.name}.partial")
    if fmt == "csv":
        frame.to_csv(partial, index=False)
    elif fmt == "jsonl":
        frame.to_json(partial, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(partial, index=False)
    os.replace(partial, path)
    return path


def make_tracks_manifest(
    sim: TrackSource,
    n: int,
    path: str | os.PathLike[str],
    types: Sequence[SeparationType] = SEPARATION_TYPES,
    fmt: ManifestFormat | None = None,
    with_audio_id: bool = True,
) -> Path:
    """Create n tracks on the simulator and write their manifest; `fmt` defaults from the suffix (else csv)."""
    target = Path(path)
    chosen_fmt: ManifestFormat = fmt or _SUFFIX_FORMATS.get(target.suffix.lower(), "csv")
    rows = manifest_rows(sim.create_tracks(n), types, with_audio_id=with_audio_id)
    return write_manifest(rows, target, chosen_fmt)
