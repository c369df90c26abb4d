"""Turn validated ids into file-system paths under the data directory.

Ids come from a manifest or from the API; they become path parts only after this
check, so a hostile or malformed id can never escape DATA_DIR.
"""

from __future__ import annotations

import re
from pathlib import Path

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
KNOWN_TYPES = frozenset({"separate_vocal", "split_stem"})
KNOWN_STEMS = frozenset(
    {
        "vocals", "instrumental", "backing_vocals", "drums", "bass", "guitar", "keyboard",
        "strings", "brass", "woodwinds", "percussion", "synth", "fx",
    }
)


class UnsafePathPart(ValueError):
    """An id that cannot safely become part of a file name."""


def check_id(value: str, what: str = "id") -> str:
    """Return `value` if it is a safe path part (letters, digits, `-`, `_`; 1–128 chars)."""
    if not _SAFE_ID.fullmatch(value):
        raise UnsafePathPart(
            f"{what} {value[:40]!r} is not a safe identifier (allowed: letters, digits, '-', '_'; at most 128)"
        )
    return value


def stem_relpath(audio_id: str, separation_type: str, stem: str) -> Path:
    """`stems/{audio_id}/{type}/{stem}.mp3`, relative to the data directory."""
    check_id(audio_id, "audio_id")
    if separation_type not in KNOWN_TYPES:
        raise UnsafePathPart(f"unknown separation type {separation_type!r}")
    if stem not in KNOWN_STEMS:
        raise UnsafePathPart(f"unknown stem {stem!r}")
    return Path("stems") / audio_id / separation_type / f"{stem}.mp3"
