"""Filters and per-track file plans (pure), and shard packing."""

from __future__ import annotations

import pytest

from stemcat.tasks.export.options import ExportSettingsError, build_options, settings_differences
from stemcat.tasks.export.plan import (
    MIXTURE,
    REASON_DURATION,
    REASON_INCOMPLETE,
    REASON_NO_STEMS,
    REASON_ROLLUP,
    REASON_SNR,
    REASON_TAGS,
    group_silence,
    plan_outputs,
    rollup_groups,
    screen,
    stem_order,
)
from stemcat.tasks.export.records import Candidate, SourceStem, StemQuality, TrackInfo
from stemcat.tasks.export.shards import pack


def _candidate(audio_id: str, separation_type: str = "split_stem", silent: frozenset[str] = frozenset(),
               drop: frozenset[str] = frozenset(), **flags: bool) -> Candidate:
    stems = [s for s in stem_order(separation_type) if s not in drop]
    quality = {s: StemQuality(silent=s in silent) for s in stems}
    info = TrackInfo(audio_id=audio_id, task_id=f"t-{audio_id}", job_id=f"j-{audio_id}",
                     separation_type=separation_type, stem_quality=quality)
    sources = tuple(SourceStem(stem=s, path=f"stems/{audio_id}/{s}.mp3", sha256="0" * 64, bytes=1) for s in stems)
    return Candidate(info=info, stems=sources, **flags)


def test_every_stem_and_the_mixture_by_default():
    outputs = plan_outputs(_candidate("a"), build_options())
    assert not isinstance(outputs, str)
    assert outputs[0].name == MIXTURE and set(outputs[0].parts) == set(stem_order("split_stem"))
    assert [o.name for o in outputs[1:]] == list(stem_order("split_stem"))
    assert all(o.parts == (o.name,) for o in outputs[1:])


def test_silent_stems_are_left_out_only_when_asked():
    candidate = _candidate("a", silent=frozenset({"brass", "fx"}))
    kept = plan_outputs(candidate, build_options())
    dropped = plan_outputs(candidate, build_options(exclude_silent=True))
    assert not isinstance(kept, str) and not isinstance(dropped, str)
    assert {"brass", "fx"} <= {o.name for o in kept}
    assert not {"brass", "fx"} & {o.name for o in dropped}
    assert set(dropped[0].parts) == set(stem_order("split_stem"))  # the mixture is still the whole song


def test_rollup_groups_are_vocals_drums_bass_and_everything_else():
    groups = rollup_groups(stem_order("split_stem"))
    assert list(groups) == ["vocals", "drums", "bass", "other"]
    assert groups["vocals"] == ("vocals",)
    assert set(groups["other"]) == set(stem_order("split_stem")) - {"vocals", "drums", "bass"}
    assert "backing_vocals" in groups["other"] and len(groups["other"]) == 9


def test_rollup_plan_and_its_silence():
    options = build_options(rollup4=True, exclude_silent=True)
    others = set(rollup_groups(stem_order("split_stem"))["other"])
    all_other_silent = plan_outputs(_candidate("a", silent=frozenset(others | {"drums"})), options)
    assert not isinstance(all_other_silent, str)
    assert [o.name for o in all_other_silent] == [MIXTURE, "vocals", "bass"]
    some_other_silent = plan_outputs(_candidate("b", silent=frozenset({"brass"})), options)
    assert not isinstance(some_other_silent, str)
    assert [o.name for o in some_other_silent] == [MIXTURE, "vocals", "drums", "bass", "other"]
    assert plan_outputs(_candidate("c", "separate_vocal"), options) == REASON_ROLLUP


def test_group_silence_is_unknown_unless_decided():
    quality = {"a": StemQuality(silent=True), "b": StemQuality(silent=None), "c": StemQuality(silent=False)}
    assert group_silence(["a"], quality) is True
    assert group_silence(["a", "b"], quality) is None
    assert group_silence(["a", "b", "c"], quality) is False


def test_stem_selection_and_incomplete_jobs():
    options = build_options(stems=["vocals", "drums"])
    outputs = plan_outputs(_candidate("a"), options)
    assert not isinstance(outputs, str)
    assert [o.name for o in outputs] == [MIXTURE, "vocals", "drums"]
    assert plan_outputs(_candidate("b", "separate_vocal"), build_options(stems=["drums"])) == REASON_NO_STEMS
    assert plan_outputs(_candidate("c", drop=frozenset({"fx"})), build_options()) == REASON_INCOMPLETE


def test_screen_counts_reasons_and_skips_what_is_exported():
    candidates = [
        _candidate("new"),
        _candidate("short", passes_duration=False),
        _candidate("noisy", passes_snr=False),
        _candidate("untagged", passes_tags=False),
        _candidate("done"),
        _candidate("damaged"),
        _candidate("resubmitted"),
    ]
    exported = {"done": "j-done", "damaged": "j-damaged", "resubmitted": "j-older"}
    result = screen(candidates, build_options(), exported, frozenset({"damaged"}))
    assert [c.key for c, _ in result.to_write] == ["new", "damaged"]
    assert result.excluded == {REASON_DURATION: 1, REASON_SNR: 1, REASON_TAGS: 1}
    assert result.already_exported == 2
    assert set(result.refreshed) == {"done"}  # a newer job's facts never overwrite the exported job's


def test_options_validation_and_fingerprint():
    with pytest.raises(ExportSettingsError, match="MP3"):
        build_options(sample_rate=22050)
    with pytest.raises(ExportSettingsError, match="split_stem"):
        build_options(rollup4=True, types=["separate_vocal"])
    with pytest.raises(ExportSettingsError, match="unknown"):
        build_options(stems=["kazoo"])
    with pytest.raises(ExportSettingsError, match="sum to 1"):
        build_options(ratios="train=0.9")
    options = build_options(types=["separate_vocal,split_stem"], tags=["Pop", " jazz "], shards=True)
    assert options.types == ("split_stem", "separate_vocal") and options.tags == ("jazz", "pop")
    assert "shards" not in options.fingerprint()
    recorded = build_options(audio_format="wav").fingerprint()
    assert settings_differences(recorded, options.fingerprint()) == [
        "format: was 'wav', now 'mp3'", "tags: was [], now ['jazz', 'pop']"]


def test_pack_respects_the_limit_and_the_order():
    samples = [(f"k{i}", 10_000) for i in range(10)] + [("huge", 1_000_000), ("last", 10_000)]
    shards = pack(samples, 50_000)
    assert [key for shard in shards for key in shard] == [key for key, _ in samples]
    assert ["huge"] in shards
    for shard in shards:
        if shard != ["huge"]:
            assert 2 * 512 + 10240 + 10_000 * len(shard) <= 50_000
