"""The dataset's ``README.md`` datasheet and its chart: counts, hours per stem, splits, filters, credits.

Figures are computed from the export manifest (pure), rendered to Markdown (pure), and the
chart is drawn with matplotlib's Agg backend into ``OUT/hours_per_stem.png``.
"""

from __future__ import annotations

import shlex
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stemcat.tasks.export.audio import landing
from stemcat.tasks.export.metadata import METADATA_FILENAME
from stemcat.tasks.export.options import ExportOptions
from stemcat.tasks.export.plan import MIXTURE
from stemcat.tasks.export.state import ExportRun, ExportState

DATASHEET_FILENAME = "README.md"
CHART_FILENAME = "hours_per_stem.png"
SECONDS_PER_HOUR = 3600.0


@dataclass
class DatasetFigures:
    """Counts and durations of everything in the export."""

    tracks: int = 0
    tasks: int = 0
    files: int = 0
    bytes: int = 0
    tracks_by_split: Counter[str] = field(default_factory=Counter)
    tasks_by_split: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    tracks_by_type: Counter[str] = field(default_factory=Counter)
    hours: dict[str, dict[str, float]] = field(default_factory=dict)  # stem -> split -> hours
    files_by_stem: Counter[str] = field(default_factory=Counter)
    mixture_sources: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    clipped_samples: int = 0
    shards_by_split: Counter[str] = field(default_factory=Counter)
    shard_bytes: int = 0

    @property
    def splits(self) -> list[str]:
        return sorted(self.tracks_by_split)

    def hours_of(self, stem: str, split: str | None = None) -> float:
        """Hours of one stem, in one split or in all."""
        per_split = self.hours.get(stem, {})
        return per_split.get(split, 0.0) if split is not None else sum(per_split.values())


def figures(state: ExportState) -> DatasetFigures:
    """Tally the export manifest."""
    result = DatasetFigures()
    all_tasks: set[str] = set()
    for track in state.tracks.values():
        result.tracks += 1
        all_tasks.add(track.info.task_id)
        result.tracks_by_split[track.split] += 1
        result.tasks_by_split[track.split].add(track.info.task_id)
        result.tracks_by_type[track.info.separation_type] += 1
        result.mixture_sources[track.mixture_source] += 1
        for file in track.files:
            result.files += 1
            result.bytes += file.bytes
            result.files_by_stem[file.name] += 1
            per_split = result.hours.setdefault(file.name, {})
            per_split[track.split] = per_split.get(track.split, 0.0) + file.frames / file.sample_rate / SECONDS_PER_HOUR
            result.methods[file.method] += 1
            result.clipped_samples += file.clipped_samples
    result.tasks = len(all_tasks)
    for shard in state.shards:
        result.shards_by_split[shard.split] += 1
        result.shard_bytes += shard.bytes
    return result


def command_for(out_dir: Path, data_dir: Path, options: ExportOptions, storage_url: str | None = None) -> str:
    """The `stemcat export` command line that reproduces these options."""
    words = ["stemcat", "export", str(out_dir), "--data-dir", str(data_dir)]
    if storage_url:
        words += ["--storage", storage_url]
    for separation_type in options.types:
        words += ["--type", separation_type]
    for stem in options.stems or ():
        words += ["--stem", stem]
    if options.min_duration_s:
        words += ["--min-duration", f"{options.min_duration_s:g}"]
    if options.exclude_silent:
        words.append("--exclude-silent")
    if options.min_snr_db is not None:
        words += ["--min-snr", f"{options.min_snr_db:g}"]
    for tag in options.tags:
        words += ["--tag", tag]
    words += ["--ratios", ",".join(f"{name}={ratio:g}" for name, ratio in options.ratios.items())]
    words += ["--format", options.format.value]
    if options.sample_rate:
        words += ["--sample-rate", str(options.sample_rate)]
    if options.channels:
        words += ["--channels", str(options.channels)]
    if options.rollup4:
        words.append("--rollup4")
    if options.shards:
        words += ["--shards", "--shard-size-mb", f"{options.shard_size_mb:g}"]
    return shlex.join(words)


def _hours(value: float) -> str:
    """A duration given in hours, in the unit that reads best."""
    seconds = value * SECONDS_PER_HOUR
    if seconds == 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < SECONDS_PER_HOUR:
        return f"{seconds / 60:.1f} min"
    return f"{value:.2f} h"


