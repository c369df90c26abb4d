"""Which tracks to write and which files each gets (pure logic, no I/O).

Track-level filters were evaluated by the catalog query; here they are applied, counted by
reason, and each kept track gets its list of output files: the mixture plus one file per
stem (or per roll-up group), without the stems that were not asked for or are flagged silent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from stemcat.client import STEMS_BY_TYPE, SeparationType
from stemcat.tasks.export.options import ROLLUP_STEMS, ExportOptions
from stemcat.tasks.export.records import Candidate, StemQuality, TrackInfo

MIXTURE = "mixture"
# A roll-up group is the sum of these split_stem stems; "other" is every stem not named here.
ROLLUP_NAMED: dict[str, tuple[str, ...]] = {"vocals": ("vocals",), "drums": ("drums",), "bass": ("bass",)}

REASON_DURATION = "shorter than --min-duration"
REASON_SNR = "reconstruction SNR below --min-snr, or not analysed"
REASON_TAGS = "no matching --tag"
REASON_INCOMPLETE = "stem files missing from the catalog"
REASON_ROLLUP = "separate_vocal cannot be rolled up to 4 stems"
REASON_NO_STEMS = "no stem left after --stem / --exclude-silent"


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One file to write: its name in the track folder and the source stems summed into it."""

    name: str
    parts: tuple[str, ...]
    silent: bool | None = None


@dataclass(frozen=True, slots=True)
class TrackPlan:
    """A track to write: the candidate, its split, and its files (the mixture first)."""

    candidate: Candidate
    split: str
    outputs: tuple[OutputSpec, ...]

    @property
    def key(self) -> str:
        return self.candidate.key


@dataclass
class Screening:
    """The outcome of applying the filters to every candidate."""

    to_write: list[tuple[Candidate, tuple[OutputSpec, ...]]] = field(default_factory=list)
    refreshed: dict[str, TrackInfo] = field(default_factory=dict)
    already_exported: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    silent_left_out: int = 0


def stem_order(separation_type: str) -> tuple[str, ...]:
    """The canonical stem names of a separation type, in the API's order."""
    return tuple(str(stem) for stem in STEMS_BY_TYPE[SeparationType(separation_type)])


def rollup_groups(stems: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """vocals, drums, bass, other: other is the sum of every remaining split_stem stem."""
    available = list(stems)
    named = {stem for parts in ROLLUP_NAMED.values() for stem in parts}
    groups = {name: tuple(s for s in parts if s in available) for name, parts in ROLLUP_NAMED.items()}
    groups["other"] = tuple(s for s in available if s not in named)
    return {name: groups[name] for name in ROLLUP_STEMS}


def group_silence(parts: Iterable[str], quality: Mapping[str, StemQuality]) -> bool | None:
    """A group is silent when every part is; not silent when any part has sound; else unknown."""
    flags = [quality.get(part, StemQuality()).silent for part in parts]
    if any(flag is False for flag in flags):
        return False
    if flags and all(flag is True for flag in flags):
        return True
    return None


def plan_outputs(candidate: Candidate, options: ExportOptions) -> tuple[OutputSpec, ...] | str:
    """The files of one track, or the reason it has none worth writing."""
    info = candidate.info
    order = stem_order(info.separation_type)
    if {s.stem for s in candidate.stems} != set(order):
        return REASON_INCOMPLETE
    if options.rollup4:
        if info.separation_type != SeparationType.SPLIT_STEM:
            return REASON_ROLLUP
        groups = rollup_groups(order)
    else:
        groups = {stem: (stem,) for stem in order}
    stems: list[OutputSpec] = []
    for name, parts in groups.items():
        silent = group_silence(parts, info.stem_quality)
        if not parts or not options.wanted(name) or (options.exclude_silent and silent is True):
            continue
        stems.append(OutputSpec(name=name, parts=parts, silent=silent))
    if not stems:
        return REASON_NO_STEMS
    mixture = OutputSpec(name=MIXTURE, parts=order, silent=None)
    return (mixture, *stems)


def screen(
    candidates: Iterable[Candidate], options: ExportOptions, exported_jobs: Mapping[str, str], redo: frozenset[str]
) -> Screening:
    """Split candidates into tracks to write, exported tracks to refresh, and exclusions by reason.

    ``exported_jobs`` maps each key already in the dataset to the job its files came from;
    keys in ``redo`` (files gone missing) are written again.
    """
    result = Screening()
    for candidate in candidates:
        key = candidate.key
        if key in exported_jobs and key not in redo:
            result.already_exported += 1
            if exported_jobs[key] == candidate.info.job_id:
                result.refreshed[key] = candidate.info
            continue
        reason = _track_filter_reason(candidate)
        if reason is None:
            planned = plan_outputs(candidate, options)
            if isinstance(planned, str):
                reason = planned
            else:
                result.to_write.append((candidate, planned))
                continue
        result.excluded[reason] += 1
    for candidate, outputs in result.to_write:
        if options.exclude_silent:
            result.silent_left_out += _silent_left_out(candidate, outputs, options)
    return result


def _track_filter_reason(candidate: Candidate) -> str | None:
    if not candidate.passes_duration:
        return REASON_DURATION
    if not candidate.passes_snr:
        return REASON_SNR
    if not candidate.passes_tags:
        return REASON_TAGS
    return None


def _silent_left_out(candidate: Candidate, outputs: tuple[OutputSpec, ...], options: ExportOptions) -> int:
    written = {output.name for output in outputs}
    groups = (rollup_groups(stem_order(candidate.info.separation_type)) if options.rollup4
              else {s: (s,) for s in stem_order(candidate.info.separation_type)})
    return sum(1 for name, parts in groups.items()
               if options.wanted(name) and name not in written and group_silence(parts, candidate.info.stem_quality))
