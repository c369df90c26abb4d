"""`stemcat`: a thin shell over the flows and the catalog (no logic lives here)."""

from __future__ import annotations

import asyncio
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from stemcat.cli.ledger_option import LedgerUrlOption, resolve_ledger_url
from stemcat.cli.common import data_dir_or_default, fail, settings
from stemcat.cli.storage_option import StorageOption, resolve_storage_url
from stemcat.exit_codes import ExitCode
from stemcat.settings import quiet_prefect_environment, verbose_prefect_environment

quiet_prefect_environment()

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"stemcat {version('stemcat')}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Turn AI-generated songs into a clean, queryable stem dataset."""


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="Data directory \\[env STEMCAT_DATA_DIR].")]
from stemcat.cli.cmd_analyze import AnalysisWorkersOption  # noqa: E402 - shared with `stemcat analyze`


def _print_plan(summary: dict[str, Any]) -> None:
    from rich.table import Table

    plan = summary["plan"]
    table = Table(title="dry run: nothing was charged")
    table.add_column("what", style="bold")
    table.add_column("value")
    for t, n in sorted(plan["submit_by_type"].items()):
        table.add_row(f"new {t}", f"{n} submissions, {plan['credits_by_type'].get(t, 0)} credits")
    table.add_row("credits in all", str(sum(plan["credits_by_type"].values())))
    table.add_row("balance", str(summary.get("balance_before")))
    actions = plan["actions"]
    table.add_row("re-poll (free)", str(actions.get("poll", 0)))
    table.add_row("download or verify (free)", str(actions.get("download", 0)))
    for state, cost in sorted(plan.get("skipped_cost", {}).items()):
        table.add_row(f"skipped: {state}", f"{actions.get('skip_' + state, 0)} (re-separating costs {cost} credits; "
                                            f"pass --resubmit-{state})")
    table.add_row("rejected rows", str(plan["rejected"]))
    table.add_row("time the rate limit implies", f"≥ {summary.get('min_seconds', 0):.0f} s")
    console.print(table)


@app.command()
def run(
    manifest: Annotated[Path, typer.Argument(help="CSV, JSONL or Parquet manifest of generated tracks.")],
    separation_type: Annotated[str | None, typer.Option("--type", help="Type for rows without one: separate_vocal "
                                                         "(1 credit, the default) or split_stem (5 credits).")] = None,
    data_dir: DataDirOption = None,
    base_url: Annotated[str | None, typer.Option(help="API base URL \\[env SUNO_BASE_URL].")] = None,
    max_credits: Annotated[int | None, typer.Option(help="Hard cap on credits this run may commit.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and cost; charge nothing.")] = False,
    allow_partial: Annotated[bool, typer.Option(help="Spend what the balance allows, in manifest order.")] = False,
    resubmit_unknown: Annotated[bool, typer.Option(help="Pay again for submits whose outcome is unknown.")] = False,
    resubmit_failed: Annotated[bool, typer.Option(help="Pay again for separations the API reported failed.")] = False,
    resubmit_expired: Annotated[bool, typer.Option(help="Pay again for stems whose URLs expired.")] = False,
    force: Annotated[bool, typer.Option(help="Pay again for everything in the manifest.")] = False,
    rate_limit: Annotated[int | None, typer.Option(help="Requests per window \\[env STEMCAT_RATE_LIMIT].")] = None,
    rate_window: Annotated[float | None, typer.Option(help="Window in seconds \\[env STEMCAT_RATE_WINDOW_S].")] = None,
    poll_share: Annotated[float | None, typer.Option(help="Most of the rate budget polls may take while "
                                                      "submits wait, 0-1 \\[env STEMCAT_POLL_SHARE].")] = None,
    analyze: Annotated[bool, typer.Option(help="Measure stem quality after each batch (--no-analyze: later, "
                                                "with `stemcat analyze`).")] = True,
    concurrency: Annotated[int | None, typer.Option(help="Jobs in flight: concurrency x batch-size, a job starting "
                                                     "as any other ends \\[env STEMCAT_CONCURRENCY].")] = None,
    download_concurrency: Annotated[int | None, typer.Option(help="Parallel stem downloads.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Tracks per Prefect task run.")] = None,
    poll_initial: Annotated[float | None, typer.Option(
        help="Seconds before the first poll of a job (default: timed from the separation latencies seen).")] = None,
    poll_max: Annotated[float | None, typer.Option(help="Longest wait between polls of a job.")] = None,
    job_timeout: Annotated[float | None, typer.Option(help="Stop polling a job after this many seconds.")] = None,
    max_download_mb: Annotated[float | None, typer.Option(help="Refuse stem files larger than this.")] = None,
    callback_url: Annotated[str | None, typer.Option(help="Public base URL of `stemcat callbacks serve`.")] = None,
    rate_store: Annotated[str | None, typer.Option(help="Shared rate budget for concurrent runs "
                                                   "\\[env STEMCAT_RATE_STORE].")] = None,
    analysis_workers: AnalysisWorkersOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs.")] = False,
    ledger_url: LedgerUrlOption = None,
    storage: StorageOption = None,
) -> None:
    """Separate every track of MANIFEST into stems, download them, and update the catalog."""
    from stemcat.flows.preflight import PreflightError, check_run_inputs

    env = settings()
    params = env.fill(dict(
        manifest=str(manifest), data_dir=None if data_dir is None else str(data_dir), base_url=base_url,
        separation_type=separation_type, max_credits=max_credits, allow_partial=allow_partial, dry_run=dry_run,
        resubmit_unknown=resubmit_unknown, resubmit_failed=resubmit_failed, resubmit_expired=resubmit_expired,
        force=force, rate_limit=rate_limit, rate_window_s=rate_window, concurrency=concurrency,
        download_concurrency=download_concurrency, batch_size=batch_size, poll_initial_s=poll_initial,
        poll_max_s=poll_max, job_timeout_s=job_timeout, max_download_mb=max_download_mb, callback_url=callback_url,
        rate_store=rate_store, poll_share=poll_share, analyze=analyze,
        ledger_url=resolve_ledger_url(ledger_url, env), analysis_workers=analysis_workers,
        storage_url=resolve_storage_url(storage, env),
    ))
    if not env.has_api_key():
        fail("SUNO_API_KEY is not set: export your key (it is only ever sent in the Authorization header), "
             "or try `make demo`, which runs against the local simulator")
    try:  # before Prefect starts: a typo costs one line, and nothing is created or charged
        check_run_inputs(manifest, Path(params["data_dir"]), separation_type)
    except PreflightError as error:
        fail(str(error), error.exit_code)
    raise typer.Exit(run_flow(params, verbose=verbose))


