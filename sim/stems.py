"""The fixed stem vocabulary and how each stem is named in payloads and file URLs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

SeparationType = Literal["separate_vocal", "split_stem"]
SEPARATION_TYPES: Final[tuple[SeparationType, ...]] = ("separate_vocal", "split_stem")
CREDIT_COST: Final[dict[SeparationType, int]] = {"separate_vocal": 1, "split_stem": 5}


@dataclass(frozen=True)
class StemField:
    """One stem slot of a separation result."""

    stem: str  # internal name, also the cache file stem
    camel: str  # record-info `response` key
    snake: str  # callback `*_info` key
    file_label: str  # how the file is named in its URL


INSTRUMENT_STEMS: Final[tuple[str, ...]] = (
    "vocals",
    "backing_vocals",
    "drums",
    "bass",
    "guitar",
    "keyboard",
    "percussion",
    "strings",
    "synth",
    "fx",
    "brass",
    "woodwinds",
)

_LABELS: Final[dict[str, str]] = {
    "vocals": "Vocals",
    "backing_vocals": "Backing_Vocals",
    "drums": "Drums",
    "bass": "Bass",
    "guitar": "Guitar",
    "keyboard": "Keyboard",
    "percussion": "Percussion",
    "strings": "Strings",
    "synth": "Synth",
    "fx": "FX",
    "brass": "Brass",
    "woodwinds": "Woodwinds",
    "instrumental": "Instrumental",
    "mix": "Mix",
}


def _camel(stem: str) -> str:
    head, *rest = stem.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _field(stem: str) -> StemField:
    camel = "vocalUrl" if stem == "vocals" else f"{_camel(stem)}Url"
    snake = "vocal_url" if stem == "vocals" else f"{stem}_url"
    return StemField(stem=stem, camel=camel, snake=snake, file_label=_LABELS[stem])


INSTRUMENTAL: Final[StemField] = _field("instrumental")
STEM_FIELDS: Final[dict[str, StemField]] = {stem: _field(stem) for stem in INSTRUMENT_STEMS}
# Order of the `response` keys of record-info, as in the contract files.
RESPONSE_FIELD_ORDER: Final[tuple[StemField, ...]] = (
    STEM_FIELDS["vocals"],
    *(STEM_FIELDS[s] for s in INSTRUMENT_STEMS if s != "vocals"),
)
MIX_LABEL: Final[str] = _LABELS["mix"]
FILE_LABELS: Final[dict[str, str]] = dict(_LABELS)
STEMS_BY_LABEL: Final[dict[str, str]] = {label: stem for stem, label in _LABELS.items()}


def stems_of(separation_type: SeparationType) -> tuple[str, ...]:
    """Files a separation of this type hands out (besides the origin mix)."""
    if separation_type == "separate_vocal":
        return ("vocals", "instrumental")
    return INSTRUMENT_STEMS
