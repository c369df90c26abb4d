"""Read facts about a downloaded stem from the audio itself, streaming through it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

_BLOCK_FRAMES = 65_536


class UndecodableAudio(Exception):
    """A downloaded file that does not decode as audio."""


@dataclass(frozen=True)
class AudioFacts:
    frames: int
    sample_rate: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe(path: Path) -> AudioFacts:
    """Decode the whole file block by block (memory does not grow with its length)."""
    try:
        with sf.SoundFile(path) as audio:
            frames = 0
            for block in audio.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
                frames += block.shape[0]
            if frames == 0:
                raise UndecodableAudio(f"{path.name}: no audio frames")
            return AudioFacts(frames=frames, sample_rate=audio.samplerate, channels=audio.channels)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise UndecodableAudio(f"{path.name}: does not decode ({error})") from error


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
