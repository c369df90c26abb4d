"""Audio file I/O for the export: verify, link or copy, and encode sums of files block by block.

Every file lands under a temporary name in its final directory, is fsynced, then renamed
(``catalog.atomic_files``), so a reader never sees half a file and a crash leaves only hidden
``.tmp`` leftovers that ``sweep_stale_temps`` removes. Sources are read only after their SHA-256 matched the catalog's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from stemcat.catalog.atomic_files import replacing, sha256_file

from stemcat.tasks.export.options import AudioFormat
from stemcat.tasks.export.resample import Block, StreamingResampler, convert_channels

BLOCK_FRAMES = 1 << 16
HASH_CHUNK = 1 << 20

_SF_FORMATS: dict[AudioFormat, tuple[str, str]] = {
    AudioFormat.mp3: ("MP3", "MPEG_LAYER_III"),
    AudioFormat.wav: ("WAV", "PCM_16"),
    AudioFormat.flac: ("FLAC", "PCM_16"),
}


class SourceMismatch(Exception):
    """A source file is missing or differs from what the catalog recorded; it is never read further."""


@dataclass(frozen=True, slots=True)
class AudioHeader:
    frames: int
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class AudioTarget:
    """What encoded files look like; ``None`` rate or channels keep the source's."""

    format: AudioFormat
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True, slots=True)
class WrittenAudio:
    frames: int
    sample_rate: int
    channels: int
    bytes: int
    sha256: str
    clipped_samples: int


def verify_file(path: Path, sha256: str, size: int | None, what: str) -> None:
    """Raise ``SourceMismatch`` unless ``path`` exists with this size (when known) and checksum."""
    try:
        actual_size = path.stat().st_size
    except FileNotFoundError as error:
        raise SourceMismatch(f"{what}: file {path} is missing") from error
    if size is not None and actual_size != size:
        raise SourceMismatch(f"{what}: {path} has {actual_size} bytes, the catalog says {size}")
    actual = sha256_file(path)
    if actual != sha256:
        raise SourceMismatch(f"{what}: sha256 of {path} is {actual[:12]}…, the catalog says {sha256[:12]}…")


def read_header(path: Path) -> AudioHeader:
    info = sf.info(str(path))
    return AudioHeader(frames=int(info.frames), sample_rate=int(info.samplerate), channels=int(info.channels))


def landing(final: Path) -> AbstractContextManager[Path]:
    """A temporary path next to ``final``; on success it is fsynced and renamed onto ``final``.

    The directory is fsynced by the caller, once per track folder (``fsync_dir``).
    """
    return replacing(final, sync_dir=False)


def link_or_copy(source: Path, final: Path, sha256: str) -> Literal["link", "copy"]:
    """Hard-link ``source`` (already verified) to ``final``, or copy it, checking the copied bytes."""
    with landing(final) as temp:
        try:
            os.link(source, temp)
            return "link"
        except OSError:
            pass  # another file system, or links not allowed: copy instead
        digest = hashlib.sha256()
        with source.open("rb") as reader, temp.open("wb") as writer:
            while chunk := reader.read(HASH_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
        if digest.hexdigest() != sha256:
            raise SourceMismatch(f"{source} changed while it was being copied")
        shutil.copystat(source, temp)
        return "copy"


def summed_blocks(
    paths: Sequence[Path], frames: int, channels: int, block_frames: int = BLOCK_FRAMES
) -> Iterator[Block]:
    """The sample-wise sum of several files, each padded with silence or trimmed to ``frames``."""
    with ExitStack() as stack:
        readers = [stack.enter_context(sf.SoundFile(str(path))) for path in paths]
        for start in range(0, frames, block_frames):
            count = min(block_frames, frames - start)
            total = np.zeros((count, channels), dtype=np.float64)
            for reader in readers:
                data = reader.read(count, dtype="float64", always_2d=True)
                if len(data):
                    total[: len(data)] += convert_channels(data, channels)
            yield total


class _ClippingWriter:
    """Writes float blocks, clipping to full scale and counting what was clipped."""

    def __init__(self, writer: sf.SoundFile) -> None:
        self._writer = writer
        self.frames = 0
        self.clipped = 0

    def write(self, block: Block) -> None:
        if not len(block):
            return
        # libsndfile wraps out-of-range floats around when it converts them to integers: clip first.
        over = np.abs(block) > 1.0
        if over.any():
            self.clipped += int(over.sum())
            block = np.clip(block, -1.0, 1.0)
        self._writer.write(block)
        self.frames += len(block)


def encode(
    paths: Sequence[Path], source: AudioHeader, frames: int, target: AudioTarget, final: Path
) -> WrittenAudio:
    """Sum ``paths`` over ``frames`` samples, convert channels and rate, and write ``final`` atomically."""
    rate = target.sample_rate or source.sample_rate
    channels = target.channels or source.channels
    sf_format, subtype = _SF_FORMATS[target.format]
    resampler = StreamingResampler(source.sample_rate, rate)
    # The sound file closes (and finishes its header) before `landing` fsyncs and renames it.
    with landing(final) as temp, sf.SoundFile(str(temp), "w", samplerate=rate, channels=channels, format=sf_format,
                                               subtype=subtype, **_encoder_options(target.format)) as sound:
        writer = _ClippingWriter(sound)
        for block in summed_blocks(paths, frames, source.channels):
            writer.write(resampler.process(convert_channels(block, channels)))
        writer.write(resampler.flush(channels))
    return WrittenAudio(frames=writer.frames, sample_rate=rate, channels=channels, bytes=final.stat().st_size,
                        sha256=sha256_file(final), clipped_samples=writer.clipped)


def _encoder_options(fmt: AudioFormat) -> dict[str, object]:
    # Highest MP3 quality at a constant bit rate, like the files the API serves.
    if fmt is AudioFormat.mp3:
        return {"compression_level": 0.0, "bitrate_mode": "CONSTANT"}
    return {}
