"""The stem vocabulary: separation types, their cost, and the API's stem field names."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

logger = logging.getLogger("stemcat.client")


class SeparationType(StrEnum):
    """What `POST /api/v1/vocal-removal/generate` is asked to do."""

    SEPARATE_VOCAL = "separate_vocal"
    SPLIT_STEM = "split_stem"


CREDITS_PER_TYPE: Final[dict[SeparationType, int]] = {
    SeparationType.SEPARATE_VOCAL: 1,
    SeparationType.SPLIT_STEM: 5,
}


class Stem(StrEnum):
    """Canonical stem names; also the only names allowed into file names."""

    VOCALS = "vocals"
    INSTRUMENTAL = "instrumental"
    BACKING_VOCALS = "backing_vocals"
    DRUMS = "drums"
    BASS = "bass"
    GUITAR = "guitar"
    KEYBOARD = "keyboard"
    STRINGS = "strings"
    BRASS = "brass"
    WOODWINDS = "woodwinds"
    PERCUSSION = "percussion"
    SYNTH = "synth"
    FX = "fx"


STEMS_BY_TYPE: Final[dict[SeparationType, tuple[Stem, ...]]] = {
    SeparationType.SEPARATE_VOCAL: (Stem.VOCALS, Stem.INSTRUMENTAL),
    SeparationType.SPLIT_STEM: (
        Stem.VOCALS,
        Stem.BACKING_VOCALS,
        Stem.DRUMS,
        Stem.BASS,
        Stem.GUITAR,
        Stem.KEYBOARD,
        Stem.STRINGS,
        Stem.BRASS,
        Stem.WOODWINDS,
        Stem.PERCUSSION,
        Stem.SYNTH,
        Stem.FX,
    ),
}

# The API says "vocal" (singular) where the dataset says "vocals".
_FIELD_STEMS: dict[str, Stem] = {"vocal": Stem.VOCALS, "vocals": Stem.VOCALS}
_FIELD_STEMS.update({stem.value: stem for stem in Stem if stem is not Stem.VOCALS})


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)


STEM_BY_FIELD: Mapping[str, Stem] = MappingProxyType(
    {
        **{f"{name}_url": stem for name, stem in _FIELD_STEMS.items()},
        **{_camel(f"{name}_url"): stem for name, stem in _FIELD_STEMS.items()},
    }
)
"""API field name (`vocalUrl`, `backing_vocals_url`, ...) → canonical stem."""

_NOT_STEM_FIELDS = frozenset({"originUrl", "origin_url", "audioUrl", "audio_url"})


def stem_for_field(field_name: str) -> Stem | None:
    """The stem an API field carries, or None for any other field."""
    return STEM_BY_FIELD.get(field_name)


def stem_urls_from_fields(fields: Mapping[str, object]) -> dict[Stem, str]:
    """Collect the non-empty stem URLs of an API object; unknown `*Url` fields are skipped."""
    urls: dict[Stem, str] = {}
    for name, value in fields.items():
        stem = STEM_BY_FIELD.get(name)
        if stem is None:
            if _looks_like_url_field(name) and name not in _NOT_STEM_FIELDS:
                logger.debug("ignoring unknown stem field %r", name)
            continue
        if isinstance(value, str) and value.strip():
            urls[stem] = value.strip()
    return urls


def _looks_like_url_field(name: str) -> bool:
    return name.endswith("Url") or name.endswith("_url")
