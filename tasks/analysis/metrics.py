"""Stem quality figures and the settings they depend on (pure records, no numpy work).

Levels follow the usual conventions: sample peak and RMS in dBFS over all channels (a
full-scale sine has peak 0 dBFS and RMS -3.01 dBFS); integrated loudness per ITU-R BS.1770-4.
Digital silence has no finite level, so levels are floored at ``DBFS_FLOOR`` and a loudness with
no block above the absolute gate is reported as ``LUFS_FLOOR``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DBFS_FLOOR = -120.0
LUFS_FLOOR = -70.0
SNR_CEILING_DB = 120.0
DEFAULT_SILENT_THRESHOLD_DBFS = -60.0
DEFAULT_CLIP_LEVEL = 0.999
# Measured on the simulator's MP3 stems (every stem and the mix coded separately): 17-33 dB for split_stem,
# more for separate_vocal; leaving out one stem gives 3-7 dB, a 5 ms misalignment below 0 dB.
DEFAULT_MIN_SNR_DB = 12.0


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """When a stem counts as silent or clipped, and when a stem set adds up too poorly to its mix."""

    silent_threshold_dbfs: float = DEFAULT_SILENT_THRESHOLD_DBFS
    min_snr_db: float = DEFAULT_MIN_SNR_DB
    clip_level: float = DEFAULT_CLIP_LEVEL

    def __post_init__(self) -> None:
        if not DBFS_FLOOR <= self.silent_threshold_dbfs <= 0.0:
            raise ValueError(
                f"silent_threshold_dbfs must be within [{DBFS_FLOOR}, 0], got {self.silent_threshold_dbfs}"
            )
        if not 0.0 < self.clip_level <= 1.0:
            raise ValueError(f"clip_level must be within (0, 1], got {self.clip_level}")
        if not math.isfinite(self.min_snr_db):
            raise ValueError(f"min_snr_db must be a finite number, got {self.min_snr_db}")


@dataclass(frozen=True, slots=True)
class StemMetrics:
    """What one audio file measures: levels, loudness, clipping, silence and length."""

    peak_dbfs: float
    rms_dbfs: float
    lufs: float | None  # None when shorter than one 400 ms gating block
    clipped_fraction: float
    silent: bool
    frames: int
    sample_rate: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True, slots=True)
class JobMetrics:
    """A stem set measured against its mix: per-stem metrics, reconstruction SNR and length differences."""

    stems: dict[str, StemMetrics]
    mix: StemMetrics | None
    reconstruction_snr_db: float | None
    snr_problem: str | None  # why the SNR could not be computed, when it could not

    def duration_diff_s(self, stem: str) -> float | None:
        """Stem length minus mix length, in seconds (None without a mix)."""
        if self.mix is None:
            return None
        return self.stems[stem].duration_s - self.mix.duration_s

    def low_snr(self, min_snr_db: float) -> bool | None:
        """True when the stems add back up to the mix worse than ``min_snr_db`` (None when unknown)."""
        if self.reconstruction_snr_db is None:
            return None
        return self.reconstruction_snr_db < min_snr_db


def amplitude_db(amplitude: float, floor: float = DBFS_FLOOR) -> float:
    """20·log10 of a linear amplitude, never below ``floor``."""
    if amplitude <= 0.0:
        return floor
    return max(floor, 20.0 * math.log10(amplitude))


def power_db(power: float, floor: float = DBFS_FLOOR) -> float:
    """10·log10 of a linear power, never below ``floor``."""
    if power <= 0.0:
        return floor
    return max(floor, 10.0 * math.log10(power))


@dataclass(frozen=True, slots=True)
class StreamShape:
    """Sample rate and channel count of one decoded stream (not a file format: see ``export.options``)."""

    sample_rate: int
    channels: int
