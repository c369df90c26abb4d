"""Music-generation tasks the simulator pretends Suno produced: ids and metadata, deterministic from the seed."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Final

from stemcat.sim.synth import stable_int

AUDIOS_PER_MUSIC_TASK: Final[int] = 2
MODEL_NAME: Final[str] = "chirp-v3-5"

_GENRES: Final[tuple[str, ...]] = (
    "pop", "rock", "jazz", "electronic", "hip hop", "folk", "classical", "ambient", "funk", "r&b",
)  # fmt: skip
_MOODS: Final[tuple[str, ...]] = ("upbeat", "calm", "dreamy", "dark", "energetic", "melancholic", "warm", "groovy")
_ADJECTIVES: Final[tuple[str, ...]] = (
    "Neon", "Silent", "Golden", "Broken", "Endless", "Velvet", "Midnight", "Paper", "Electric", "Distant",
)  # fmt: skip
_NOUNS: Final[tuple[str, ...]] = (
    "Skyline", "River", "Echoes", "Garden", "Highway", "Dreams", "Harbor", "Lanterns", "Static", "Horizon",
)  # fmt: skip


@dataclass(frozen=True)
class MusicAudio:
    """One audio variation of a music task."""

    audio_id: str
    music_index: int


@dataclass(frozen=True)
class MusicTask:
    """A finished music-generation task with its variations."""

    task_id: str
    index: int
    title: str
    genre: str
    tags: str
    prompt: str
    created_epoch_ms: int
    audios: tuple[MusicAudio, ...]


def make_music_task(seed: int, index: int, created_epoch_ms: int) -> MusicTask:
    """The `index`-th music task of a simulator seeded with `seed` (same inputs, same task)."""
    rng = random.Random(stable_int(seed, "music", index))
    task_id = f"{rng.getrandbits(128):032x}"
    audios = tuple(
        MusicAudio(audio_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), music_index=i)
        for i in range(AUDIOS_PER_MUSIC_TASK)
    )
    genre = rng.choice(_GENRES)
    mood = rng.choice(_MOODS)
    title = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    return MusicTask(
        task_id=task_id,
        index=index,
        title=title,
        genre=genre,
        tags=f"{genre}, {mood}",
        prompt=f"[Verse] {title}: a {genre} song, {mood}",
        created_epoch_ms=created_epoch_ms,
        audios=audios,
    )
