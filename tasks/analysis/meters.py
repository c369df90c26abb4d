"""The streaming meters: levels and clipping per file, and how well stems add back up to their mix.

Every meter takes ``(frames, channels)`` blocks in order, works in float32 and keeps only running
sums, the loudness filter's state and one energy per 100 ms sub-block, so a long song never
needs a whole-song array and feeding a signal in one block or in many gives the same result.
Per sample a stem costs a max, a min, one squared sum and the K-weighting; the clipped samples
are counted only in blocks whose peak reaches the clip level, digital silence skips the filter,
and the reconstruction SNR reuses the mix's energy, so a job adds one subtraction per stem and
one squared sum of the residual. Pure numpy/scipy, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from stemcat.tasks.analysis.blocks import Block, Frames, SubBlockEnergy, as_frames
from stemcat.tasks.analysis.loudness import LoudnessMeter
from stemcat.tasks.analysis.metrics import (
    DBFS_FLOOR,
    SNR_CEILING_DB,
    JobMetrics,
    QualityThresholds,
    StemMetrics,
    StreamShape,
    amplitude_db,
    power_db,
)


_SUB_BLOCK_S = 0.1
_RECONSTRUCTION_STEP = 4_096  # frames per energy sum of the residual (any fixed size keeps results exact)


class StemMeter:
    """Everything measured per file: sample peak, RMS, clipped share, loudness and length."""

    def __init__(self, sample_rate: int, channels: int, thresholds: QualityThresholds) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.thresholds = thresholds
        self.clip_level = thresholds.clip_level
        self.peak = 0.0
        self.clipped = 0
        self.samples = 0
        self.frames = 0
        self.energy = SubBlockEnergy(max(1, round(_SUB_BLOCK_S * sample_rate)), channels)
        self.loudness = LoudnessMeter(sample_rate, channels)

    def update(self, block: Block) -> None:
        self.update_frames(as_frames(block))

    def update_frames(self, frames: Frames) -> None:
        """Feed a float32 ``(frames, channels)`` block (see ``blocks.as_frames``)."""
        if frames.shape[0] == 0:
            return
        if frames.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {frames.shape[1]}")
        block_peak = max(float(frames.max()), -float(frames.min()))
        self.peak = max(self.peak, block_peak)
        if block_peak >= self.clip_level:
            self.clipped += int(np.count_nonzero(np.abs(frames) >= self.clip_level))
        self.samples += frames.size
        self.frames += frames.shape[0]
        silent = block_peak == 0.0
        if silent:
            self.energy.add_silence(frames.shape[0])
        else:
            self.energy.update(frames)
        self.loudness.update_frames(frames, silent=silent)

    @property
    def sum_squares(self) -> float:
        return self.energy.total()

    def result(self) -> StemMetrics:
        peak_dbfs = amplitude_db(self.peak)
        return StemMetrics(
            peak_dbfs=peak_dbfs,
            rms_dbfs=power_db(self.sum_squares / self.samples) if self.samples else DBFS_FLOOR,
            lufs=self.loudness.integrated_lufs(),
            clipped_fraction=self.clipped / self.samples if self.samples else 0.0,
            silent=peak_dbfs < self.thresholds.silent_threshold_dbfs,
            frames=self.frames,
            sample_rate=self.sample_rate,
            channels=self.channels,
        )


class ReconstructionMeter:
    """How well a sum of stems reproduces the mix: 10·log10(mix energy / residual energy)."""

    def __init__(self) -> None:
        self._signal: SubBlockEnergy | None = None
        self._error: SubBlockEnergy | None = None
        self.signal_energy: float | None = None  # set to reuse a mix energy measured elsewhere

    def update(self, mix: Block, stem_sum: Block) -> None:
        """Add aligned blocks of the mix and of the summed stems (equal frames; channels equal or mono)."""
        mix_frames, sum_frames = as_frames(mix), as_frames(stem_sum)
        if mix_frames.shape[0] != sum_frames.shape[0]:
            raise ValueError("mix and stem-sum blocks must have the same number of frames")
        residual = mix_frames - sum_frames
        # A mono side is compared with every channel of the other, so count the mix that many times too.
        signal = np.ascontiguousarray(np.broadcast_to(mix_frames, residual.shape))
        if self._signal is None:
            self._signal = SubBlockEnergy(_RECONSTRUCTION_STEP, residual.shape[1])
        self._signal.update(signal)
        self.update_residual(residual)

    def update_residual(self, residual: Frames) -> None:
        """Add a block of mix minus summed stems (the mix's energy then comes from ``signal_energy``)."""
        if self._error is None:
            self._error = SubBlockEnergy(_RECONSTRUCTION_STEP, residual.shape[1])
        self._error.update(residual)

    def snr_db(self) -> float | None:
        """The reconstruction SNR in dB, capped at ``SNR_CEILING_DB``; None for a silent mix."""
        signal = self.signal_energy
        if signal is None:
            signal = 0.0 if self._signal is None else self._signal.total()
        error = 0.0 if self._error is None else self._error.total()
        if signal <= 0.0:
            return None
        if error <= 0.0:
            return SNR_CEILING_DB
        return min(SNR_CEILING_DB, 10.0 * math.log10(signal / error))


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
        self._residual = np.zeros((0, self._channels), dtype=np.float32)

    def update(self, stem_blocks: Mapping[str, Block], mix_block: Block | None) -> None:
        """One step: the next block of each file (a file that has ended passes an empty block or none)."""
        stems = {name: as_frames(block) for name, block in stem_blocks.items()}
        for name, frames in stems.items():
            self.update_stem(name, frames)
        mix = None if mix_block is None else as_frames(mix_block)
        if mix is not None:
            self.update_mix(mix)
        self.update_residual(stems, mix)

    def update_stem(self, name: str, frames: Frames) -> None:
        """A stem's next block, alone (measured while it is still in the cache; then ``update_residual``)."""
        self._stem_meters[name].update_frames(frames)

    def update_mix(self, frames: Frames) -> None:
        if self._mix_meter is not None:
            self._mix_meter.update_frames(frames)

    def update_residual(self, stems: Mapping[str, Frames], mix: Frames | None) -> None:
        """The step's mix minus its stems (blocks already fed through ``update_stem`` and ``update_mix``)."""
        if self._problem is not None or self._mix_meter is None:
            return
        length = max([frames.shape[0] for frames in stems.values()] + [0 if mix is None else mix.shape[0]])
        if length == 0:
            return
        if self._residual.shape[0] < length:
            self._residual = np.empty((length, self._channels), dtype=np.float32)
        residual = self._residual[:length]
        mix_frames = 0 if mix is None else mix.shape[0]
        if mix_frames:
            residual[:mix_frames] = mix  # a mono mix broadcasts to every channel
        residual[mix_frames:] = 0.0
        for frames in stems.values():
            residual[:frames.shape[0]] -= frames
        self._reconstruction.update_residual(residual)

    def result(self) -> JobMetrics:
        snr = None
        if self._problem is None and self._mix_meter is not None:
            # The mix's own energy, counted once per residual channel when the mix is mono.
            self._reconstruction.signal_energy = (
                self._mix_meter.sum_squares * self._channels / self._mix_meter.channels
            )
            snr = self._reconstruction.snr_db()
        return JobMetrics(
            stems={name: meter.result() for name, meter in self._stem_meters.items()},
            mix=None if self._mix_meter is None else self._mix_meter.result(),
            reconstruction_snr_db=snr,
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
