"""Full-length "realistic" songs: a fixed little set of arranged songs built from the synth's instruments.

Pure numpy, no I/O. A song is two synthesized parts (verse material A, chorus material B) laid out
as intro, verse, chorus, ... outro; sections mute some instruments, as real arrangements do, so a
stem can be quiet for a while and still count as present. Every file (stem, instrumental, mix) is
produced section by section from the same scaled parts, so the mix is the exact sum of the stems
before encoding. The songs depend only on `RealisticSongs` and the song index, never on a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np

from stemcat.sim.config import RealisticSongs
from stemcat.sim.stems import INSTRUMENT_STEMS
from stemcat.sim.synth import PEAK_TARGET, SYNTH_VERSION, AudioArray, SongPlan, render_song, stable_int

REALISTIC_VERSION: Final[str] = "1"
SAMPLE_RATE: Final[int] = 44100
CHANNELS: Final[int] = 2
_EDGE_FADE_S: Final[float] = 0.01  # parts are cut mid-note at section edges: fade to avoid clicks
_MAJOR: Final[tuple[int, ...]] = (0, 2, 4, 5, 7, 9, 11)
_MINOR: Final[tuple[int, ...]] = (0, 2, 3, 5, 7, 8, 10)


@dataclass(frozen=True)
class _Template:
    style: str
    bpm: float
    root_midi: int
    minor: bool
    instruments: tuple[str, ...]


# Chosen, not drawn: together the set covers all 12 stems, and each song lacks some (as real songs do).
_TEMPLATES: Final[tuple[_Template, ...]] = (
    _Template("pop", 104.0, 45, False,
              ("vocals", "backing_vocals", "drums", "bass", "guitar", "keyboard", "percussion", "synth", "fx")),
    _Template("ballad", 76.0, 43, True,
              ("vocals", "backing_vocals", "bass", "keyboard", "percussion", "strings", "brass", "woodwinds")),
    _Template("rock", 132.0, 40, True, ("vocals", "drums", "bass", "guitar", "fx")),
    _Template("electronic", 124.0, 48, True, ("drums", "bass", "keyboard", "percussion", "synth", "fx")),
)  # fmt: skip
_PANS: Final[dict[str, float]] = {
    "vocals": 0.5, "backing_vocals": 0.35, "drums": 0.5, "bass": 0.5, "guitar": 0.3, "keyboard": 0.65,
    "percussion": 0.75, "strings": 0.4, "synth": 0.6, "fx": 0.55, "brass": 0.7, "woodwinds": 0.25,
}  # fmt: skip
# (section, part) in song order; each section lasts duration / len(_ARRANGEMENT).
_ARRANGEMENT: Final[tuple[tuple[str, str], ...]] = (
    ("intro", "A"), ("verse", "A"), ("chorus", "B"), ("verse", "A"),
    ("chorus", "B"), ("bridge", "A"), ("chorus", "B"), ("outro", "B"),
)  # fmt: skip
_MUTED: Final[dict[str, frozenset[str]]] = {
    "intro": frozenset({"vocals", "backing_vocals", "drums", "percussion", "brass"}),
    "verse": frozenset({"backing_vocals", "brass"}),
    "chorus": frozenset(),
    "bridge": frozenset({"drums", "bass", "percussion"}),
    "outro": frozenset({"vocals"}),
}
_PROGRESSIONS: Final[dict[str, tuple[int, ...]]] = {"A": (0, 5, 3, 4), "B": (3, 4, 0, 0)}


def song_template_count() -> int:
    return len(_TEMPLATES)


def song_index(audio_id: str, count: int) -> int:
    """Which song of a set of `count` an audio variation plays (stable across processes)."""
    return stable_int("realistic-track", audio_id) % count


def song_name(index: int) -> str:
    """The song's folder name in the cache, e.g. `song-2-rock`."""
    return f"song-{index}-{_template(index).style}"


def realistic_plan(spec: RealisticSongs, index: int) -> SongPlan:
    """The plan of song `index` (instruments, frames, rate): what the simulator's truth reports."""
    template = _template(index)
    return SongPlan(
        audio_id=song_name(index),
        sample_rate=SAMPLE_RATE,
        channels=CHANNELS,
        frames=round(spec.duration_s * SAMPLE_RATE),
        bpm=template.bpm,
        root_midi=template.root_midi,
        scale=_MINOR if template.minor else _MAJOR,
        progression=_PROGRESSIONS["A"],
        instruments=tuple(stem for stem in INSTRUMENT_STEMS if stem in template.instruments),
        pans=tuple(_PANS[stem] for stem in INSTRUMENT_STEMS if stem in template.instruments),
    )


