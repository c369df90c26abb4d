"""Where served audio comes from: per-track synthetic songs, or a few cached full-length realistic songs.

A source names the cache folder a track's files live in and writes one file there; the Renderer
(threads, queue, deduplication) is the same for both. Synthetic songs get one folder per audio id;
realistic songs one folder per song, shared by every track that maps to it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final, Generic, Protocol, TypeVar

import numpy as np
import soundfile as sf

from stemcat.sim.config import RealisticSongs, SimConfig
from stemcat.sim.diskcache import copy_once, write_once
from stemcat.sim.songs import (
    CHANNELS,
    REALISTIC_VERSION,
    SAMPLE_RATE,
    RealisticSong,
    realistic_plan,
    render_realistic,
    song_index,
    song_name,
)
from stemcat.sim.stems import INSTRUMENT_STEMS
from stemcat.sim.synth import SYNTH_VERSION, AudioArray, SongAudio, SongPlan, plan_song, render_song

_SONGS_KEPT_IN_MEMORY: Final[int] = 6
_SILENCE_BLOCK_S: Final[float] = 10.0
# Every file a realistic song can be asked for: once all exist, its synthesized parts can go.
REALISTIC_FILES: Final[tuple[str, ...]] = (*INSTRUMENT_STEMS, "instrumental", "mix")

K = TypeVar("K")
V = TypeVar("V")


class SongSource(Protocol):
    """Maps audio ids to cache folders and writes files into them."""

    directory: Path  # cache_root / a fingerprint of everything that shapes the audio

    def plan(self, audio_id: str) -> SongPlan: ...

    def folder(self, audio_id: str) -> str: ...

    def render(self, folder: str, name: str, path: Path) -> None:
        """Make `path` (the file `name` of `folder`) unless it is on disk; atomic, once per cache."""
        ...


def make_source(config: SimConfig, cache_root: Path) -> SongSource:
    if config.songs == "realistic":
        return RealisticSource(config.realistic, cache_root)
    return SyntheticSource(config, cache_root)


def synthetic_fingerprint(config: SimConfig) -> str:
    """Directory name that changes whenever rendered synthetic audio would differ."""
    parts = (
        SYNTH_VERSION,
        config.seed,
        config.sample_rate,
        config.channels,
        config.min_duration_s,
        config.max_duration_s,
        config.mp3_compression_level,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def realistic_fingerprint(spec: RealisticSongs) -> str:
    """Directory name of a realistic song set; `count` is left out, as song i is the same in any set."""
    parts = ("realistic", REALISTIC_VERSION, SYNTH_VERSION, SAMPLE_RATE, CHANNELS, spec.duration_s, spec.bitrate_kbps)
    return "realistic-" + hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class SyntheticSource:
    """Short songs synthesized per audio id from the simulator's seed (the default)."""

    def __init__(self, config: SimConfig, cache_root: Path) -> None:
        self._config = config
        self.directory = cache_root / synthetic_fingerprint(config)
        self._lock = threading.Lock()
        self._plans: dict[str, SongPlan] = {}
        self._songs: _Memo[str, SongAudio] = _Memo(_SONGS_KEPT_IN_MEMORY)

    def plan(self, audio_id: str) -> SongPlan:
        with self._lock:
            plan = self._plans.get(audio_id)
        if plan is None:
            cfg = self._config
            plan = plan_song(
                cfg.seed,
                audio_id,
                sample_rate=cfg.sample_rate,
                channels=cfg.channels,
                min_duration_s=cfg.min_duration_s,
                max_duration_s=cfg.max_duration_s,
            )
            with self._lock:
                self._plans[audio_id] = plan
        return plan

    def folder(self, audio_id: str) -> str:
        return audio_id

    def render(self, folder: str, name: str, path: Path) -> None:
        def encode(partial: Path) -> None:
            song = self._songs.get(folder, lambda: render_song(self._config.seed, self.plan(folder)))
            sf.write(
                partial,
                song.file_signal(name),
                self._config.sample_rate,
                format="MP3",
                subtype="MPEG_LAYER_III",
                compression_level=self._config.mp3_compression_level,
            )

        write_once(path, encode)


class RealisticSource:
    """A few full-length 44.1 kHz stereo songs; each track plays the one its audio id hashes to."""

    def __init__(self, spec: RealisticSongs, cache_root: Path) -> None:
        self._spec = spec
        self.directory = cache_root / realistic_fingerprint(spec)
        self._plans = [realistic_plan(spec, index) for index in range(spec.count)]
        self._index = {song_name(index): index for index in range(spec.count)}
        self._songs: _Memo[int, RealisticSong] = _Memo(spec.count)

    def plan(self, audio_id: str) -> SongPlan:
        return self._plans[song_index(audio_id, self._spec.count)]

    def folder(self, audio_id: str) -> str:
        return song_name(song_index(audio_id, self._spec.count))

    def render(self, folder: str, name: str, path: Path) -> None:
        index = self._index[folder]
        plan = self._plans[index]
        if name in plan.silent_stems:
            # Silent stems of one duration are byte-identical: encode silence once per set, copy it.
            silence = self.directory / "silence.mp3"
            write_once(silence, lambda partial: self._encode(partial, _silence(plan.frames)))
            copy_once(silence, path)
        else:

            def encode(partial: Path) -> None:
                song = self._songs.get(index, lambda: render_realistic(self._spec, index))
                self._encode(partial, song.blocks(name))

            write_once(path, encode)
        if all((path.parent / f"{other}.mp3").exists() for other in REALISTIC_FILES):
            self._songs.drop(index)  # every file is on disk: the parts are no longer needed

    def _encode(self, partial: Path, blocks: Iterable[AudioArray]) -> None:
        encode_cbr_mp3(partial, blocks, sample_rate=SAMPLE_RATE, channels=CHANNELS, kbps=self._spec.bitrate_kbps)


def encode_cbr_mp3(path: Path, blocks: Iterable[AudioArray], *, sample_rate: int, channels: int, kbps: int) -> None:
    """Stream blocks into a constant-bitrate MP3 (memory stays at one block, not the whole song)."""
    # libsndfile maps the level linearly onto 320..32 kbps for MPEG-1; LAME snaps to the nearest legal rate.
    level = (320 - kbps) / 288
    with sf.SoundFile(
        path,
        "w",
        samplerate=sample_rate,
        channels=channels,
        format="MP3",
        subtype="MPEG_LAYER_III",
        compression_level=level,
        bitrate_mode="CONSTANT",
    ) as out:
        for block in blocks:
            out.write(block)


def _silence(frames: int) -> Iterator[AudioArray]:
    step = round(_SILENCE_BLOCK_S * SAMPLE_RATE)
    for start in range(0, frames, step):
        yield np.zeros((min(step, frames - start), CHANNELS), dtype=np.float32)


class _Memo(Generic[K, V]):
    """A small LRU of expensive values, built once per key even when threads ask together."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._values: OrderedDict[K, V] = OrderedDict()
        self._key_locks: dict[K, threading.Lock] = {}

    def get(self, key: K, build: Callable[[], V]) -> V:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                value = self._values.get(key)
                if value is not None:
                    self._values.move_to_end(key)
                    return value
            value = build()
            with self._lock:
                self._values[key] = value
                while len(self._values) > self._capacity:
                    self._values.popitem(last=False)
            return value

    def drop(self, key: K) -> None:
        with self._lock:
            self._values.pop(key, None)