def run_flow(params: dict[str, Any], *, verbose: bool = False) -> int:
    """Run the main flow in this process with a progress display; returns the exit status.

    A dry run with no Prefect server configured (`PREFECT_API_URL`) plans without starting one.
    """
    if verbose:
        verbose_prefect_environment()
    from stemcat.cli.display import RichProgress, summary_table
    from stemcat.flows.separate import run_separation

    orchestrate = not (params.get("dry_run") and not os.environ.get("PREFECT_API_URL"))
    with RichProgress(console) as progress:
        try:
            summary = asyncio.run(run_separation(progress=progress, orchestrate=orchestrate, **params))
        except Exception as error:  # the flow itself broke: say so plainly, keep the trace for --verbose
            if verbose:
                console.print_exception()
            err_console.print(f"[red]stemcat run failed:[/red] {error}", soft_wrap=True)
            return int(ExitCode.INCOMPLETE)
    if summary["dry_run"] and summary.get("plan"):
        _print_plan(summary)
    console.print(summary_table(summary))
    if summary.get("error"):
        err_console.print(f"[red]stemcat run:[/red] {summary['error']}", soft_wrap=True)
    return int(summary["exit_code"])


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over the catalog views (tracks, jobs, stems, spend, runs, …).")],
    fmt: Annotated[Format, typer.Option("--format", help="table, csv or json.")] = Format.table,
    data_dir: DataDirOption = None,
) -> None:
    """Run SQL against the catalog (read-only; never blocked by a running flow)."""
    import duckdb

    from stemcat.catalog import open_catalog
    from stemcat.catalog.reports import run_sql
    from stemcat.cli.display import print_frame

    con = open_catalog(data_dir_or_default(data_dir))
    try:
        frame = run_sql(con, query)
    except duckdb.Error as error:
        err_console.print(f"[red]SQL error:[/red] {error}")
        raise typer.Exit(2) from error
    print_frame(console, frame, fmt.value)


@app.command()
def sim(
    host: Annotated[str, typer.Option(help="Interface (loopback only is sensible).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8765,
    tracks: Annotated[int, typer.Option(help="Generate this many tracks and write their manifest.")] = 0,
    manifest: Annotated[Path, typer.Option(help="Where to write the generated manifest.")] = Path("sim-manifest.csv"),
    seed: Annotated[int, typer.Option(help="Seed for songs and outcomes.")] = 7,
) -> None:
    """Run the local Suno API simulator (the embedded default) until Ctrl-C."""
    from stemcat.flows.services import serve_simulator

    serve_simulator(host=host, port=port, seed=seed, tracks=tracks, manifest=manifest if tracks else None)


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="Where the demo writes stems and catalog.")] = Path("stemcat-data/demo"),
    tracks: Annotated[int, typer.Option(help="How many tracks to generate.")] = 12,
) -> None:
    """Start the simulator, write a mixed manifest, run the flow, print the summary and an example query."""
    from stemcat.cli.demo import run_demo

    raise typer.Exit(run_demo(console, data_dir=data_dir, tracks=tracks))


def _register_commands() -> None:
    from stemcat.cli.cmd_analyze import analyze_command
    from stemcat.cli.cmd_export import export_command
    from stemcat.cli.cmd_report import report_app

    app.add_typer(report_app, name="report")
    app.command("analyze")(analyze_command)
    app.command("export")(export_command)


_register_commands()


callbacks_app = typer.Typer(no_args_is_help=True, help="The callback receiver, as a long-lived service.")
app.add_typer(callbacks_app, name="callbacks")


@callbacks_app.command("serve")
def callbacks_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8766,
    data_dir: DataDirOption = None,
    ledger_url: LedgerUrlOption = None,
) -> None:
    """Receive the API's callbacks into the ledger, independently of any run (point STEMCAT_CALLBACK_URL here).

    A receiver that outlives runs catches callbacks that arrive while no run is alive, so a
    crash between a paid submit and storing its taskId is settled by the callback instead of
    ending as `unknown`.
    """
    from stemcat.flows.services import serve_callbacks

    serve_callbacks(data_dir_or_default(data_dir), ledger_url=resolve_ledger_url(ledger_url, settings()), host=host,
                    port=port, ready=lambda url: console.print(f"receiving callbacks on {url}/callback/<token>  (Ctrl-C stops)"))
