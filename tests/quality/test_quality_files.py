"""Measuring files on disk: lockstep decoding gives the same answers as whole arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemcat.tasks.analysis.meters import measure_stem
from stemcat.tasks.analysis.decode import UndecodableAudio, measure_files

RATE = 16_000


def _write(path: Path, signal: np.ndarray, fmt: str = "WAV") -> Path:
    if fmt == "MP3":
        sf.write(path, signal, RATE, format="MP3", subtype="MPEG_LAYER_III")
    else:
        sf.write(path, signal, RATE, subtype="FLOAT")
    return path


@pytest.fixture
def song(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    t = np.arange(RATE * 3) / RATE
    vocals = (0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.5))[:, None]
    drums = 0.1 * rng.standard_normal((t.size, 1))
    silent = np.zeros((t.size, 1))
    return {
        "vocals": _write(tmp_path / "vocals.wav", vocals),
        "drums": _write(tmp_path / "drums.wav", drums),
        "brass": _write(tmp_path / "brass.wav", silent),
        "mix": _write(tmp_path / "mix.wav", vocals + drums + silent),
    }


def test_lossless_stems_reconstruct_exactly_and_silence_is_found(song: dict[str, Path]) -> None:
    stems = {name: path for name, path in song.items() if name != "mix"}
    metrics = measure_files(stems, song["mix"], block_frames=4_096)
    assert metrics.reconstruction_snr_db is not None and metrics.reconstruction_snr_db > 100
    assert {name for name, m in metrics.stems.items() if m.silent} == {"brass"}
    assert all(metrics.duration_diff_s(name) == 0.0 for name in stems)
    whole = {name: sf.read(path, always_2d=True)[0] for name, path in stems.items()}
    for name, signal in whole.items():
        expected = measure_stem([signal], RATE, 1)
        assert metrics.stems[name].lufs == pytest.approx(expected.lufs, abs=1e-6)
        assert metrics.stems[name].rms_dbfs == pytest.approx(expected.rms_dbfs, abs=1e-6)
        assert metrics.stems[name].peak_dbfs == pytest.approx(expected.peak_dbfs, abs=1e-6)


def test_block_size_does_not_change_the_answer(song: dict[str, Path]) -> None:
    stems = {name: path for name, path in song.items() if name != "mix"}
    small = measure_files(stems, song["mix"], block_frames=1_000)
    large = measure_files(stems, song["mix"], block_frames=1_000_000)
    assert small.reconstruction_snr_db == pytest.approx(large.reconstruction_snr_db, rel=1e-9)
    for name in stems:
        assert small.stems[name].frames == large.stems[name].frames
        assert small.stems[name].lufs == pytest.approx(large.stems[name].lufs, abs=1e-9)


def test_mp3_coding_limits_snr_and_a_missing_stem_is_flagged(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(RATE * 4) / RATE
    parts = {
        "vocals": 0.2 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t)),
        "drums": 0.15 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.6),
        "bass": 0.25 * np.sin(2 * np.pi * 55 * t),
    }
    paths = {name: _write(tmp_path / f"{name}.mp3", signal, "MP3") for name, signal in parts.items()}
    mix = _write(tmp_path / "mix.mp3", sum(parts.values()), "MP3")
    coded = measure_files(paths, mix)
    assert coded.reconstruction_snr_db is not None and 15 < coded.reconstruction_snr_db < 100
    assert coded.low_snr(12.0) is False
    partial = measure_files({k: v for k, v in paths.items() if k != "bass"}, mix)
    assert partial.low_snr(12.0) is True


def test_a_file_that_is_not_audio_is_reported(tmp_path: Path, song: dict[str, Path]) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"<html>expired</html>")
    with pytest.raises(UndecodableAudio, match="junk.mp3"):
        measure_files({"vocals": junk}, song["mix"])


def test_memory_stays_flat_for_a_long_song(tmp_path: Path) -> None:
    import tracemalloc

    rate, seconds = 44_100, 60
    rng = np.random.default_rng(2)
    long_song = tmp_path / "long.wav"
    with sf.SoundFile(long_song, "w", rate, 2, subtype="PCM_16") as out:
        for _ in range(seconds):
            out.write(0.1 * rng.standard_normal((rate, 2)))
    whole_song_bytes = rate * seconds * 2 * 8  # what one float64 copy of the song would take
    import scipy.signal  # noqa: F401 - its first import alone allocates tens of MB; keep it out of the count

    tracemalloc.start()
    try:
        metrics = measure_files({"vocals": long_song}, long_song)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert metrics.stems["vocals"].frames == rate * seconds
    assert peak < whole_song_bytes / 4, f"peak {peak / 1e6:.1f} MB for a {whole_song_bytes / 1e6:.0f} MB song"
