"""`stemcat report`: the catalog's reports as tables, CSV or JSON, and PNG charts (a thin shell over catalog.reports).

Reads the Parquet snapshots through an in-memory DuckDB, so it works while a run is in progress.
`stemcat report` alone prints an overview; each subcommand prints one report. `--plot DIR` also
writes the charts, at either level.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from stemcat.cli.common import settings
from stemcat.cli.storage_option import StorageOption, open_catalog_or_exit, storage_or_exit
from stemcat.exit_codes import ExitCode

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

console = Console()
err_console = Console(stderr=True)



class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class SpendBy(StrEnum):
    day = "day"
    week = "week"
    run = "run"
    type = "type"
    tag = "tag"


FormatOption = Annotated[Format | None, typer.Option("--format", help="table, csv or json \\[default: table].")]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Data directory \\[env STEMCAT_DATA_DIR].")]
PlotOption = Annotated[Path | None, typer.Option("--plot", help="Also write PNG charts into this directory.",
                                                 metavar="DIR")]


@dataclass(frozen=True)
class ReportOptions:
    """Options given before the subcommand (`stemcat report --format csv spend`)."""

    fmt: Format | None = None
    data_dir: Path | None = None
    plot: Path | None = None
    storage: str | None = None


report_app = typer.Typer(no_args_is_help=False, help="Reports from the catalog (works while a run is in progress).")


@contextmanager
def _catalog(ctx: typer.Context, data_dir: Path | None, storage: str | None) -> Iterator[duckdb.DuckDBPyConnection]:
    from stemcat.catalog import catalog_dir, ledger_path

    parent = ctx.obj if isinstance(ctx.obj, ReportOptions) else ReportOptions()
    directory = data_dir or parent.data_dir or settings().data_dir
    published = storage_or_exit(storage or parent.storage, settings(), directory)
    if published is None and not catalog_dir(directory).is_dir() and not ledger_path(directory).exists():
        err_console.print(f"[red]No catalog in {directory}.[/red] "
                          "Run `stemcat run MANIFEST` first, or pass --data-dir (or --storage).")
        raise typer.Exit(ExitCode.BAD_CONFIG)
    con = open_catalog_or_exit(directory, published)
    try:
        yield con
    finally:
        con.close()


def _resolve(ctx: typer.Context, fmt: Format | None, plot: Path | None) -> tuple[Format, Path | None]:
    parent = ctx.obj if isinstance(ctx.obj, ReportOptions) else ReportOptions()
    return fmt or parent.fmt or Format.table, plot or parent.plot


def _show(frame: pd.DataFrame, fmt: Format, title: str) -> None:
    from stemcat.cli.display import print_frame

    # Tables are for reading: round there; CSV and JSON keep full precision.
    floats = frame.select_dtypes("float").columns
    shown = frame.round(dict.fromkeys(floats, 3)) if fmt is Format.table else frame
    print_frame(console, shown, fmt.value, title=title)


def _plot(con: duckdb.DuckDBPyConnection, out_dir: Path | None, fmt: Format) -> None:
    if out_dir is None:
        return
    from stemcat.catalog.charts import write_charts

    paths = write_charts(con, out_dir)
    # Keep stdout parseable for csv/json: chart paths go to stderr then.
    target = console if fmt is Format.table else err_console
    for path in paths:
        target.print(f"chart: {path}")


def _single(ctx: typer.Context, fmt: Format | None, data_dir: Path | None, storage: str | None, plot: Path | None,
            title: str, build: Callable[[duckdb.DuckDBPyConnection], pd.DataFrame]) -> None:
    chosen, out_dir = _resolve(ctx, fmt, plot)
    with _catalog(ctx, data_dir, storage) as con:
        _show(build(con), chosen, title)
        _plot(con, out_dir, chosen)


def _overview_reports() -> dict[str, tuple[str, Callable[[duckdb.DuckDBPyConnection], pd.DataFrame]]]:
    from stemcat.catalog.reports import expiring_report, failures_report, spend_report, stems_report, usable_report

    return {
        "spend_by_type": ("credits committed by separation type, all time", lambda con: spend_report(con, "type")),
        "usable": ("credits per minute of usable (non-silent) stem audio", usable_report),
        "stems": ("stems by type and name", stems_report),
        "failures": ("failures by reason", failures_report),
        "expiring": ("stems not downloaded whose links expire within 3 days", lambda con: expiring_report(con, 3)),
    }


@report_app.callback(invoke_without_command=True)
def report_overview(
    ctx: typer.Context,
    fmt: FormatOption = None,
    data_dir: DataDirOption = None,
    storage: StorageOption = None,
    plot: PlotOption = None,
) -> None:
    """Without a subcommand: an overview (spend, usable audio, stems, failures, expiring links)."""
    ctx.obj = ReportOptions(fmt=fmt, data_dir=data_dir, plot=plot, storage=storage)
    if ctx.invoked_subcommand is not None:
        return
    chosen = fmt or Format.table
    with _catalog(ctx, data_dir, storage) as con:
        frames = {name: (title, build(con)) for name, (title, build) in _overview_reports().items()}
        if chosen is Format.json:
            records = {name: json.loads(frame.to_json(orient="records", date_format="iso"))
                       for name, (_, frame) in frames.items()}
            console.out(json.dumps(records, indent=2))
        elif chosen is Format.csv:
            for name, (_, frame) in frames.items():
                console.out(f"# {name}")
                console.out(frame.to_csv(index=False))
        else:
            for title, frame in frames.values():
                _show(frame, chosen, title)
        _plot(con, plot, chosen)


@report_app.command("spend")
def report_spend(
    ctx: typer.Context,
    by: Annotated[SpendBy, typer.Option(help="Group by UTC day, ISO week, run (with the balance check), "
                                        "separation type, or tag.")] = SpendBy.day,
    fmt: FormatOption = None,
    data_dir: DataDirOption = None,
    storage: StorageOption = None,
    plot: PlotOption = None,
) -> None:
    """Credits committed, from the ledger (runs also show the balance change they observed)."""
    from stemcat.catalog.reports import spend_report

    # By type or tag the rows add up every credit ever committed: the title says so.
    span = ", all time" if by in (SpendBy.type, SpendBy.tag) else ""
    _single(ctx, fmt, data_dir, storage, plot, f"spend by {by.value}{span}", lambda con: spend_report(con, by.value))


@report_app.command("stems")
def report_stems(ctx: typer.Context, fmt: FormatOption = None, data_dir: DataDirOption = None,
                 storage: StorageOption = None,
                 plot: PlotOption = None) -> None:
    """Stems per type and name: counts, downloads, hours, silent ones."""
    from stemcat.catalog.reports import stems_report

    _single(ctx, fmt, data_dir, storage, plot, "stems", stems_report)


@report_app.command("quality")
def report_quality(
    ctx: typer.Context,
    tracks: Annotated[bool, typer.Option("--tracks", help="One row per separation (SNR against the mix) "
                                         "instead of per stem.")] = False,
    low_snr: Annotated[bool, typer.Option("--low-snr", help="Only separations whose stems do not add back "
                                          "up to the mix (implies --tracks).")] = False,
    fmt: FormatOption = None,
    data_dir: DataDirOption = None,
    storage: StorageOption = None,
    plot: PlotOption = None,
) -> None:
    """Analysed stem quality: loudness, peaks, clipping, silence, and how stems add up to the mix."""
    from stemcat.catalog.reports import quality_report, track_quality_report

    if tracks or low_snr:
        title = "separations with low reconstruction SNR" if low_snr else "quality per separation"
        _single(ctx, fmt, data_dir, storage, plot, title, lambda con: track_quality_report(con, low_snr_only=low_snr))
    else:
        _single(ctx, fmt, data_dir, storage, plot, "quality per stem", quality_report)


@report_app.command("failures")
def report_failures(ctx: typer.Context, fmt: FormatOption = None, data_dir: DataDirOption = None,
                    storage: StorageOption = None,
                    plot: PlotOption = None) -> None:
    """Failed jobs and downloads, rejected manifest rows and quality problems, by reason."""
    from stemcat.catalog.reports import failures_report

    _single(ctx, fmt, data_dir, storage, plot, "failures by reason", failures_report)


@report_app.command("expiring")
def report_expiring(
    ctx: typer.Context,
    days: Annotated[float, typer.Option(min=0, help="Show links that expire within this many days.")] = 3.0,
    fmt: FormatOption = None,
    data_dir: DataDirOption = None,
    storage: StorageOption = None,
    plot: PlotOption = None,
) -> None:
    """Stems not downloaded yet whose links expire soon (a rerun downloads them for free until then)."""
    from stemcat.catalog.reports import expiring_report

    _single(ctx, fmt, data_dir, storage, plot, f"links expiring within {days:g} days",
            lambda con: expiring_report(con, days))


@report_app.command("usable")
def report_usable(ctx: typer.Context, fmt: FormatOption = None, data_dir: DataDirOption = None,
                  storage: StorageOption = None,
                  plot: PlotOption = None) -> None:
    """Credits per minute of usable (downloaded, non-silent) stem audio."""
    from stemcat.catalog.reports import usable_report

    _single(ctx, fmt, data_dir, storage, plot, "credits per usable minute", usable_report)
