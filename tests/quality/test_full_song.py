"""The meters on a real-length song: 3 minutes, 44.1 kHz stereo, synthesized here (no files).

Loudness within 0.1 LU of pyloudnorm (and 0.02 LU of its exact BS.1770 filter), the
reconstruction SNR within 0.05 dB of a float64 reference, silence flags as expected.
"""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest

from stemcat.tasks.analysis.meters import JobMeter
from stemcat.tasks.analysis.metrics import StreamShape

RATE = 44_100
SECONDS = 180.0
BLOCK = 65_536


def _stem(name: str, seed: int) -> np.ndarray:
    """A stem with sections of different loudness, so both gates matter; float32 (frames, 2)."""
    rng = np.random.default_rng(seed)
    frames = round(SECONDS * RATE)
    t = np.arange(frames, dtype=np.float64) / RATE
    if name == "silence":
        return np.zeros((frames, 2), dtype=np.float32)
    if name == "bass":
        tone = 0.4 * np.sin(2 * np.pi * 55.0 * t) + 0.1 * np.sin(2 * np.pi * 110.0 * t)
        signal = np.stack([tone, 0.9 * tone], axis=1)
    elif name == "drums":
        hits = (t % 0.5) < 0.05
        signal = 0.5 * rng.standard_normal((frames, 2)) * hits[:, None]
    else:
        vibrato = np.sin(2 * np.pi * (440.0 * t + 3.0 * np.sin(2 * np.pi * 5.0 * t)))
        signal = np.stack([0.2 * vibrato, 0.15 * vibrato], axis=1) + 0.02 * rng.standard_normal((frames, 2))
    envelope = np.where((t % 30.0) < 10.0, 0.05, 1.0)  # quiet verses, loud choruses
    return (signal * envelope[:, None]).astype(np.float32)


@pytest.fixture(scope="module")
def song() -> dict[str, np.ndarray]:
    stems = {name: _stem(name, seed) for seed, name in enumerate(("vocals", "bass", "drums", "silence"))}
    mix64 = sum(stem.astype(np.float64) for stem in stems.values())
    noise = np.random.default_rng(9).standard_normal(mix64.shape) * 10 ** (-30 / 20) * math.sqrt(np.mean(mix64**2))
    return {**stems, "mix": (mix64 + noise).astype(np.float32)}


def _measure(song: dict[str, np.ndarray]):
    names = [name for name in song if name != "mix"]
    meter = JobMeter({name: StreamShape(RATE, 2) for name in names}, StreamShape(RATE, 2))
    for start in range(0, song["mix"].shape[0], BLOCK):
        meter.update({name: song[name][start:start + BLOCK] for name in names}, song["mix"][start:start + BLOCK])
    return meter.result()


def test_loudness_matches_pyloudnorm_on_a_full_song(song: dict[str, np.ndarray]) -> None:
    metrics = _measure(song)
    for name in ("vocals", "bass", "drums", "mix"):
        ours = metrics.mix.lufs if name == "mix" else metrics.stems[name].lufs
        signal = song[name].astype(np.float64)
        assert ours == pytest.approx(pyloudnorm.Meter(RATE).integrated_loudness(signal), abs=0.1), name
        if name == "mix":  # the standard's exact filter, once (each pyloudnorm pass costs about a CPU-second)
            exact = pyloudnorm.Meter(RATE, filter_class="DeMan").integrated_loudness(signal)
            assert ours == pytest.approx(exact, abs=0.02)


def test_snr_levels_and_silence_on_a_full_song(song: dict[str, np.ndarray]) -> None:
    metrics = _measure(song)
    mix = song["mix"].astype(np.float64)
    stem_sum = sum(song[name].astype(np.float64) for name in song if name != "mix")
    reference = 10 * math.log10(float(np.sum(mix**2)) / float(np.sum((mix - stem_sum) ** 2)))
    assert metrics.reconstruction_snr_db == pytest.approx(reference, abs=0.05)
    assert metrics.reconstruction_snr_db == pytest.approx(30.0, abs=0.5)
    assert metrics.stems["silence"].silent and not any(metrics.stems[n].silent for n in ("vocals", "bass", "drums"))
    for name in ("vocals", "bass", "drums"):
        samples = song[name].astype(np.float64)
        assert metrics.stems[name].peak_dbfs == pytest.approx(20 * math.log10(np.abs(samples).max()), abs=1e-6)
        assert metrics.stems[name].rms_dbfs == pytest.approx(10 * math.log10(np.mean(samples**2)), abs=1e-4)
        assert metrics.stems[name].frames == samples.shape[0]
