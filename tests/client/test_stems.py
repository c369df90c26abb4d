"""The stem vocabulary and the API's field names."""

from __future__ import annotations

import logging

import pytest

from stemcat.client import CREDITS_PER_TYPE, STEM_BY_FIELD, STEMS_BY_TYPE, SeparationType, Stem, stem_for_field
from stemcat.client.stems import stem_urls_from_fields


def test_credits_per_type() -> None:
    assert CREDITS_PER_TYPE == {SeparationType.SEPARATE_VOCAL: 1, SeparationType.SPLIT_STEM: 5}


def test_stems_by_type_in_documented_order() -> None:
    assert STEMS_BY_TYPE[SeparationType.SEPARATE_VOCAL] == (Stem.VOCALS, Stem.INSTRUMENTAL)
    assert [str(stem) for stem in STEMS_BY_TYPE[SeparationType.SPLIT_STEM]] == [
        "vocals", "backing_vocals", "drums", "bass", "guitar", "keyboard",
        "strings", "brass", "woodwinds", "percussion", "synth", "fx",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "stem"),
    [
        ("vocalUrl", Stem.VOCALS),
        ("vocal_url", Stem.VOCALS),
        ("instrumentalUrl", Stem.INSTRUMENTAL),
        ("instrumental_url", Stem.INSTRUMENTAL),
        ("backingVocalsUrl", Stem.BACKING_VOCALS),
        ("backing_vocals_url", Stem.BACKING_VOCALS),
        ("woodwindsUrl", Stem.WOODWINDS),
        ("fx_url", Stem.FX),
    ],
)
def test_field_names_map_to_stems(field: str, stem: Stem) -> None:
    assert stem_for_field(field) is stem


def test_every_stem_has_a_camel_and_a_snake_field() -> None:
    for stem in Stem:
        fields = [name for name, mapped in STEM_BY_FIELD.items() if mapped is stem]
        assert any(name.endswith("Url") for name in fields), stem
        assert any(name.endswith("_url") for name in fields), stem


def test_unknown_stem_fields_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="stemcat.client"):
        urls = stem_urls_from_fields(
            {"pianoUrl": "https://x/p.mp3", "vocalUrl": "https://x/v.mp3", "drumsUrl": None, "bassUrl": ""}
        )
    assert urls == {Stem.VOCALS: "https://x/v.mp3"}
    assert stem_for_field("pianoUrl") is None
    assert any("pianoUrl" in record.getMessage() for record in caplog.records)
