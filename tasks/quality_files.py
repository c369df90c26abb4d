"""Measure a separation's files on disk: every stem and the mix decoded together, block by block.

The I/O half of ``tasks.quality``: files are opened once, read in lockstep blocks of
``block_frames`` and fed to a ``JobMeter``, so memory stays at a few blocks per file however
long the song is. Blocking (decoding and numpy); call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import soundfile as sf

from stemcat.tasks.quality import AudioFormat, JobMeter, JobMetrics, QualityThresholds

BLOCK_FRAMES = 65_536


class UnreadableAudio(Exception):
    """A file that should be analysed does not open or decode as audio; ``path`` says which."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path.name}: {problem}")
        self.path = path


def _open(stack: ExitStack, path: Path) -> sf.SoundFile:
    try:
        return stack.enter_context(sf.SoundFile(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise UnreadableAudio(path, f"does not open as audio ({error})") from error


def _read(audio: sf.SoundFile, path: Path, frames: int) -> np.ndarray:
    try:
        block: np.ndarray = audio.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise UnreadableAudio(path, f"does not decode ({error})") from error
    return block


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
            {name: AudioFormat(audio.samplerate, audio.channels) for name, audio in stems.items()},
            None if mix is None else AudioFormat(mix.samplerate, mix.channels),
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
