"""Terminal rendering: a rich progress display for runs and tables for reports."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

STAGES = ("submitted", "separated", "downloaded")


class RichProgress:
    """A `ProgressReporter` drawing one bar per pipeline stage."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:>11}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self._ids: dict[str, Any] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def total(self, stage: str, n: int) -> None:
        if stage not in STAGES:
            return
        if stage not in self._ids:
            self._ids[stage] = self.progress.add_task(stage, total=n)
        else:
            self.progress.update(self._ids[stage], total=n)

    def advance(self, stage: str, n: int = 1) -> None:
        if stage in self._ids:
            self.progress.advance(self._ids[stage], n)

    def message(self, text: str) -> None:
        self.progress.console.print(text)


def frame_table(frame: pd.DataFrame, title: str | None = None) -> Table:
    table = Table(title=title, show_lines=False)
    for column in frame.columns:
        table.add_column(str(column), justify="right" if pd.api.types.is_numeric_dtype(frame[column]) else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*("" if v is None or (isinstance(v, float) and v != v) else str(v) for v in row))
    return table


def print_frame(console: Console, frame: pd.DataFrame, fmt: str, title: str | None = None) -> None:
    if fmt == "csv":
        console.out(frame.to_csv(index=False), end="")
    elif fmt == "json":
        console.out(json.dumps(json.loads(frame.to_json(orient="records", date_format="iso")), indent=2))
    else:
        console.print(frame_table(frame, title))


def _by_status(jobs: dict[str, int]) -> str:
    """Where every job the run claimed stands now, e.g. ` (now: 10 downloaded, 2 submitted)`."""
    return f" (now: {', '.join(f'{n} {status}' for status, n in sorted(jobs.items()))})" if jobs else ""


def summary_table(summary: dict[str, Any]) -> Table:
    plan = summary.get("plan", {})
    counts = summary.get("counts", {})
    table = Table(title=f"stemcat run {summary['run_id']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
        ("manifest", f"{summary['manifest']}: {plan.get('rows', 0)} valid rows, {plan.get('rejected', 0)} rejected"),
        ("rejects file", summary.get("rejects_file") or "-"),
        ("planned", ", ".join(f"{n} × {t}" for t, n in plan.get("submit_by_type", {}).items()) or "nothing new"),
        ("submitted", str(counts.get("submitted", 0)) + _by_status(summary.get("jobs", {}))),
        ("separated", f"{counts.get('succeeded', 0)} succeeded, {counts.get('failed', 0)} failed, "
                      f"{counts.get('unknown', 0)} unknown, {counts.get('incomplete', 0)} incomplete, "
                      f"{counts.get('timed_out', 0)} timed out, {counts.get('poll_error', 0)} status unreadable"),
        ("downloaded", f"{counts.get('downloaded', 0)} jobs, {counts.get('stems_downloaded', 0)} stem files "
                       f"({counts.get('bytes_downloaded', 0) / 1e6:.1f} MB)"),
        ("quality", f"{counts.get('stems_analysed', 0)} stems analysed, {counts.get('silent_stems', 0)} silent, "
                    f"{counts.get('low_snr', 0)} separations below the SNR floor"),
        ("credits", f"{summary.get('credits_committed', 0)} committed; balance "
                    f"{summary.get('balance_before')} → {summary.get('balance_after')}"),
        ("API requests", ", ".join(f"{kind} {n}" for kind, n in summary.get("requests", {}).items())
                         + (f" ({summary['requests_per_job']} per finished job)" if summary.get("requests_per_job")
                            else "")),
        ("catalog", summary.get("catalog_path", "")),
        ("time", f"{summary.get('elapsed_s', 0):.1f} s"),
    ]
    skipped = {k: v for k, v in counts.items() if k.startswith("skip_") or k in ("deferred", "claimed_elsewhere")}
    if skipped:
        rows.append(("skipped", ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()))))
    attention = []
    if counts.get("unknown"):
        attention.append(f"{counts['unknown']} submit(s) of unknown outcome (maybe charged; --resubmit-unknown pays again)")
    if counts.get("expired"):
        attention.append(f"{counts['expired']} job(s) expired: re-separating costs {counts.get('expired_credits', 0)} "
                         "credits (--resubmit-expired)")
    for key, missing in sorted(summary.get("incomplete", {}).items()):
        attention.append(f"{key} incomplete, missing {', '.join(missing)} (the next run re-reads it for free)")
    for state, cost in sorted(plan.get("skipped_cost", {}).items()):
        attention.append(f"skipped {state}: re-separating costs {cost} credits (--resubmit-{state})")
    if attention:
        rows.append(("needs a decision", "\n".join(attention)))
    if summary.get("stop_reason"):
        rows.append(("stopped submitting", summary["stop_reason"]))
    if summary.get("error"):
        rows.append(("error", summary["error"]))
    rows.append(("exit status", str(summary.get("exit_code"))))
    for what, value in rows:
        table.add_row(what, value)
    return table
