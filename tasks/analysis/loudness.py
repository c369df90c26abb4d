"""ITU-R BS.1770-4 integrated loudness, fed block by block (pure numpy/scipy, no I/O).

K-weighting, 400 ms gating blocks overlapping by 75 %, absolute gate -70 LUFS, relative gate
-10 LU. The K-weighting runs once per sample as two float32 second-order sections
(``scipy.signal.sosfilt``) with carried state; a stereo stream is filtered as one complex
signal (left + i·right: the same filter on both channels in one pass). The meter keeps one
energy per 100 ms sub-block; the 400 ms gating blocks and both gates are computed from those
at the end, so a long song never needs a whole-song array, and feeding a signal in one block or
in many gives the same result.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from stemcat.tasks.analysis.metrics import LUFS_FLOOR
from stemcat.tasks.analysis.blocks import Block, Frames, SubBlockEnergy, as_frames

_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0
_LOUDNESS_OFFSET = -0.691
_STEP_S = 0.1  # gating blocks are 4 steps (400 ms) long and start every step (75 % overlap)
_STEPS_PER_BLOCK = 4
# The K-weighting's slowest pole (the 38 Hz high-pass) decays by e every 4.2 ms: 0.25 s of silence
# takes a full-scale state below 1e-26, far under anything the -70 LUFS gate can see.
_DECAY_S = 0.25
_SUBNORMAL_GUARD = np.float32(1e-15)


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


def k_weighting_sos(sample_rate: int) -> npt.NDArray[np.float64]:
    """The K-weighting as second-order sections (``scipy.signal.sosfilt`` layout)."""
    return np.array([np.concatenate([b, a]) for b, a in k_weighting(sample_rate)])


class LoudnessMeter:
    """BS.1770-4 integrated loudness, fed block by block; filter state carries across blocks."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        # Deferred: scipy.signal takes seconds to import, and the CLI imports this package's defaults.
        from scipy.signal import sosfilt

        self._sosfilt = sosfilt
        self.sample_rate = sample_rate
        self.channels = channels
        step = max(1, round(_STEP_S * sample_rate))
        self._step = step
        sos = k_weighting_sos(sample_rate)
        # Stereo and mono: every channel weighs 1, so one energy per sub-block covers them all.
        self._complex = channels == 2
        if self._complex:
            self._sos = sos.astype(np.complex64)
            self._state = np.zeros((sos.shape[0], 2), dtype=np.complex64)
            self._energy = [SubBlockEnergy(step, 2)]
            self._weights = np.ones(1)
        elif channels == 1:
            self._sos = sos.astype(np.float32)
            self._state = np.zeros((sos.shape[0], 2), dtype=np.float32)
            self._energy = [SubBlockEnergy(step, 1)]
            self._weights = np.ones(1)
        else:
            self._sos = sos.astype(np.float32)
            self._state = np.zeros((sos.shape[0], channels, 2), dtype=np.float32)
            self._energy = [SubBlockEnergy(step, 1) for _ in range(channels)]
            self._weights = _channel_weights(channels)
        self._at_rest = True
        self._decay = max(1, round(_DECAY_S * sample_rate))
        self._silent_run = 0  # zero frames fed since the last sound

    def update(self, block: Block) -> None:
        self.update_frames(as_frames(block))

    def update_frames(self, frames: Frames, *, silent: bool | None = None) -> None:
        """Feed a float32 ``(frames, channels)`` block; ``silent`` says it is all zeros when known."""
        if frames.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {frames.shape[1]}")
        if silent is None:
            silent = not frames.any()
        length = frames.shape[0]
        cut = self._filtered_frames(frames, silent)
        if cut:
            self._filter(frames[:cut] if cut < length else frames)
        if cut < length:
            # Digital silence into a filter at rest stays silence (split_stem has many empty stems). Past
            # _DECAY_S of silence the filter's state has decayed below 1e-20 of full scale; it is set to rest
            # rather than left to sink into float32 subnormals, which run the filter about ten times slower
            # (and it never reaches zero: rounding leaves it cycling at about 1e-43).
            self._state[...] = 0
            self._at_rest = True
            for energy in self._energy:
                energy.add_silence(length - cut)

    def _filtered_frames(self, frames: Frames, silent: bool) -> int:
        """How many leading frames of the block need the filter; the rest is silence after the decay."""
        length = frames.shape[0]
        if silent:
            cut = 0 if self._at_rest else min(length, max(0, self._decay - self._silent_run))
            self._silent_run += length
            return cut
        if frames[-1].any():
            self._silent_run = 0
            return length
        last = int(np.flatnonzero(frames.any(axis=1))[-1])
        self._silent_run = length - 1 - last
        return min(length, last + 1 + self._decay)

    def _filter(self, frames: Frames) -> None:
        # A constant far below float32's resolution of any audible sample keeps the filter's state away
        # from subnormal numbers in the short silences inside a block (between drum hits, say), where
        # it would otherwise sink and run ten times slower. The high-pass removes it from the output.
        frames = frames + _SUBNORMAL_GUARD
        if self._complex:
            signal = frames.view(np.complex64)[:, 0]
            filtered, self._state = self._sosfilt(self._sos, signal, zi=self._state)
            self._energy[0].update(filtered.view(np.float32).reshape(-1, 2))
        elif self.channels == 1:
            filtered, self._state = self._sosfilt(self._sos, frames[:, 0], zi=self._state)
            self._energy[0].update(filtered[:, np.newaxis])
        else:
            filtered, self._state = self._sosfilt(self._sos, frames.T, axis=-1, zi=self._state)
            for channel, energy in enumerate(self._energy):
                energy.update(filtered[channel][:, np.newaxis])
        self._at_rest = False

    def integrated_lufs(self) -> float | None:
        """Gated loudness in LUFS; ``LUFS_FLOOR`` when nothing passes the absolute gate, None if too short."""
        steps = np.stack([energy.energies() for energy in self._energy], axis=1)
        if steps.shape[0] < _STEPS_PER_BLOCK:
            return None
        cumulative = np.concatenate([np.zeros((1, steps.shape[1])), np.cumsum(steps, axis=0)])
        block_energy = cumulative[_STEPS_PER_BLOCK:] - cumulative[:-_STEPS_PER_BLOCK]
        weighted = block_energy @ self._weights / (_STEPS_PER_BLOCK * self._step)
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
    meter.update_frames(frames)
    return meter.integrated_lufs()
