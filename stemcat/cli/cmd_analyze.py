"""`stemcat analyze`: measure the stems already in the catalog (a thin shell over flows.analyze).

Downloads no stem and pays for nothing; only each song's original mix is fetched (free) when it
is not on disk yet.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from stemcat.cli.common import fail, settings
from stemcat.cli.ledger_option import LedgerUrlOption, resolve_ledger_url
from stemcat.cli.storage_option import StorageOption, resolve_storage_url
from stemcat.settings import quiet_prefect_environment, verbose_prefect_environment

console = Console()
err_console = Console(stderr=True)

AnalysisWorkersOption = Annotated[int | None, typer.Option(
    "--analysis-workers", min=1, help="Processes that decode and measure audio \\[env STEMCAT_ANALYSIS_WORKERS] "
                                      "(default: one per core).")]


def analyze_command(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data directory \\[env STEMCAT_DATA_DIR].")] = None,
    silent_threshold: Annotated[float | None, typer.Option(
        "--silent-threshold", max=0.0, help="A stem whose sample peak is below this (dBFS) is flagged silent "
                                            "(default -60).")] = None,
    min_snr: Annotated[float | None, typer.Option(
        "--min-snr", help="Flag separations whose stems add back up to the mix worse than this (dB; "
                          "default 10).")] = None,
    reanalyze: Annotated[bool, typer.Option("--reanalyze", help="Measure every downloaded job again, "
                                            "not only new ones (e.g. after changing a threshold).")] = False,
    fetch_mixes: Annotated[bool, typer.Option("--fetch-mixes/--no-fetch-mixes", help="Download missing mixes "
                                              "(free; needs SUNO_API_KEY). Without: stems only, no SNR.")] = True,
    base_url: Annotated[str | None, typer.Option(help="API base URL \\[env SUNO_BASE_URL].")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Jobs per Prefect task run.")] = 50,
    analysis_workers: AnalysisWorkersOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
    ledger_url: LedgerUrlOption = None,
    storage: StorageOption = None,
) -> None:
    """Measure downloaded stems (levels, loudness, silence) and how well they add back up to the mix."""
    env = settings()
    if fetch_mixes and not env.has_api_key():
        fail("SUNO_API_KEY is not set: it is needed to look up and fetch missing mixes (free calls); "
             "pass --no-fetch-mixes to measure the stems alone")
    directory = data_dir if data_dir is not None else env.data_dir
    ledger_url = resolve_ledger_url(ledger_url, env)
    storage_url = resolve_storage_url(storage, env)
    if ledger_url is None and not (directory / "ledger.sqlite").exists():
        fail(f"no ledger in {directory}: run `stemcat run MANIFEST` first, or pass --data-dir")
    if verbose:
        verbose_prefect_environment()
    from stemcat.flows.analyze import analyze_catalog
    from stemcat.flows.outcome import summary_of_sync

    thresholds = {name: value for name, value in (("silent_threshold_dbfs", silent_threshold),
                                                  ("min_snr_db", min_snr)) if value is not None}
    summary = summary_of_sync(asyncio.run(analyze_catalog(
        data_dir=str(directory), reanalyze=reanalyze, fetch_mixes=fetch_mixes, base_url=base_url or env.base_url,
        batch_size=batch_size, max_download_mb=env.max_download_mb, ledger_url=ledger_url, storage_url=storage_url,
        analysis_workers=analysis_workers or env.analysis_workers, return_state=True, **thresholds,
    )))
    console.print(summary_table(summary))
    raise typer.Exit(int(summary["exit_code"]))


def summary_table(summary: dict[str, Any]) -> Table:
    """The analysis summary as a two-column table."""
    outcomes: dict[str, int] = summary["outcomes"]
    counts: dict[str, int] = summary["counts"]
    table = Table(title=f"stemcat analyze {summary['data_dir']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("jobs measured", str(summary["jobs"]) + ("" if summary["jobs"] else " (nothing new; --reanalyze "
                                                              "measures everything again)"))
    table.add_row("compared with their mix", str(outcomes.get("analysed", 0) + outcomes.get("low_snr", 0)))
    table.add_row(f"low SNR (< {summary['min_snr_db']:g} dB)", str(outcomes.get("low_snr", 0)))
    table.add_row("without a mix to compare", str(outcomes.get("no_mix", 0)))
    table.add_row("failed (unreadable files)", str(outcomes.get("failed", 0)))
    table.add_row("stems measured", str(counts.get("stems_analysed", 0)))
    table.add_row(f"silent stems (peak < {summary['silent_threshold_dbfs']:g} dBFS)",
                  str(counts.get("silent_stems", 0)))
    table.add_row("time", f"{summary['elapsed_s']:.1f} s")
    table.add_row("next", "stemcat report quality  ·  stemcat report --plot charts/")
    return table


quiet_prefect_environment()
