"""Deterministic song synthesis: a song plan and its instrument signals, from (seed, audio id).

Pure numpy, no I/O. The mix is the exact sum of the instrument stems, all scaled by one
factor so that neither the mix nor any stem clips.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from stemcat.sim.instruments import GENERATORS, InstrumentContext, Signal
from stemcat.sim.stems import INSTRUMENT_STEMS

AudioArray = npt.NDArray[np.float32]

SYNTH_VERSION: Final[str] = "1"
PEAK_TARGET: Final[float] = 0.89

# Probability that a song has each instrument (vocals in most songs).
_PRESENCE: Final[dict[str, float]] = {
    "vocals": 0.85,
    "backing_vocals": 0.45,
    "drums": 0.8,
    "bass": 0.8,
    "guitar": 0.5,
    "keyboard": 0.5,
    "percussion": 0.35,
    "strings": 0.4,
    "synth": 0.4,
    "fx": 0.25,
    "brass": 0.25,
    "woodwinds": 0.25,
}
# RMS level of each instrument before the common scale (relative, linear).
_LEVEL: Final[dict[str, float]] = {
    "vocals": 0.20,
    "backing_vocals": 0.07,
    "drums": 0.16,
    "bass": 0.14,
    "guitar": 0.09,
    "keyboard": 0.09,
    "percussion": 0.05,
    "strings": 0.08,
    "synth": 0.07,
    "fx": 0.05,
    "brass": 0.08,
    "woodwinds": 0.07,
}
_MAJOR: Final[tuple[int, ...]] = (0, 2, 4, 5, 7, 9, 11)
_MINOR: Final[tuple[int, ...]] = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS: Final[tuple[tuple[int, ...], ...]] = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3))


@dataclass(frozen=True)
class SongPlan:
    """What a song is made of; cheap to compute, enough to know the truth without rendering."""

    audio_id: str
    sample_rate: int
    channels: int
    frames: int
    bpm: float
    root_midi: int
    scale: tuple[int, ...]
    progression: tuple[int, ...]
    instruments: tuple[str, ...]
    pans: tuple[float, ...]  # per instrument, 0 = left, 0.5 = centre, 1 = right

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    @property
    def silent_stems(self) -> tuple[str, ...]:
        return tuple(stem for stem in INSTRUMENT_STEMS if stem not in self.instruments)


@dataclass(frozen=True)
class SongAudio:
    """Rendered stems (all 12, silent where absent), the instrumental and the mix, float32."""

    plan: SongPlan
    stems: dict[str, AudioArray]
    instrumental: AudioArray
    mix: AudioArray
    scale: float

    def file_signal(self, name: str) -> AudioArray:
        """Signal for a file name: a stem, `instrumental` or `mix`."""
        if name == "mix":
            return self.mix
        if name == "instrumental":
            return self.instrumental
        return self.stems[name]


def stable_int(*parts: object) -> int:
    """A 64-bit integer derived from the parts, stable across processes (unlike hash())."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def plan_song(
    seed: int, audio_id: str, *, sample_rate: int, channels: int, min_duration_s: float, max_duration_s: float
) -> SongPlan:
    """Choose duration, key, tempo and instruments of one audio variation."""
    rng = np.random.default_rng(stable_int(SYNTH_VERSION, seed, audio_id, "plan"))
    duration_s = float(rng.uniform(min_duration_s, max_duration_s))
    frames = max(1, round(duration_s * sample_rate))
    present = [stem for stem in INSTRUMENT_STEMS if rng.random() < _PRESENCE[stem]]
    if "vocals" not in present and "backing_vocals" in present:
        present.remove("backing_vocals")
    accompaniment = [stem for stem in present if stem not in ("vocals", "backing_vocals")]
    if len(accompaniment) < 2:
        # Every song keeps a non-vocal part so that `instrumental` is never silent.
        candidates = [s for s in ("drums", "bass", "keyboard", "guitar") if s not in present]
        for stem in rng.permutation(candidates)[: 2 - len(accompaniment)]:
            present.append(str(stem))
    instruments = tuple(stem for stem in INSTRUMENT_STEMS if stem in present)
    pans = tuple(
        0.5 if stem in ("vocals", "bass", "drums") else float(rng.uniform(0.2, 0.8)) for stem in instruments
    )
    return SongPlan(
        audio_id=audio_id,
        sample_rate=sample_rate,
        channels=channels,
        frames=frames,
        bpm=float(rng.uniform(80.0, 140.0)),
        root_midi=int(rng.integers(40, 52)),
        scale=_MAJOR if rng.random() < 0.6 else _MINOR,
        progression=_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))],
        instruments=instruments,
        pans=pans,
    )


def render_song(seed: int, plan: SongPlan) -> SongAudio:
    """Synthesize every instrument of the plan and the mix that is their sum."""
    raw: dict[str, Signal] = {}
    for stem in plan.instruments:
        rng = np.random.default_rng(stable_int(SYNTH_VERSION, seed, plan.audio_id, stem))
        signal = GENERATORS[stem](InstrumentContext(plan, rng))
        rms = float(np.sqrt(np.mean(signal**2))) or 1.0
        raw[stem] = signal * (_LEVEL[stem] / rms)
    spatial = {stem: _spatialise(raw[stem], pan, plan.channels) for stem, pan in zip(plan.instruments, plan.pans)}
    silence = np.zeros(_shape(plan), dtype=np.float64)
    mix = sum(spatial.values(), start=silence.copy())
    peak = max([float(np.max(np.abs(mix)))] + [float(np.max(np.abs(s))) for s in spatial.values()])
    scale = PEAK_TARGET / peak if peak > 0 else 1.0
    stems = {stem: (spatial.get(stem, silence) * scale).astype(np.float32) for stem in INSTRUMENT_STEMS}
    instrumental = sum((spatial[s] for s in plan.instruments if s != "vocals"), start=silence.copy()) * scale
    return SongAudio(
        plan=plan,
        stems=stems,
        instrumental=instrumental.astype(np.float32),
        mix=(mix * scale).astype(np.float32),
        scale=scale,
    )


def _shape(plan: SongPlan) -> tuple[int, ...]:
    return (plan.frames,) if plan.channels == 1 else (plan.frames, plan.channels)


def _spatialise(signal: Signal, pan: float, channels: int) -> Signal:
    if channels == 1:
        return signal
    angle = pan * np.pi / 2
    return np.stack([signal * np.cos(angle), signal * np.sin(angle)], axis=1)
