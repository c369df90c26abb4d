"""Write one planned track into the MUSDB-like layout: ``{split}/{key}/mixture.{ext}`` and a file per stem.

Every source stem is checked against the catalog's size and SHA-256 before anything is read
or linked; one mismatch refuses the whole track (its mixture would be wrong too). With a storage
(``--storage``), a stem missing or wrong in the data directory is first fetched from there into
it (verified by its SHA-256 on the way), so any host can export what any other downloaded. The mix
file is used for the mixture only when the catalog holds its checksum and it matches;
otherwise the mixture is the sum of the stems.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stemcat.catalog.atomic_files import fsync_dir
from stemcat.catalog.storage import Storage, StorageError
from stemcat.tasks.export.audio import (
    AudioHeader,
    AudioTarget,
    SourceMismatch,
    encode,
    link_or_copy,
    read_header,
    verify_file,
)
from stemcat.tasks.export.options import AudioFormat
from stemcat.tasks.export.plan import MIXTURE, OutputSpec, TrackPlan
from stemcat.tasks.export.records import ExportedFile, ExportedTrack, MixtureSource

MIX_PART = "mix"


@dataclass(frozen=True, slots=True)
class VerifiedSource:
    """A file whose bytes matched the catalog's checksum, with its decoded shape."""

    path: Path
    sha256: str
    header: AudioHeader


def track_dir(split: str, key: str) -> PurePosixPath:
    """Folder of a track, relative to the export root."""
    return PurePosixPath(split) / key


def source_path(data_dir: Path, relative: str, what: str) -> Path:
    """A catalog path resolved under DATA_DIR; refuses anything that points outside it."""
    root = data_dir.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise SourceMismatch(f"{what}: catalog path {relative!r} points outside the data directory")
    return candidate


def _verified_local(storage: Storage | None, path: Path, relative: str, sha256: str, size: int | None,
                    what: str) -> None:
    """Verify ``path``; when it fails and there is a storage, fetch the stored copy (verified) and check again."""
    try:
        verify_file(path, sha256, size, what)
        return
    except SourceMismatch:
        if storage is None:
            raise
    try:
        storage.fetch(relative, path, sha256=sha256)
    except StorageError as error:
        raise SourceMismatch(f"{what}: {error}") from None
    verify_file(path, sha256, size, what)


def _verified_stems(plan: TrackPlan, data_dir: Path, storage: Storage | None) -> dict[str, VerifiedSource]:
    sources: dict[str, VerifiedSource] = {}
    for stem in plan.candidate.stems:
        what = f"stem {stem.stem}"
        path = source_path(data_dir, stem.path, what)
        _verified_local(storage, path, stem.path, stem.sha256, stem.bytes, what)
        try:
            header = read_header(path)
        except RuntimeError as error:  # soundfile's LibsndfileError
            raise SourceMismatch(f"{what}: {path} is not readable audio ({error})") from error
        sources[stem.stem] = VerifiedSource(path, stem.sha256, header)
    shapes = {(s.header.sample_rate, s.header.channels) for s in sources.values()}
    if len(shapes) != 1:
        raise SourceMismatch(f"stems disagree on sample rate / channels: {sorted(shapes)}")
    return sources


def _usable_mix(plan: TrackPlan, data_dir: Path, shape: AudioHeader) -> VerifiedSource | None:
    mix = plan.candidate.mix
    if mix is None:
        return None
    try:
        path = source_path(data_dir, mix.path, "mix")
        verify_file(path, mix.sha256, None, "mix")
        header = read_header(path)
    except (SourceMismatch, RuntimeError):
        return None  # an unverifiable mix is never read: the stems' sum stands in
    if (header.sample_rate, header.channels) != (shape.sample_rate, shape.channels):
        return None
    return VerifiedSource(path, mix.sha256, header)


def write_track(plan: TrackPlan, data_dir: Path, out_dir: Path, target: AudioTarget,
                storage: Storage | None = None) -> ExportedTrack:
    """Write every output of ``plan``; raises ``SourceMismatch`` (nothing recorded) when a source fails."""
    sources = _verified_stems(plan, data_dir, storage)
    shape = next(iter(sources.values())).header
    frames = max(s.header.frames for s in sources.values())
    mix = _usable_mix(plan, data_dir, shape)
    mixture_source: MixtureSource = "sum_of_stems"
    if mix is not None:
        sources[MIX_PART] = mix
        frames = mix.header.frames  # the roll-up and the stems' sum are trimmed or padded to the mix
        mixture_source = "mix_file"
    folder = out_dir / track_dir(plan.split, plan.key)
    files: list[ExportedFile] = []
    for output in plan.outputs:
        parts = (MIX_PART,) if output.name == MIXTURE and mix is not None else output.parts
        files.append(_write_output(output, parts, sources, shape, frames, target, folder, out_dir))
    fsync_dir(folder)
    return ExportedTrack(
        key=plan.key, split=plan.split, mixture_source=mixture_source, files=tuple(files),
        source_sha256={name: source.sha256 for name, source in sources.items()},
        info=plan.candidate.info, exported_at=time.time(),
    )


def _write_output(
    output: OutputSpec,
    parts: tuple[str, ...],
    sources: dict[str, VerifiedSource],
    shape: AudioHeader,
    frames: int,
    target: AudioTarget,
    folder: Path,
    out_dir: Path,
) -> ExportedFile:
    final = folder / f"{output.name}.{target.format.value}"
    relative = final.relative_to(out_dir).as_posix()
    if target.format is AudioFormat.mp3 and len(parts) == 1:
        source = sources[parts[0]]
        method = link_or_copy(source.path, final, source.sha256)
        return ExportedFile(
            name=output.name, path=relative, bytes=final.stat().st_size, sha256=source.sha256,
            frames=source.header.frames, sample_rate=source.header.sample_rate, channels=source.header.channels,
            method=method, parts=parts,
        )
    written = encode([sources[p].path for p in parts], shape, frames, target, final)
    return ExportedFile(
        name=output.name, path=relative, bytes=written.bytes, sha256=written.sha256, frames=written.frames,
        sample_rate=written.sample_rate, channels=written.channels, method="encoded", parts=parts,
        clipped_samples=written.clipped_samples,
    )
