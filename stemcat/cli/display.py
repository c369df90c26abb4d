"""Terminal rendering: a rich progress display for runs and tables for reports."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

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


MISSING = "—"  # how a missing value reads in a human table (never None, <NA>, nan or NaT)


def cell_text(value: object) -> str:
    """One value as a human reads it: missing is a dash, a duration has no '0 days 00:00:00'."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return MISSING
    if isinstance(value, pd.Timedelta):
        seconds = value.total_seconds()
        if abs(seconds) < 60:
            return f"{seconds:g} s"
        whole = int(round(seconds))
        return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    return str(value)


def _column_texts(column: pd.Series) -> list[str]:
    if pd.api.types.is_datetime64_any_dtype(column):
        present = column.dropna()
        midnight = bool(len(present)) and bool((present == present.dt.normalize()).all())
        pattern = "%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M"  # a day or week is a date; no microseconds
        return [MISSING if pd.isna(v) else v.strftime(pattern) for v in column]
    return [cell_text(v) for v in column]


def _least_width(name: str, texts: list[str]) -> int:
    """The narrowest the column can get without breaking a word (or its name) apart."""
    words = [len(word) for text in texts for word in text.split()]
    return max([len(name), *words])


def frame_table(frame: pd.DataFrame, title: str | None = None, width: int | None = None) -> Table:
    """A report as a table; one wider than ``width`` even with every word whole is shown one record per block."""
    texts = {str(name): _column_texts(frame[name]) for name in frame.columns}
    numeric = {str(name) for name in frame.columns if pd.api.types.is_numeric_dtype(frame[name])}
    least = {name: _least_width(name, column) for name, column in texts.items()}
    if width is not None and len(frame) and sum(least.values()) + 3 * len(least) + 1 > width:
        return _record_table(texts, len(frame), title)
    table = Table(title=title, show_lines=False)
    for name in texts:
        table.add_column(name, justify="right" if name in numeric else "left", min_width=least[name])
    for i in range(len(frame)):
        table.add_row(*(Text(column[i]) for column in texts.values()))  # a value's brackets are not markup
    return table


def _record_table(texts: dict[str, list[str]], rows: int, title: str | None) -> Table:
    """Too many columns for the terminal: each row becomes a block of `column  value` lines."""
    table = Table(title=title, show_header=False)
    table.add_column("column", style="bold", no_wrap=True)
    table.add_column("value")
    for i in range(rows):
        for j, (name, column) in enumerate(texts.items()):
            table.add_row(name, Text(column[i]), end_section=j == len(texts) - 1 and i < rows - 1)
    return table


def print_frame(console: Console, frame: pd.DataFrame, fmt: str, title: str | None = None) -> None:
    if fmt == "csv":
        console.out(frame.to_csv(index=False), end="")
    elif fmt == "json":
        console.out(json.dumps(json.loads(frame.to_json(orient="records", date_format="iso")), indent=2))
    else:
        console.print(frame_table(frame, title, width=console.width))


def _by_status(jobs: dict[str, int]) -> str:
    """Where every job the run claimed stands now, e.g. ` (now: 10 downloaded, 2 submitted)`."""
    return f" (now: {', '.join(f'{n} {status}' for status, n in sorted(jobs.items()))})" if jobs else ""


def _nothing_left(summary: dict[str, Any]) -> str | None:
    """The plain sentence for a rerun that found every track of the manifest already downloaded."""
    plan, counts = summary.get("plan", {}), summary.get("counts", {})
    actions = {action for action, n in plan.get("actions", {}).items() if n}
    idle = (plan.get("keys", 0) and not summary.get("dry_run") and not summary.get("error")
            and not summary.get("exit_code")
            and actions <= {"download"} and not counts.get("stems_downloaded") and not counts.get("download_failed")
            and set(summary.get("jobs", {})) <= {"downloaded"})
    return "nothing left to do: every track in the manifest is already downloaded" if idle else None


def summary_table(summary: dict[str, Any]) -> Table:
    plan = summary.get("plan", {})
    counts = summary.get("counts", {})
    table = Table(title=f"stemcat run {summary['run_id']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
        ("manifest", f"{summary['manifest']}: {plan.get('rows', 0)} valid rows, {plan.get('rejected', 0)} rejected"),
        ("rejects file", summary.get("rejects_file") or MISSING),
        ("planned", ", ".join(f"{n} × {t}" for t, n in plan.get("submit_by_type", {}).items()) or "nothing new"),
        ("submitted", str(counts.get("submitted", 0)) + _by_status(summary.get("jobs", {}))),
        ("separated", f"{counts.get('succeeded', 0)} succeeded, {counts.get('failed', 0)} failed, "
                      f"{counts.get('unknown', 0)} unknown, {counts.get('incomplete', 0)} incomplete, "
                      f"{counts.get('timed_out', 0)} timed out, {counts.get('poll_error', 0)} status unreadable"),
        ("downloaded", _nothing_left(summary) or f"{counts.get('downloaded', 0)} jobs, "
                       f"{counts.get('stems_downloaded', 0)} stem files ({counts.get('bytes_downloaded', 0) / 1e6:.1f} MB)"),
        ("quality", f"{counts.get('stems_analysed', 0)} stems analysed, {counts.get('silent_stems', 0)} silent, "
                    f"{counts.get('low_snr', 0)} separations below the SNR floor"),
        ("credits", f"{summary.get('credits_committed', 0)} committed; balance "
                    f"{cell_text(summary.get('balance_before'))} → {cell_text(summary.get('balance_after'))}"),
        ("API requests", ", ".join(f"{kind} {n}" for kind, n in summary.get("requests", {}).items())
                         + (f" ({summary['requests_per_job']} per finished job)" if summary.get("requests_per_job")
                            else "")),
        ("catalog", summary.get("catalog_path") or MISSING),
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
