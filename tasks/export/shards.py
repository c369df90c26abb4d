"""WebDataset tar shards: ``shards/{split}/{split}-{index:06d}.tar`` with ``{key}.{stem}.{ext}`` members.

All files of one sample sit next to each other in one shard (the WebDataset convention), with
a ``{key}.json`` of its metadata. Shards are packed from the layout's files, in key order, up
to a size limit; a finished shard is never reopened, so a later export adds new shards only.
Members carry fixed owners and the track's export time, so the same files give the same bytes.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stemcat.catalog.atomic_files import sha256_file
from stemcat.tasks.export.audio import landing, verify_file
from stemcat.tasks.export.records import ExportedTrack, ShardRecord

SHARDS_DIRNAME = "shards"
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


@dataclass(frozen=True, slots=True)
class Member:
    """One tar member: its name and where its bytes come from (a file, or inline JSON)."""

    name: str
    path: Path | None
    data: bytes | None
    size: int
    sha256: str | None


def shard_relpath(split: str, index: int) -> PurePosixPath:
    return PurePosixPath(SHARDS_DIRNAME) / split / f"{split}-{index:06d}.tar"


def sample_json(track: ExportedTrack) -> bytes:
    """The ``{key}.json`` member: what a training loop needs without the metadata table."""
    info = track.info
    body = {
        "key": track.key, "split": track.split, "audio_id": info.audio_id, "task_id": info.task_id,
        "separation_type": info.separation_type, "title": info.title, "tags": info.tags,
        "mixture_source": track.mixture_source,
        "files": {f.name: {"frames": f.frames, "sample_rate": f.sample_rate, "channels": f.channels,
                           "sha256": f.sha256, "parts": list(f.parts)} for f in track.files},
    }
    return json.dumps(body, sort_keys=True).encode("utf-8")


def sample_members(track: ExportedTrack, out_dir: Path) -> list[Member]:
    members = []
    for file in track.files:
        extension = PurePosixPath(file.path).suffix.lstrip(".")
        members.append(Member(f"{track.key}.{file.name}.{extension}", out_dir / file.path, None, file.bytes,
                              file.sha256))
    metadata = sample_json(track)
    members.append(Member(f"{track.key}.json", None, metadata, len(metadata), None))
    return members


def member_footprint(size: int) -> int:
    """Bytes a member takes in a tar: a header (plus room for a PAX header) and padded data."""
    return 2 * _BLOCK + -(-size // _BLOCK) * _BLOCK


def pack(samples: Sequence[tuple[str, int]], limit_bytes: int) -> list[list[str]]:
    """Group (key, footprint) samples, in order, into shards of at most ``limit_bytes`` each.

    A sample larger than the limit gets a shard of its own (samples are never split).
    """
    overhead = 2 * _BLOCK + _RECORD  # end-of-archive blocks and the final record padding
    shards: list[list[str]] = []
    current: list[str] = []
    used = overhead
    for key, footprint in samples:
        if current and used + footprint > limit_bytes:
            shards.append(current)
            current, used = [], overhead
        current.append(key)
        used += footprint
    if current:
        shards.append(current)
    return shards


def verified_members(track: ExportedTrack, out_dir: Path) -> list[Member]:
    """The track's members, after checking each layout file against the checksum recorded at export."""
    members = sample_members(track, out_dir)
    for member in members:
        if member.path is not None and member.sha256 is not None:
            verify_file(member.path, member.sha256, member.size, f"{track.key}: exported file")
    return members


def write_shard(
    out_dir: Path, split: str, index: int, samples: Iterable[tuple[ExportedTrack, list[Member]]]
) -> ShardRecord:
    """Write one tar atomically and describe it."""
    relative = shard_relpath(split, index)
    final = out_dir / relative
    keys: list[str] = []
    count = 0
    with landing(final) as temp, tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as archive:
        for track, members in samples:
            keys.append(track.key)
            for member in members:
                info = tarfile.TarInfo(member.name)
                info.size = member.size
                info.mtime = int(track.exported_at)
                info.mode = 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if member.path is not None:
                    with member.path.open("rb") as handle:
                        archive.addfile(info, handle)
                else:
                    archive.addfile(info, io.BytesIO(member.data or b""))
                count += 1
    return ShardRecord(path=relative.as_posix(), split=split, index=index, bytes=final.stat().st_size,
                       sha256=sha256_file(final), track_keys=tuple(keys), members=count)


def next_index(records: Iterable[ShardRecord], split: str) -> int:
    return max((r.index + 1 for r in records if r.split == split), default=0)

