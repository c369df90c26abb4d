"""The streaming meters: levels and clipping per file, and how well stems add back up to their mix.

Every meter takes ``(frames, channels)`` float blocks in order and keeps only running sums (and
the loudness meter's filter state and sub-block energies), so a long song never needs a
whole-song array. Feeding a signal in one block or in many gives the same result. Pure
numpy/scipy, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stemcat.tasks.analysis.frames import Block, as_frames
from stemcat.tasks.analysis.loudness import LoudnessMeter
from stemcat.tasks.analysis.metrics import (
    DBFS_FLOOR,
    DEFAULT_CLIP_LEVEL,
    SNR_CEILING_DB,
    JobMetrics,
    QualityThresholds,
    StemMetrics,
    StreamShape,
    amplitude_db,
    power_db,
)


class LevelMeter:
    """Sample peak, RMS and clipped share over every sample of every channel."""

    def __init__(self, clip_level: float = DEFAULT_CLIP_LEVEL) -> None:
        self.clip_level = clip_level
        self.peak = 0.0
        self.sum_squares = 0.0
        self.samples = 0
        self.clipped = 0
        self.frames = 0

    def update(self, block: Block) -> None:
        frames = as_frames(block)
        if frames.size == 0:
            return
        magnitude = np.abs(frames)
        self.peak = max(self.peak, float(magnitude.max()))
        self.sum_squares += float(np.square(frames).sum())
        self.samples += frames.size
        self.clipped += int(np.count_nonzero(magnitude >= self.clip_level))
        self.frames += frames.shape[0]

    @property
    def peak_dbfs(self) -> float:
        return amplitude_db(self.peak)

    @property
    def rms_dbfs(self) -> float:
        return power_db(self.sum_squares / self.samples) if self.samples else DBFS_FLOOR

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / self.samples if self.samples else 0.0


class StemMeter:
    """Everything measured per file: levels and loudness, fed the same blocks."""

    def __init__(self, sample_rate: int, channels: int, thresholds: QualityThresholds) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.thresholds = thresholds
        self.levels = LevelMeter(thresholds.clip_level)
        self.loudness = LoudnessMeter(sample_rate, channels)

    def update(self, block: Block) -> None:
        frames = as_frames(block)
        self.levels.update(frames)
        self.loudness.update(frames)

    def result(self) -> StemMetrics:
        peak_dbfs = self.levels.peak_dbfs
        return StemMetrics(
            peak_dbfs=peak_dbfs,
            rms_dbfs=self.levels.rms_dbfs,
            lufs=self.loudness.integrated_lufs(),
            clipped_fraction=self.levels.clipped_fraction,
            silent=peak_dbfs < self.thresholds.silent_threshold_dbfs,
            frames=self.levels.frames,
            sample_rate=self.sample_rate,
            channels=self.channels,
        )


@dataclass(slots=True)
class ReconstructionMeter:
    """How well a sum of stems reproduces the mix: 10·log10(mix energy / residual energy)."""

    signal_energy: float = 0.0
    error_energy: float = 0.0

    def update(self, mix: Block, stem_sum: Block) -> None:
        """Add aligned blocks of the mix and of the summed stems (equal frames; channels equal or mono)."""
        mix_frames, sum_frames = as_frames(mix), as_frames(stem_sum)
        if mix_frames.shape[0] != sum_frames.shape[0]:
            raise ValueError("mix and stem-sum blocks must have the same number of frames")
        residual = mix_frames - sum_frames
        # A mono side is compared with every channel of the other, so count the mix that many times too.
        self.signal_energy += float(np.square(np.broadcast_to(mix_frames, residual.shape)).sum())
        self.error_energy += float(np.square(residual).sum())

    def snr_db(self) -> float | None:
        """The reconstruction SNR in dB, capped at ``SNR_CEILING_DB``; None for a silent mix."""
        if self.signal_energy <= 0.0:
            return None
        if self.error_energy <= 0.0:
            return SNR_CEILING_DB
        return min(SNR_CEILING_DB, 10.0 * math.log10(self.signal_energy / self.error_energy))


def _pad(frames: npt.NDArray[np.float64], length: int) -> npt.NDArray[np.float64]:
    if frames.shape[0] == length:
        return frames
    return np.concatenate([frames, np.zeros((length - frames.shape[0], frames.shape[1]))])


def snr_problem(stems: Mapping[str, StreamShape], mix: StreamShape | None) -> str | None:
    """Why the stems cannot be compared sample by sample with the mix, or None when they can."""
    if mix is None:
        return "no mix to compare with"
    if not stems:
        return "no stems to compare with"
    rates = {fmt.sample_rate for fmt in stems.values()} | {mix.sample_rate}
    if len(rates) > 1:
        return f"sample rates differ ({', '.join(str(r) for r in sorted(rates))} Hz)"
    channels = {fmt.channels for fmt in stems.values()} | {mix.channels}
    if len(channels - {1}) > 1:
        return f"channel counts differ ({', '.join(str(c) for c in sorted(channels))})"
    return None


class JobMeter:
    """All stems of one separation and their mix, fed in lockstep blocks; files may end at different frames."""

    def __init__(
        self, stems: Mapping[str, StreamShape], mix: StreamShape | None, thresholds: QualityThresholds | None = None
    ) -> None:
        chosen = thresholds or QualityThresholds()
        self._stem_meters = {name: StemMeter(f.sample_rate, f.channels, chosen) for name, f in stems.items()}
        self._mix_meter = None if mix is None else StemMeter(mix.sample_rate, mix.channels, chosen)
        self._problem = snr_problem(stems, mix)
        self._channels = max([f.channels for f in stems.values()] + [1 if mix is None else mix.channels])
        self._reconstruction = ReconstructionMeter()

    def update(self, stem_blocks: Mapping[str, Block], mix_block: Block | None) -> None:
        """One step: the next block of each file (a file that has ended passes an empty block or none)."""
        stems = {name: as_frames(block) for name, block in stem_blocks.items()}
        for name, frames in stems.items():
            self._stem_meters[name].update(frames)
        mix = None if mix_block is None else as_frames(mix_block)
        if mix is not None and self._mix_meter is not None:
            self._mix_meter.update(mix)
        if self._problem is not None or self._mix_meter is None:
            return
        length = max([frames.shape[0] for frames in stems.values()] + [0 if mix is None else mix.shape[0]])
        if length == 0:
            return
        stem_sum = np.zeros((length, self._channels))
        for frames in stems.values():
            stem_sum += _pad(frames, length)
        mix_frames = np.zeros((length, self._mix_meter.channels)) if mix is None else _pad(mix, length)
        self._reconstruction.update(mix_frames, stem_sum)

    def result(self) -> JobMetrics:
        return JobMetrics(
            stems={name: meter.result() for name, meter in self._stem_meters.items()},
            mix=None if self._mix_meter is None else self._mix_meter.result(),
            reconstruction_snr_db=None if self._problem is not None else self._reconstruction.snr_db(),
            snr_problem=self._problem,
        )


def measure_stem(
    blocks: Iterable[Block], sample_rate: int, channels: int, thresholds: QualityThresholds | None = None
) -> StemMetrics:
    """Measure one signal given as consecutive blocks."""
    meter = StemMeter(sample_rate, channels, thresholds or QualityThresholds())
    for block in blocks:
        meter.update(block)
    return meter.result()