def _megabytes(value: int) -> str:
    return f"{value / 1e6:,.1f} MB"


def _filters(options: ExportOptions, last: ExportRun | None) -> list[str]:
    lines = [
        f"- separation types: {', '.join(options.types)} (a song separated both ways is taken once, "
        f"{options.types[0]} first)",
        f"- stems: {', '.join(options.stems) if options.stems else 'all'}"
        + (" (4-stem roll-up: vocals, drums, bass, other = every remaining split_stem stem, "
           "backing vocals included)" if options.rollup4 else ""),
        f"- minimum duration: {options.min_duration_s:g} s",
        f"- silent stems: {'left out' if options.exclude_silent else 'kept'}"
        " (the catalog's `silent` flag; stems not analysed count as not silent)",
        "- minimum reconstruction SNR: "
        + (f"{options.min_snr_db:g} dB (tracks not analysed are left out)" if options.min_snr_db is not None
           else "none"),
        "- tags: " + (f"any of {', '.join(options.tags)} (whole comma-separated tags, any case)"
                      if options.tags else "any"),
        "- audio: " + (
            "the downloaded MP3 files as they are (hard links where possible); computed files are encoded as MP3"
            if options.format.value == "mp3" else
            f"{options.format.value.upper()} 16-bit, "
            f"{options.sample_rate or 'source'} Hz, {options.channels or 'source'} channel(s)"),
    ]
    if last is not None and last.excluded:
        lines.append("- left out in the last run: " + "; ".join(f"{n} ({reason})" for reason, n in
                                                                 sorted(last.excluded.items())))
    return lines


