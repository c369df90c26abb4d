"""Instrument voices of the synthetic songs: one generator per stem, from a song plan and a seeded RNG.

Pure numpy. Each generator returns a mono float64 signal of the plan's length; `synth` levels,
pans and sums them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from stemcat.sim.synth import SongPlan

Signal = npt.NDArray[np.float64]

# Formant centres (Hz) of a few vowels, for the voice-like timbre.
_VOWELS: Final[tuple[tuple[float, float, float], ...]] = (
    (800.0, 1150.0, 2900.0),
    (450.0, 800.0, 2830.0),
    (400.0, 1600.0, 2700.0),
    (350.0, 1900.0, 2600.0),
)


@dataclass(frozen=True)
class InstrumentContext:
    plan: SongPlan
    rng: np.random.Generator

    @property
    def sr(self) -> int:
        return self.plan.sample_rate

    @property
    def n(self) -> int:
        return self.plan.frames

    @property
    def beat_s(self) -> float:
        return 60.0 / self.plan.bpm

    def buffer(self) -> Signal:
        return np.zeros(self.n, dtype=np.float64)

    def chord_degree(self, time_s: float) -> int:
        bar = int(time_s / (4 * self.beat_s))
        return self.plan.progression[bar % len(self.plan.progression)]

    def scale_midi(self, degree: int, octave: int = 0) -> int:
        scale = self.plan.scale
        return self.plan.root_midi + 12 * (octave + degree // len(scale)) + scale[degree % len(scale)]

    def chord_midis(self, time_s: float, octave: int = 0) -> list[int]:
        degree = self.chord_degree(time_s)
        return [self.scale_midi(degree + step, octave) for step in (0, 2, 4)]

    def beat_times(self, subdivision: int = 1) -> Signal:
        step = self.beat_s / subdivision
        return np.arange(0.0, self.n / self.sr, step)


def _hz(midi: float) -> float:
    return float(440.0 * 2.0 ** ((midi - 69.0) / 12.0))


def _rolloff(f0: float, exponent: float) -> Callable[[Signal], Signal]:
    """Harmonic amplitudes falling as (f0 / f) ** exponent: brighter for small exponents."""

    def amps(hz: Signal) -> Signal:
        return np.asarray((f0 / hz) ** exponent, dtype=np.float64)

    return amps


def _envelope(length: int, sr: int, attack_s: float, release_s: float, decay_s: float | None = None) -> Signal:
    t = np.arange(length) / sr
    env = np.minimum(1.0, t / max(attack_s, 1e-4))
    if decay_s is not None:
        env = env * np.exp(-t / decay_s)
    release = max(1, min(length, int(release_s * sr)))
    env[-release:] *= np.linspace(1.0, 0.0, release)
    return env


def _add(buf: Signal, start_s: float, segment: Signal, sr: int) -> None:
    start = int(start_s * sr)
    if start >= buf.size:
        return
    end = min(buf.size, start + segment.size)
    buf[start:end] += segment[: end - start]


def _tone(
    freq: float,
    length: int,
    sr: int,
    harmonic_amps: Callable[[Signal], Signal],
    *,
    vibrato_hz: float = 0.0,
    vibrato_depth: float = 0.0,
    harmonic_decay: float = 0.0,
) -> Signal:
    """Additive tone: harmonics k with amplitude harmonic_amps(k * freq), optional vibrato and damping."""
    t = np.arange(length) / sr
    inst = freq * (1.0 + vibrato_depth * np.sin(2 * np.pi * vibrato_hz * t))
    phase = 2 * np.pi * np.cumsum(inst) / sr
    count = max(1, int((sr / 2 - 200) // (freq * (1 + vibrato_depth))))
    ks = np.arange(1, min(count, 24) + 1, dtype=np.float64)
    amps = harmonic_amps(ks * freq)
    audible = np.nonzero(np.abs(amps) >= 0.02 * np.max(np.abs(amps)))[0]
    last = int(audible[-1]) + 1 if audible.size else 1
    # sin(k*phase) by the Chebyshev recurrence: far cheaper than one np.sin per harmonic.
    twice_cos = 2.0 * np.cos(phase)
    previous, current = np.zeros(length), np.sin(phase)
    damping = np.exp(-t * harmonic_decay) if harmonic_decay else None
    weight = damping.copy() if damping is not None else None
    out = np.zeros(length)
    for index in range(last):
        if amps[index]:
            out += amps[index] * (current if weight is None else current * weight)
        previous, current = current, twice_cos * current - previous
        if weight is not None and damping is not None:
            weight *= damping
    return out


def _vocals(ctx: InstrumentContext, *, backing: bool = False) -> Signal:
    buf = ctx.buffer()
    step = ctx.beat_s * (2.0 if backing else float(ctx.rng.choice([0.5, 1.0])))
    for start in np.arange(0.0, ctx.n / ctx.sr, step):
        if not backing and ctx.rng.random() < 0.2:
            continue  # a breath between phrases
        formants = _VOWELS[2 if backing else int(ctx.rng.integers(len(_VOWELS)))]
        length = int(step * ctx.sr * (0.98 if backing else 0.9))
        midis = ctx.chord_midis(start, octave=1)[1:] if backing else [ctx.chord_midis(start, 2)[int(ctx.rng.integers(3))]]
        for midi in midis:
            freq = _hz(midi)

            def amps(hz: Signal, f0: float = freq, fm: tuple[float, float, float] = formants) -> Signal:
                shape = sum(np.exp(-(((hz - f) / 130.0) ** 2)) * w for f, w in zip(fm, (1.0, 0.6, 0.3)))
                return (0.15 + shape) * (f0 / hz) ** 0.5

            tone = _tone(freq, length, ctx.sr, amps, vibrato_hz=5.5, vibrato_depth=0.012)
            _add(buf, start, tone * _envelope(length, ctx.sr, 0.04, 0.08), ctx.sr)
    return buf


def _backing_vocals(ctx: InstrumentContext) -> Signal:
    return _vocals(ctx, backing=True)


def _drums(ctx: InstrumentContext) -> Signal:
    buf = ctx.buffer()
    sr = ctx.sr
    kick_len = int(0.25 * sr)
    t = np.arange(kick_len) / sr
    kick_freq = 50.0 + 110.0 * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(kick_freq) / sr) * np.exp(-t / 0.12)
    snare_len = int(0.18 * sr)
    ts = np.arange(snare_len) / sr
    hat_len = int(0.05 * sr)
    th = np.arange(hat_len) / sr
    for i, beat in enumerate(ctx.beat_times()):
        if i % 2 == 0:
            _add(buf, beat, kick, sr)
        else:
            noise = np.diff(ctx.rng.standard_normal(snare_len + 1)) * 0.25
            snare = (noise + np.sin(2 * np.pi * 185.0 * ts)) * np.exp(-ts / 0.05)
            _add(buf, beat, 0.7 * snare, sr)
    for hat_time in ctx.beat_times(2):
        hat = np.diff(ctx.rng.standard_normal(hat_len + 1)) * np.exp(-th / 0.012)
        _add(buf, hat_time, 0.08 * hat, sr)
    return buf


def _bass(ctx: InstrumentContext) -> Signal:
    buf = ctx.buffer()
    length = int(ctx.beat_s * ctx.sr * 0.95)
    for beat in ctx.beat_times():
        freq = _hz(ctx.chord_midis(beat, octave=-1)[0])
        tone = _tone(freq, length, ctx.sr, _rolloff(freq, 1.3), harmonic_decay=1.5)
        _add(buf, beat, tone * _envelope(length, ctx.sr, 0.01, 0.05, decay_s=0.6), ctx.sr)
    return buf


def _guitar(ctx: InstrumentContext) -> Signal:
    buf = ctx.buffer()
    length = int(2 * ctx.beat_s * ctx.sr)
    for start in ctx.beat_times()[::2]:
        for j, midi in enumerate(ctx.chord_midis(start, octave=1)):
            freq = _hz(midi)
            tone = _tone(freq, length, ctx.sr, _rolloff(freq, 1.2), harmonic_decay=1.2)
            _add(buf, start + 0.012 * j, tone * _envelope(length, ctx.sr, 0.003, 0.05, decay_s=0.5), ctx.sr)
    return buf


def _keyboard(ctx: InstrumentContext) -> Signal:
    buf = ctx.buffer()
    length = int(2 * ctx.beat_s * ctx.sr)
    for start in ctx.beat_times()[1::2]:
        for midi in ctx.chord_midis(start, octave=1):
            freq = _hz(midi)
            tone = _tone(freq, length, ctx.sr, _rolloff(freq, 2.0), harmonic_decay=0.8)
            _add(buf, start, tone * _envelope(length, ctx.sr, 0.005, 0.06, decay_s=0.9), ctx.sr)
    return buf


def _percussion(ctx: InstrumentContext) -> Signal:
    buf = ctx.buffer()
    sr = ctx.sr
    length = int(0.15 * sr)
    t = np.arange(length) / sr
    for hit in ctx.beat_times(4):
        if ctx.rng.random() < 0.45:
            freq = float(ctx.rng.choice([220.0, 290.0, 330.0]))
            conga = np.sin(2 * np.pi * freq * t) * np.exp(-t / 0.04)
            _add(buf, hit, conga, sr)
    return buf


def _strings(ctx: InstrumentContext) -> Signal:
    buf = ctx.buffer()
    bar = 4 * ctx.beat_s
    length = int(bar * ctx.sr)
    for start in np.arange(0.0, ctx.n / ctx.sr, bar):
        for midi in ctx.chord_midis(start, octave=1):
            for detune in (-0.004, 0.004):
                freq = _hz(midi) * (1 + detune)
                tone = _tone(freq, length, ctx.sr, _rolloff(freq, 1.4), vibrato_hz=5.0, vibrato_depth=0.004)
                _add(buf, start, tone * _envelope(length, ctx.sr, 0.3, 0.3), ctx.sr)
    return buf


def _synth(ctx: InstrumentContext) -> Signal:
    buf = ctx.buffer()
    length = int(ctx.beat_s / 4 * ctx.sr)
    for i, start in enumerate(ctx.beat_times(4)):
        chord = ctx.chord_midis(start, octave=2)
        freq = _hz(chord[i % 3])

        def odd(hz: Signal, f0: float = freq) -> Signal:
            k = np.round(hz / f0)
            return np.where(k % 2 == 1, 1.0 / k, 0.0)

        tone = _tone(freq, length, ctx.sr, odd)
        _add(buf, start, tone * _envelope(length, ctx.sr, 0.005, 0.03, decay_s=0.12), ctx.sr)
    return buf


def _fx(ctx: InstrumentContext) -> Signal:
    buf = ctx.buffer()
    sr = ctx.sr
    sweep_s = min(1.5, ctx.n / sr)
    length = int(sweep_s * sr)
    t = np.arange(length) / sr
    for start in np.arange(float(ctx.rng.uniform(0.0, 1.0)), ctx.n / sr, 3.0):
        rising = ctx.rng.random() < 0.5
        low, high = 250.0, 2200.0
        freq = low * (high / low) ** (t / sweep_s if rising else 1 - t / sweep_s)
        phase = 2 * np.pi * np.cumsum(freq) / sr
        amp = (t / sweep_s) if rising else (1 - t / sweep_s)
        sweep = (np.sin(phase) + 0.3 * np.sin(2 * phase)) * amp
        _add(buf, start, sweep * _envelope(length, sr, 0.01, 0.05), sr)
    return buf


def _brass(ctx: InstrumentContext) -> Signal:
    buf = ctx.buffer()
    length = int(0.6 * ctx.beat_s * ctx.sr)
    t = np.arange(length) / ctx.sr
    for start in ctx.beat_times()[1::2]:
        for midi in ctx.chord_midis(start, octave=1):
            freq = _hz(midi)
            tone = _tone(freq, length, ctx.sr, _rolloff(freq, 0.9), harmonic_decay=2.0)
            brightness = 1 - np.exp(-t / 0.03)
            _add(buf, start, tone * brightness * _envelope(length, ctx.sr, 0.02, 0.05), ctx.sr)
    return buf


def _woodwinds(ctx: InstrumentContext) -> Signal:
    buf = ctx.buffer()
    length = int(ctx.beat_s * ctx.sr)
    weights = {1: 1.0, 2: 0.3, 3: 0.12}
    for start in ctx.beat_times():
        if ctx.rng.random() < 0.3:
            continue
        freq = _hz(ctx.scale_midi(int(ctx.rng.integers(0, 8)), octave=2))

        def flute(hz: Signal, f0: float = freq) -> Signal:
            k = np.round(hz / f0).astype(int)
            return np.array([weights.get(int(x), 0.0) for x in k])

        tone = _tone(freq, length, ctx.sr, flute, vibrato_hz=4.5, vibrato_depth=0.006)
        _add(buf, start, tone * _envelope(length, ctx.sr, 0.05, 0.08), ctx.sr)
    return buf


GENERATORS: Final[dict[str, Callable[[InstrumentContext], Signal]]] = {
    "vocals": _vocals,
    "backing_vocals": _backing_vocals,
    "drums": _drums,
    "bass": _bass,
    "guitar": _guitar,
    "keyboard": _keyboard,
    "percussion": _percussion,
    "strings": _strings,
    "synth": _synth,
    "fx": _fx,
    "brass": _brass,
    "woodwinds": _woodwinds,
}
