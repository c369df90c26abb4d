"""ITU-R BS.1770-4 integrated loudness, fed block by block (pure numpy/scipy, no I/O).

K-weighting, 400 ms gating blocks overlapping by 75 %, absolute gate -70 LUFS, relative gate
-10 LU. The meter keeps filter state and one energy value per 100 ms per channel, so a long song
never needs a whole-song array; feeding a signal in one block or in many gives the same result.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from stemcat.tasks.analysis.metrics import LUFS_FLOOR
from stemcat.tasks.analysis.frames import Block, as_frames

_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0
_LOUDNESS_OFFSET = -0.691
_STEP_S = 0.1  # gating blocks are 4 steps (400 ms) long and start every step (75 % overlap)
_STEPS_PER_BLOCK = 4


def k_weighting(sample_rate: int) -> tuple[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]], ...]:
    """The two BS.1770 K-weighting biquads ``(b, a)`` for a sample rate.

    The analogue prototypes (shelf and high-pass parameters) reproduce the standard's 48 kHz
    coefficients exactly and give the matching filters at any other rate.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    shelf_hz, shelf_gain_db, shelf_q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * shelf_hz / sample_rate)
    v_high = 10.0 ** (shelf_gain_db / 20.0)
    v_band = v_high**0.4996667741545416
    a0 = 1.0 + k / shelf_q + k * k
    shelf = (
        np.array([(v_high + v_band * k / shelf_q + k * k) / a0, 2.0 * (k * k - v_high) / a0,
                  (v_high - v_band * k / shelf_q + k * k) / a0]),
        np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / shelf_q + k * k) / a0]),
    )
    highpass_hz, highpass_q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * highpass_hz / sample_rate)
    a0 = 1.0 + k / highpass_q + k * k
    highpass = (
        np.array([1.0, -2.0, 1.0]),
        np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / highpass_q + k * k) / a0]),
    )
    return shelf, highpass


def _channel_weights(channels: int) -> npt.NDArray[np.float64]:
    # BS.1770 weights: surround channels count 1.41, the LFE of a 5.1 layout not at all.
    if channels == 5:
        return np.array([1.0, 1.0, 1.0, 1.41, 1.41])
    if channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    return np.ones(channels)


class LoudnessMeter:
    """BS.1770-4 integrated loudness, fed block by block; filter state carries across blocks."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        # Deferred: scipy.signal takes seconds to import, and the CLI imports this module's defaults.
        from scipy.signal import lfilter

        self._lfilter = lfilter
        self.sample_rate = sample_rate
        self.channels = channels
        self._filters = k_weighting(sample_rate)
        self._states = [np.zeros((2, channels)) for _ in self._filters]
        self._step = max(1, round(_STEP_S * sample_rate))
        self._leftover = np.zeros((0, channels))
        self._step_energy: list[npt.NDArray[np.float64]] = []

    def update(self, block: Block) -> None:
        frames = as_frames(block)
        if frames.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {frames.shape[1]}")
        filtered = frames
        # Digital silence into a filter at rest stays silence: skip the filter (split_stem has many empty stems).
        if frames.any() or any(state.any() for state in self._states):
            for index, (b, a) in enumerate(self._filters):
                filtered, self._states[index] = self._lfilter(b, a, filtered, axis=0, zi=self._states[index])
        pending = np.concatenate([self._leftover, filtered]) if self._leftover.size else filtered
        full = pending.shape[0] // self._step * self._step
        if full:
            squares = np.square(pending[:full]).reshape(-1, self._step, self.channels)
            self._step_energy.append(squares.sum(axis=1))
        self._leftover = pending[full:].copy()

    def integrated_lufs(self) -> float | None:
        """Gated loudness in LUFS; ``LUFS_FLOOR`` when nothing passes the absolute gate, None if too short."""
        if not self._step_energy:
            return None
        steps = np.concatenate(self._step_energy)
        if steps.shape[0] < _STEPS_PER_BLOCK:
            return None
        cumulative = np.concatenate([np.zeros((1, self.channels)), np.cumsum(steps, axis=0)])
        block_energy = cumulative[_STEPS_PER_BLOCK:] - cumulative[:-_STEPS_PER_BLOCK]
        mean_square = block_energy / (_STEPS_PER_BLOCK * self._step)
        weights = _channel_weights(self.channels)
        weighted = mean_square @ weights
        with np.errstate(divide="ignore"):
            block_lufs = _LOUDNESS_OFFSET + 10.0 * np.log10(weighted)
        above_absolute = block_lufs > _ABSOLUTE_GATE_LUFS
        if not above_absolute.any():
            return LUFS_FLOOR
        relative_gate = (
            _LOUDNESS_OFFSET + 10.0 * math.log10(float(weighted[above_absolute].mean())) + _RELATIVE_GATE_LU
        )
        gated = above_absolute & (block_lufs > relative_gate)
        return _LOUDNESS_OFFSET + 10.0 * math.log10(float(weighted[gated].mean()))


def integrated_loudness(samples: Block, sample_rate: int) -> float | None:
    """BS.1770-4 integrated loudness of a whole signal held in memory (tests and small clips)."""
    frames = as_frames(samples)
    meter = LoudnessMeter(sample_rate, frames.shape[1])
    meter.update(frames)
    return meter.integrated_lufs()