def render_datasheet(
    state: ExportState,
    options: ExportOptions,
    credits_by_type: dict[str, int],
    command: str,
    chart: str | None,
) -> str:
    """The Markdown datasheet of the export."""
    data = figures(state)
    splits = split_order(state, data)
    last = state.runs[-1] if state.runs else None
    updated = datetime.fromtimestamp(state.updated_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    mixture_hours = data.hours_of(MIXTURE)
    lines = [
        "# Stem dataset (stemcat export)",
        "",
        f"{data.tracks} tracks from {data.tasks} generation tasks, {_hours(mixture_hours)} of mixtures; "
        f"{data.files} audio files, {_megabytes(data.bytes)}. Updated {updated}.",
        "",
        "## How it was made",
        "",
        "```sh",
        command,
        "```",
        "",
        "Running the same command again adds new tracks from the catalog and leaves every file here untouched.",
        "",
        "## Splits",
        "",
        "By a stable hash of the generation task id (every audio variation of one generation is on the same "
        "side; adding tracks never moves one), unless the manifest pinned a split. "
        f"Ratios: {', '.join(f'{name} {ratio:g}' for name, ratio in options.ratios.items())}.",
        "",
        "| split | tracks | tasks | mixtures | shards |",
        "|---|---:|---:|---:|---:|",
    ]
    for split in splits:
        lines.append(f"| {split} | {data.tracks_by_split[split]} | {len(data.tasks_by_split[split])} | "
                     f"{_hours(data.hours_of(MIXTURE, split))} | {data.shards_by_split[split]} |")
    lines += ["", "## Audio per stem", ""]
    header = "| stem | files | total | " + " | ".join(splits) + " |"
    lines += [header, "|---|---:|---:|" + "---:|" * len(splits)]
    for stem in sorted(data.hours, key=lambda s: (s != MIXTURE, -data.hours_of(s), s)):
        per_split = " | ".join(_hours(data.hours_of(stem, split)) for split in splits)
        lines.append(f"| {stem} | {data.files_by_stem[stem]} | {_hours(data.hours_of(stem))} | "
                     f"{per_split} |")
    if chart:
        lines += ["", f"![hours of audio per stem and split]({chart})"]
    lines += ["", "## Filters used", "", *_filters(options, last)]
    mix_file = data.mixture_sources.get("mix_file", 0)
    lines += [
        "",
        "## Sources",
        "",
        "- separation types: " + ", ".join(f"{n} {t}" for t, n in sorted(data.tracks_by_type.items())),
        f"- mixture: the original mix for {mix_file} tracks, the sum of all stems for "
        f"{data.mixture_sources.get('sum_of_stems', 0)} (column `mixture_source`)",
        "- files: " + ", ".join(f"{n} {m}" for m, n in sorted(data.methods.items()))
        + (f"; {data.clipped_samples} samples clipped while encoding" if data.clipped_samples else ""),
        "- every source file was checked against the catalog's SHA-256 before it was read",
    ]
    total_credits = sum(credits_by_type.values())
    lines += [
        "",
        "## Credits",
        "",
        f"{total_credits} credits were spent on the separations in this dataset "
        + ("(" + ", ".join(f"{t}: {c}" for t, c in sorted(credits_by_type.items())) + "; " if credits_by_type else "(")
        + "failed attempts of the same songs included).",
    ]
    if last is not None and (last.refused or last.notes):
        lines += ["", "## Last run", ""]
        lines += [f"- refused {r.key}: {r.reason}" for r in last.refused]
        lines += [f"- note: {note}" for note in last.notes]
    lines += [
        "",
        "## Layout",
        "",
        "```",
        "{split}/{track_key}/mixture.{ext}   one folder per track, one file per stem (MUSDB18-like)",
        f"{METADATA_FILENAME:<36}one row per track and file",
        "shards/{split}/{split}-000000.tar   WebDataset shards: {key}.{stem}.{ext} and {key}.json"
        if data.shard_bytes else "(no WebDataset shards: pass --shards)",
        ".stemcat-export.json                what was written, with SHA-256s (keeps re-runs incremental)",
        "```",
        "",
        "```python",
        "import duckdb, pandas as pd, soundfile as sf",
        f"meta = pd.read_parquet('{METADATA_FILENAME}')",
        f"duckdb.sql(\"SELECT split, stem, sum(duration_s) / 3600 AS hours FROM '{METADATA_FILENAME}' GROUP BY ALL\")",
        "audio, rate = sf.read(meta.path[0])",
        "```",
        "",
    ]
    return "\n".join(lines)


_CHART_UNITS: tuple[tuple[float, str, float], ...] = (
    (2 / 60, "seconds", SECONDS_PER_HOUR), (2.0, "minutes", 60.0), (float("inf"), "hours", 1.0))


def split_order(state: ExportState, data: DatasetFigures) -> list[str]:
    """Splits in the order the ratios name them, then any pinned extras."""
    named = [name for name in state.settings.get("ratios", {}) if name in data.tracks_by_split]
    return named + [name for name in data.splits if name not in named]


def write_chart(state: ExportState, path: Path) -> Path | None:
    """A horizontal bar chart of hours per stem, stacked by split; None when there is nothing to draw."""
    data = figures(state)
    if not data.tracks:
        return None
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a worker thread

    stems = sorted(data.hours, key=lambda s: (s != MIXTURE, -data.hours_of(s), s))
    longest_h = max(data.hours_of(stem) for stem in stems)
    unit, scale = next((u, f) for limit, u, f in _CHART_UNITS if longest_h < limit)
    figure = Figure(figsize=(8, 0.4 * len(stems) + 1.8), dpi=110)
    axes = figure.subplots()
    left = [0.0] * len(stems)
    for split in split_order(state, data):
        widths = [data.hours_of(stem, split) * scale for stem in stems]
        axes.barh(stems, widths, left=left, label=f"{split} ({data.tracks_by_split[split]} tracks)")
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.invert_yaxis()  # the mixture on top, then the stems from most to least audio
    axes.set_xlabel(f"{unit} of audio")
    axes.set_title(f"Audio per stem and split: {data.tracks} tracks, {data.files} files")
    axes.legend(title="split", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    with landing(path) as temp:
        figure.savefig(temp, format="png")
    return path


def write_datasheet(
    out_dir: Path, state: ExportState, options: ExportOptions, credits_by_type: dict[str, int], command: str
) -> Path:
    """Write the chart and ``README.md`` (both replaced atomically)."""
    chart = write_chart(state, out_dir / CHART_FILENAME)
    final = out_dir / DATASHEET_FILENAME
    text = render_datasheet(state, options, credits_by_type, command, CHART_FILENAME if chart else None)
    with landing(final) as temp:
        temp.write_text(text, encoding="utf-8")
    return final
