"""Block-wise channel and rate conversion equals the whole-signal computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from stemcat.tasks.export.resample import StreamingResampler, convert_channels


def _stream(signal: np.ndarray, source: int, target: int, rng: np.random.Generator) -> np.ndarray:
    resampler = StreamingResampler(source, target)
    pieces = []
    start = 0
    while start < len(signal):
        size = int(rng.integers(1, 9000))
        pieces.append(resampler.process(signal[start:start + size]))
        start += size
    pieces.append(resampler.flush(signal.shape[1]))
    return np.concatenate(pieces)


@pytest.mark.parametrize(("source", "target"), [(16000, 22050), (44100, 48000), (32000, 44100), (48000, 16000),
                                                 (16000, 8000), (22050, 22050)])
@pytest.mark.parametrize("frames", [1, 37, 4999, 60_001])
def test_streaming_resampler_matches_resample_poly(source, target, frames):
    rng = np.random.default_rng(frames)
    signal = rng.standard_normal((frames, 2))
    streamed = _stream(signal, source, target, rng)
    if source == target:
        expected = signal
    else:
        resampler = StreamingResampler(source, target)
        expected = resample_poly(signal, resampler.up, resampler.down, axis=0)
    assert streamed.shape == expected.shape
    assert streamed.shape[0] == -(-frames * target // source)
    np.testing.assert_allclose(streamed, expected, atol=1e-9)


def test_channel_conversion():
    stereo = np.array([[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(convert_channels(stereo, 1), [[0.5], [0.5]])
    mono = np.array([[0.25], [-1.0]])
    np.testing.assert_allclose(convert_channels(mono, 2), [[0.25, 0.25], [-1.0, -1.0]])
    assert convert_channels(stereo, 2) is stereo
    with pytest.raises(ValueError):
        convert_channels(np.zeros((2, 3)), 2)
