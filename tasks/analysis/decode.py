"""Decoding audio files: the one place stemcat opens a stem or a mix as audio.

Files are read in blocks of ``block_frames`` float32 frames, so memory stays at a few blocks
per file however long the song is. Blocking (decoding and numpy): call it from a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from stemcat.tasks.analysis.meters import JobMeter
from stemcat.tasks.analysis.metrics import JobMetrics, QualityThresholds, StreamShape

BLOCK_FRAMES = 65_536


class UndecodableAudio(Exception):
    """A file that does not open or decode as audio: ``path`` says which, ``problem`` why."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path.name}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class AudioFacts:
    """What decoding a whole file established: its length and stream shape."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _open(stack: ExitStack, path: Path) -> sf.SoundFile:
    try:
        return stack.enter_context(sf.SoundFile(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise UndecodableAudio(path, f"does not open as audio ({error})") from error


def _read(audio: sf.SoundFile, path: Path, frames: int) -> np.ndarray:
    try:
        block: np.ndarray = audio.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise UndecodableAudio(path, f"does not decode ({error})") from error
    return block


def verify_file(path: Path, *, block_frames: int = BLOCK_FRAMES) -> AudioFacts:
    """Decode the whole file block by block (no meters); raises ``UndecodableAudio``."""
    with ExitStack() as stack:
        audio = _open(stack, path)
        frames = 0
        while block := _read(audio, path, block_frames).shape[0]:
            frames += block
        if frames == 0:
            raise UndecodableAudio(path, "no audio frames")
        return AudioFacts(frames=frames, sample_rate=audio.samplerate, channels=audio.channels)


def measure_files(
    stem_paths: Mapping[str, Path],
    mix_path: Path | None,
    thresholds: QualityThresholds | None = None,
    *,
    block_frames: int = BLOCK_FRAMES,
) -> JobMetrics:
    """Measure each stem, the mix, and how well the stems add back up to the mix, in one pass."""
    if block_frames < 1:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    with ExitStack() as stack:
        stems = {name: _open(stack, path) for name, path in stem_paths.items()}
        mix = None if mix_path is None else _open(stack, mix_path)
        meter = JobMeter(
            {name: StreamShape(audio.samplerate, audio.channels) for name, audio in stems.items()},
            None if mix is None else StreamShape(mix.samplerate, mix.channels),
            thresholds,
        )
        open_stems = dict(stems)
        mix_open = mix is not None
        while open_stems or mix_open:
            stem_blocks = {name: _read(audio, stem_paths[name], block_frames) for name, audio in open_stems.items()}
            mix_block = _read(mix, mix_path, block_frames) if mix is not None and mix_path and mix_open else None
            meter.update(stem_blocks, mix_block)
            open_stems = {
                name: audio for name, audio in open_stems.items() if stem_blocks[name].shape[0] == block_frames
            }
            mix_open = mix_block is not None and mix_block.shape[0] == block_frames
        return meter.result()
