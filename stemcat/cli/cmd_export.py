"""`stemcat export OUT`: build or extend a stem dataset from the catalog (a thin shell over flows.export)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from stemcat.cli.common import data_dir_or_default, fail, settings
from stemcat.cli.storage_option import StorageOption, resolve_storage_url
from stemcat.settings import quiet_prefect_environment, verbose_prefect_environment

console = Console()
err_console = Console(stderr=True)


class ExportFormat(StrEnum):
    mp3 = "mp3"
    wav = "wav"
    flac = "flac"


def export_command(
    out: Annotated[Path, typer.Argument(help="Directory of the dataset (created, or extended when it exists).")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data directory \\[env STEMCAT_DATA_DIR].")] = None,
    types: Annotated[list[str] | None, typer.Option("--type", help="Separation type to include "
                                                    "(repeatable): separate_vocal, split_stem. Default: both.")] = None,
    stems: Annotated[list[str] | None, typer.Option("--stem", help="Stem to write (repeatable; with --rollup4: "
                                                    "vocals, drums, bass, other). Default: all.")] = None,
    min_duration_s: Annotated[float, typer.Option("--min-duration", help="Skip tracks shorter than this "
                                                  "many seconds.")] = 0.0,
    exclude_silent: Annotated[bool, typer.Option("--exclude-silent", help="Leave out stems the catalog "
                                                 "flags as silent.")] = False,
    min_snr_db: Annotated[float | None, typer.Option("--min-snr", help="Skip tracks whose stems rebuild the mix "
                                                     "worse than this (dB; needs `stemcat analyze`).")] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="Keep tracks with any of these tags "
                                                   "(repeatable, case-insensitive).")] = None,
    ratios: Annotated[str, typer.Option(help="Split ratios, by a stable hash of the generation task.")]
    = "train=0.8,valid=0.1,test=0.1",
    audio_format: Annotated[ExportFormat, typer.Option("--format", help="mp3 keeps the downloaded files "
                                                       "(hard links); wav / flac decode and convert.")]
    = ExportFormat.mp3,
    sample_rate: Annotated[int | None, typer.Option(help="Resample to this rate (wav / flac).")] = None,
    channels: Annotated[int | None, typer.Option(help="Mix to 1 or 2 channels (wav / flac).")] = None,
    rollup4: Annotated[bool, typer.Option("--rollup4", help="MUSDB18-style vocals, drums, bass, other "
                                          "(split_stem tracks only).")] = False,
    shards: Annotated[bool, typer.Option("--shards", help="Also write WebDataset tar shards.")] = False,
    shard_size_mb: Annotated[float, typer.Option(help="Largest shard in MiB.")] = 256.0,
    batch_size: Annotated[int, typer.Option(help="Tracks per Prefect task run.")] = 16,
    storage: StorageOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
) -> None:
    """Export the catalog's stems as a dataset: MUSDB-like folders, metadata.parquet, a datasheet, shards."""
    source = data_dir_or_default(data_dir)
    storage_url = resolve_storage_url(storage, settings())
    params: dict[str, Any] = dict(
        types=types, stems=stems, min_duration_s=min_duration_s, exclude_silent=exclude_silent, min_snr_db=min_snr_db,
        tags=tags, ratios=ratios, audio_format=audio_format.value, sample_rate=sample_rate, channels=channels,
        rollup4=rollup4, shards=shards, shard_size_mb=shard_size_mb,
    )
    if verbose:
        verbose_prefect_environment()
    from stemcat.flows.export import ExportRefused, export_command_line, export_dataset
    from stemcat.flows.outcome import summary_of_sync

    try:
        command = export_command_line(str(out), str(source), storage_url, **params)
        summary = summary_of_sync(export_dataset(out=str(out), data_dir=str(source), batch_size=batch_size,
                                                 command=command, storage_url=storage_url, return_state=True,
                                                 **params))
    except ExportRefused as error:
        fail(f"export: {error}")
    console.print(summary_table(summary))
    for refusal in summary["refused"]:
        err_console.print(f"[red]refused[/red] {refusal['key']}: {refusal['reason']}")
    raise typer.Exit(int(summary["exit_code"]))


def summary_table(summary: dict[str, Any]) -> Table:
    """The export summary as a two-column table."""
    table = Table(title=f"export → {summary['out_dir']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("tracks in the dataset", str(summary["tracks_total"]))
    table.add_row("added now", str(summary["added"]))
    table.add_row("already exported (untouched)", str(summary["already_exported"]))
    if summary["rewritten"]:
        table.add_row("rewritten (files had gone missing)", str(summary["rewritten"]))
    table.add_row("refused", str(len(summary["refused"])))
    for reason, count in sorted(summary["excluded"].items()):
        table.add_row(f"left out: {reason}", str(count))
    if summary["silent_stems_left_out"]:
        table.add_row("silent stems left out", str(summary["silent_stems_left_out"]))
    table.add_row("files written", f"{summary['files_written']} ({summary['bytes_written'] / 1e6:,.1f} MB)")
    if summary["shards_written"]:
        table.add_row("shards written", f"{summary['shards_written']} ({summary['shard_bytes_written'] / 1e6:,.1f} MB)")
    table.add_row("credits behind the dataset", str(sum(summary["credits_by_type"].values())))
    table.add_row("metadata", str(summary["metadata"]))
    table.add_row("datasheet", str(summary["datasheet"]))
    table.add_row("elapsed", f"{summary['elapsed_s']:.1f} s")
    for note in summary["notes"]:
        table.add_row("note", note)
    return table


quiet_prefect_environment()