@dataclass(frozen=True)
class RealisticSong:
    """The scaled parts of one song and its section layout; files are generated section by section."""

    plan: SongPlan
    parts: dict[str, dict[str, AudioArray]]  # part -> present stem -> stereo float32, already scaled
    bounds: tuple[int, ...]  # frame where each section starts, then the total frame count

    def blocks(self, name: str) -> Iterator[AudioArray]:
        """The file `name` (a stem, `instrumental` or `mix`) as consecutive section blocks."""
        for number, (section, part) in enumerate(_ARRANGEMENT):
            length = self.bounds[number + 1] - self.bounds[number]
            wanted = _members(name, self.plan.instruments)
            active = [stem for stem in wanted if stem not in _MUTED[section]]
            block = np.zeros((length, CHANNELS), dtype=np.float32)
            for stem in active:
                block += self.parts[part][stem][:length]
            if active:
                block *= _section_gain(length, last=number == len(_ARRANGEMENT) - 1)[:, None]
            yield block


def render_realistic(spec: RealisticSongs, index: int) -> RealisticSong:
    """Synthesize both parts of song `index` and scale them so that no file of the song clips."""
    plan = realistic_plan(spec, index)
    sections = len(_ARRANGEMENT)
    bounds = tuple(round(i * plan.frames / sections) for i in range(sections + 1))
    part_frames = max(b - a for a, b in zip(bounds, bounds[1:]))
    # Whole bars per section, so each section starts on the downbeat of its part.
    section_s = part_frames / SAMPLE_RATE
    bars = max(1, round(section_s * plan.bpm / 240.0))
    bpm = 240.0 * bars / section_s
    parts: dict[str, dict[str, AudioArray]] = {}
    for part, progression in _PROGRESSIONS.items():
        part_plan = SongPlan(
            audio_id=f"{plan.audio_id}-{part}",
            sample_rate=SAMPLE_RATE,
            channels=CHANNELS,
            frames=part_frames,
            bpm=bpm,
            root_midi=plan.root_midi,
            scale=plan.scale,
            progression=progression,
            instruments=plan.instruments,
            pans=plan.pans,
        )
        audio = render_song(stable_int(SYNTH_VERSION, REALISTIC_VERSION), part_plan)
        # render_song scales each part alone; undo that so one scale serves the whole song.
        parts[part] = {stem: audio.stems[stem] / np.float32(audio.scale) for stem in plan.instruments}
    scale = np.float32(PEAK_TARGET / _peak(parts, plan.instruments))
    for stems in parts.values():
        for signal in stems.values():
            signal *= scale
    return RealisticSong(plan=plan, parts=parts, bounds=bounds)


def _template(index: int) -> _Template:
    return _TEMPLATES[index % len(_TEMPLATES)]


def _members(name: str, instruments: tuple[str, ...]) -> tuple[str, ...]:
    if name == "mix":
        return instruments
    if name == "instrumental":
        return tuple(stem for stem in instruments if stem != "vocals")
    return (name,) if name in instruments else ()


def _peak(parts: dict[str, dict[str, AudioArray]], instruments: tuple[str, ...]) -> float:
    """Largest sample of any stem or any section's mix (a muted instrument can unmask a peak)."""
    peak = max(float(np.max(np.abs(signal))) for stems in parts.values() for signal in stems.values())
    for section, part in set(_ARRANGEMENT):
        active = [stem for stem in instruments if stem not in _MUTED[section]]
        if active:
            mix = np.zeros_like(parts[part][active[0]])
            for stem in active:
                mix += parts[part][stem]
            peak = max(peak, float(np.max(np.abs(mix))))
    return peak or 1.0


def _section_gain(length: int, *, last: bool) -> AudioArray:
    """Short fades at both edges; the outro fades out over its whole length."""
    gain = np.ones(length, dtype=np.float32)
    edge = min(length // 2, round(_EDGE_FADE_S * SAMPLE_RATE))
    if edge:
        ramp = np.linspace(0.0, 1.0, edge, dtype=np.float32)
        gain[:edge] = ramp
        gain[-edge:] = ramp[::-1]
    if last:
        gain *= np.linspace(1.0, 0.0, length, dtype=np.float32)
    return gain
