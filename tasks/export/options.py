"""What an export produces: the validated settings, and which of them fix the dataset's contents."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stemcat.tasks.export.splits import DEFAULT_RATIOS, validate_ratios
from stemcat.tasks.paths import KNOWN_STEMS, KNOWN_TYPES

ROLLUP_STEMS: tuple[str, ...] = ("vocals", "drums", "bass", "other")
# MP3 encoders (LAME through libsndfile) take these rates; WAV and FLAC take any positive rate.
MP3_SAMPLE_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
TYPE_ORDER: tuple[str, ...] = ("split_stem", "separate_vocal")


class AudioFormat(StrEnum):
    """Container of the exported audio: MP3 kept as downloaded, or decoded to WAV / FLAC."""

    mp3 = "mp3"
    wav = "wav"
    flac = "flac"


class ExportSettingsError(ValueError):
    """Settings that cannot produce a dataset, or that differ from the ones an existing export used."""


class ExportOptions(BaseModel):
    """Every choice that shapes an export; the CLI and the flow build one and nothing else reads flags."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    types: tuple[str, ...] = Field(default=TYPE_ORDER, description="Separation types to include.")
    stems: tuple[str, ...] | None = Field(default=None, description="Stems to write; None writes every stem.")
    min_duration_s: float = Field(default=0.0, ge=0.0, description="Skip tracks shorter than this.")
    exclude_silent: bool = Field(default=False, description="Leave out stems the catalog flags as silent.")
    min_snr_db: float | None = Field(default=None, description="Skip tracks whose stems rebuild the mix worse.")
    tags: tuple[str, ...] = Field(default=(), description="Keep tracks with any of these tags (case-insensitive).")
    ratios: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_RATIOS))
    format: AudioFormat = AudioFormat.mp3
    sample_rate: int | None = Field(default=None, gt=0, description="Resample to this rate (WAV/FLAC).")
    channels: int | None = Field(default=None, ge=1, le=2, description="Down- or up-mix to this many channels.")
    rollup4: bool = Field(default=False, description="Write vocals, drums, bass, other (split_stem only).")
    shards: bool = Field(default=False, description="Also pack WebDataset tar shards.")
    shard_size_mb: float = Field(default=256.0, gt=0, description="Largest shard, in MiB.")

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - KNOWN_TYPES)
        if unknown or not value:
            raise ValueError(f"types must be a non-empty selection of {sorted(KNOWN_TYPES)}, got {list(value)}")
        # Preference order when a song was separated both ways: the richer separation first.
        return tuple(t for t in TYPE_ORDER if t in value)

    @field_validator("tags")
    @classmethod
    def _normalised_tags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({tag.strip().lower() for tag in value if tag.strip()}))

    @field_validator("ratios")
    @classmethod
    def _valid_ratios(cls, value: dict[str, float]) -> dict[str, float]:
        return validate_ratios(value)

    @model_validator(mode="after")
    def _consistent(self) -> ExportOptions:
        if self.stems is not None:
            vocabulary = set(ROLLUP_STEMS) if self.rollup4 else set(KNOWN_STEMS)
            unknown = sorted(set(self.stems) - vocabulary)
            if unknown or not self.stems:
                what = "roll-up stems" if self.rollup4 else "stems"
                raise ValueError(f"unknown {what} {unknown}; choose from {sorted(vocabulary)}")
        if self.rollup4 and "split_stem" not in self.types:
            raise ValueError("the 4-stem roll-up needs split_stem tracks; add --type split_stem")
        if self.format is AudioFormat.mp3 and (self.sample_rate is not None or self.channels is not None):
            raise ValueError("MP3 files are kept as downloaded; choose --format wav or flac to resample or remix")
        return self

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide which tracks and bytes belong to the dataset (shards excluded)."""
        return self.model_dump(mode="json", exclude={"shards", "shard_size_mb"})

    def wanted(self, stem: str) -> bool:
        """Whether an output stem (roll-up name when rolling up) was asked for."""
        return self.stems is None or stem in self.stems


def settings_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between an existing export's settings and this run's."""
    names = sorted(set(recorded) | set(current))
    return [f"{name}: was {recorded.get(name)!r}, now {current.get(name)!r}"
            for name in names if recorded.get(name) != current.get(name)]


def build_options(
    *,
    types: list[str] | tuple[str, ...] | None = None,
    stems: list[str] | tuple[str, ...] | None = None,
    min_duration_s: float = 0.0,
    exclude_silent: bool = False,
    min_snr_db: float | None = None,
    tags: list[str] | tuple[str, ...] | None = None,
    ratios: str = "train=0.8,valid=0.1,test=0.1",
    audio_format: str = "mp3",
    sample_rate: int | None = None,
    channels: int | None = None,
    rollup4: bool = False,
    shards: bool = False,
    shard_size_mb: float = 256.0,
) -> ExportOptions:
    """Options from flat parameters (CLI flags or flow parameters); lists may hold comma-separated items."""
    from pydantic import ValidationError

    from stemcat.tasks.export.splits import SplitRatioError, parse_ratios

    try:
        return ExportOptions(
            **({"types": _items(types)} if types else {}),
            stems=_items(stems) if stems else None, min_duration_s=min_duration_s, exclude_silent=exclude_silent,
            min_snr_db=min_snr_db, tags=_items(tags or ()), ratios=parse_ratios(ratios),
            format=AudioFormat(audio_format), sample_rate=sample_rate, channels=channels, rollup4=rollup4,
            shards=shards, shard_size_mb=shard_size_mb,
        )
    except ValidationError as error:
        problems = "; ".join(str(e.get("msg", "invalid")).removeprefix("Value error, ") for e in error.errors())
        raise ExportSettingsError(problems) from error
    except (SplitRatioError, ValueError) as error:
        raise ExportSettingsError(str(error)) from error


def _items(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())
