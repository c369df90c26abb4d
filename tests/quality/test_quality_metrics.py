"""The pure meters against signals whose answers are known, and against pyloudnorm."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest

from stemcat.tasks.analysis.loudness import integrated_loudness, k_weighting
from stemcat.tasks.analysis.meters import JobMeter, ReconstructionMeter, measure_stem, snr_problem
from stemcat.tasks.analysis.metrics import (
    DBFS_FLOOR,
    LUFS_FLOOR,
    SNR_CEILING_DB,
    QualityThresholds,
    StreamShape,
)

RATE = 48_000


def _sine(freq: float, seconds: float, rate: int = RATE, amplitude: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def _music_like(rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """Tones and noise whose level changes over time, so both loudness gates matter."""
    rng = np.random.default_rng(seed)
    frames = round(seconds * rate)
    t = np.arange(frames) / rate
    envelope = np.where((t % 2.0) < 0.5, 0.02, 1.0)[:, None]
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 2000) * t)[:, None]
    noise = 0.1 * rng.standard_normal((frames, channels))
    return envelope * (tone + noise)


def _split(signal: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, signal.shape[0]), size=40, replace=False))
    return np.split(signal, cuts)


def test_full_scale_sine_has_peak_0_and_rms_minus_3_01_dbfs() -> None:
    metrics = measure_stem([_sine(1000.0, 1.0)], RATE, 1)
    assert metrics.peak_dbfs == pytest.approx(0.0, abs=1e-9)
    assert metrics.rms_dbfs == pytest.approx(-3.0103, abs=1e-3)
    assert metrics.frames == RATE and metrics.duration_s == pytest.approx(1.0)
    assert not metrics.silent


def test_half_scale_stereo_sine_levels_and_997_hz_loudness() -> None:
    left = _sine(997.0, 2.0, amplitude=0.5)
    metrics = measure_stem([np.stack([left, left], axis=1)], RATE, 2)
    assert metrics.peak_dbfs == pytest.approx(-6.0206, abs=1e-3)
    assert metrics.rms_dbfs == pytest.approx(-9.0309, abs=1e-3)
    # BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LUFS; both channels add 3 dB; -6 dB amplitude.
    assert metrics.lufs == pytest.approx(-3.01 + 3.01 - 6.02, abs=0.02)


def test_k_weighting_reproduces_the_standards_48_khz_coefficients() -> None:
    (shelf_b, shelf_a), (high_b, high_a) = k_weighting(48_000)
    np.testing.assert_allclose(shelf_b, [1.53512485958697, -2.69169618940638, 1.19839281085285], rtol=1e-12)
    np.testing.assert_allclose(shelf_a, [1.0, -1.69065929318241, 0.73248077421585], rtol=1e-12)
    np.testing.assert_allclose(high_b, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(high_a, [1.0, -1.99004745483398, 0.99007225036621], rtol=1e-12)


@pytest.mark.parametrize(("rate", "channels", "seed"), [(48_000, 2, 1), (44_100, 2, 2), (44_100, 1, 3), (16_000, 1, 4)])
def test_loudness_matches_pyloudnorm(rate: int, channels: int, seed: int) -> None:
    signal = _music_like(rate, 6.0, channels, seed)
    ours = integrated_loudness(signal, rate)
    assert ours is not None
    # pyloudnorm's "DeMan" filter is the standard's exact K-weighting at any rate.
    exact = pyloudnorm.Meter(rate, filter_class="DeMan").integrated_loudness(signal)
    assert ours == pytest.approx(exact, abs=0.01)
    if rate >= 44_100:
        # Its default filter approximates K-weighting; the two agree at the usual music rates.
        assert ours == pytest.approx(pyloudnorm.Meter(rate).integrated_loudness(signal), abs=0.1)


def test_relative_gate_ignores_quiet_passages() -> None:
    loud = _sine(997.0, 20.0, amplitude=0.5)
    quiet = _sine(997.0, 20.0, amplitude=0.005)
    both = integrated_loudness(np.concatenate([loud, quiet]), RATE)
    alone = integrated_loudness(loud, RATE)
    assert both is not None and alone is not None
    # Ungated, the -40 dB half would pull the result down by 3 dB; gated, only the blocks that
    # straddle the change count, and they are 3 of 200.
    assert both == pytest.approx(alone, abs=0.05)


def test_streaming_equals_whole_array() -> None:
    signal = _music_like(44_100, 5.0, 2, seed=9)
    signal[1000:1200] = 1.0  # some clipped samples
    whole = measure_stem([signal], 44_100, 2)
    streamed = measure_stem(_split(signal, seed=5), 44_100, 2)
    assert streamed.frames == whole.frames
    assert streamed.peak_dbfs == pytest.approx(whole.peak_dbfs, abs=1e-12)
    assert streamed.rms_dbfs == pytest.approx(whole.rms_dbfs, abs=1e-9)
    assert streamed.lufs == pytest.approx(whole.lufs, abs=1e-9)
    assert streamed.clipped_fraction == whole.clipped_fraction == pytest.approx(400 / signal.size)


def test_digital_silence_is_floored_and_flagged() -> None:
    metrics = measure_stem([np.zeros((RATE * 2, 2))], RATE, 2)
    assert metrics.silent
    assert metrics.peak_dbfs == metrics.rms_dbfs == DBFS_FLOOR
    assert metrics.lufs == LUFS_FLOOR
    assert metrics.clipped_fraction == 0.0


def test_silence_threshold_is_configurable() -> None:
    faint = _sine(440.0, 1.0, amplitude=10 ** (-65 / 20))  # peak -65 dBFS
    assert measure_stem([faint], RATE, 1).silent
    assert not measure_stem([faint], RATE, 1, QualityThresholds(silent_threshold_dbfs=-70.0)).silent
    hiss = _sine(440.0, 1.0, amplitude=10 ** (-50 / 20))
    assert not measure_stem([hiss], RATE, 1).silent


def test_too_short_for_a_gating_block_has_no_loudness() -> None:
    assert measure_stem([_sine(440.0, 0.3)], RATE, 1).lufs is None


@pytest.mark.parametrize(
    "kwargs", [{"silent_threshold_dbfs": 3.0}, {"clip_level": 0.0}, {"clip_level": 1.5}, {"min_snr_db": math.nan}]
)
def test_thresholds_reject_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        QualityThresholds(**kwargs)


def _job(stems: dict[str, np.ndarray], mix: np.ndarray | None, block: int = 7_000) -> JobMeter:
    meter = JobMeter(
        {name: StreamShape(RATE, signal.shape[1]) for name, signal in stems.items()},
        None if mix is None else StreamShape(RATE, mix.shape[1]),
    )
    longest = max([s.shape[0] for s in stems.values()] + [0 if mix is None else mix.shape[0]])
    for start in range(0, longest, block):
        meter.update({name: s[start:start + block] for name, s in stems.items()},
                     None if mix is None else mix[start:start + block])
    return meter


def _stems(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: 0.2 * rng.standard_normal((RATE * 2, 2)) for name in ("vocals", "drums", "bass")}


def test_perfect_reconstruction_hits_the_ceiling_and_a_missing_stem_is_low() -> None:
    stems = _stems(1)
    mix = sum(stems.values())
    perfect = _job(stems, mix).result()
    assert perfect.reconstruction_snr_db == SNR_CEILING_DB
    assert perfect.low_snr(12.0) is False
    missing = _job({k: v for k, v in stems.items() if k != "drums"}, mix).result()
    # The residual is the drums: a third of the mix energy, so about 10·log10(3) = 4.8 dB.
    assert missing.reconstruction_snr_db == pytest.approx(10 * math.log10(3), abs=0.3)
    assert missing.low_snr(12.0) is True


def test_snr_of_known_noise_and_streaming_equals_whole() -> None:
    stems = _stems(2)
    mix = sum(stems.values())
    noise = np.random.default_rng(3).standard_normal(mix.shape) * math.sqrt(np.mean(mix**2)) * 10 ** (-25 / 20)
    noisy = {**stems, "vocals": stems["vocals"] + noise}
    whole = _job(noisy, mix, block=mix.shape[0]).result()
    streamed = _job(noisy, mix, block=1_234).result()
    assert whole.reconstruction_snr_db == pytest.approx(25.0, abs=0.2)
    assert streamed.reconstruction_snr_db == pytest.approx(whole.reconstruction_snr_db, abs=1e-9)


def test_length_differences_count_as_error_and_are_reported() -> None:
    stems = _stems(4)
    mix = sum(stems.values())
    short = {**stems, "bass": stems["bass"][: RATE]}  # bass stops 1 s early
    metrics = _job(short, mix).result()
    assert metrics.duration_diff_s("bass") == pytest.approx(-1.0)
    assert metrics.duration_diff_s("vocals") == pytest.approx(0.0)
    assert metrics.reconstruction_snr_db is not None and metrics.reconstruction_snr_db < 10.0
    assert metrics.mix is not None and metrics.mix.frames == mix.shape[0]


def test_mono_stems_add_into_a_stereo_mix() -> None:
    rng = np.random.default_rng(6)
    vocals = 0.2 * rng.standard_normal((RATE, 1))
    drums = 0.2 * rng.standard_normal((RATE, 2))
    mix = vocals + drums
    metrics = _job({"vocals": vocals, "drums": drums}, mix).result()
    assert metrics.reconstruction_snr_db == SNR_CEILING_DB


def test_snr_needs_a_mix_with_the_same_rate() -> None:
    assert snr_problem({"vocals": StreamShape(RATE, 2)}, None) == "no mix to compare with"
    assert "sample rates differ" in str(snr_problem({"vocals": StreamShape(RATE, 2)}, StreamShape(44_100, 2)))
    assert "channel counts differ" in str(snr_problem({"vocals": StreamShape(RATE, 2)}, StreamShape(RATE, 6)))
    no_mix = _job(_stems(7), None).result()
    assert no_mix.reconstruction_snr_db is None and no_mix.low_snr(12.0) is None
    assert no_mix.duration_diff_s("vocals") is None
    assert no_mix.stems["vocals"].frames == RATE * 2


def test_silent_mix_has_no_snr() -> None:
    meter = ReconstructionMeter()
    meter.update(np.zeros((100, 1)), np.zeros((100, 1)))
    assert meter.snr_db() is None
