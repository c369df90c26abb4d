"""Scheduled input: every manifest in an inbox folder (or glob) that still has work, one subflow each.

Manifests are taken in sorted path order. Before any API call, each one is checked against the
ledger: a manifest whose every key is downloaded (or deliberately skipped) costs no request, not
even a balance read. The rest run, one after another, as `stemcat-separate` subflows sharing the
run's credit budget. A file dropped into the inbox is picked up by the next run.
"""

from __future__ import annotations

import asyncio
import glob
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.states import Failed

from stemcat.catalog import JobStatus, Ledger
from stemcat.catalog.paths import ledger_path
from stemcat.exit_codes import ExitCode
from stemcat.flows.outcome import summary_of
from stemcat.flows.separate import separate_manifest
from stemcat.catalog.ledger.urls import chosen_ledger_url
from stemcat.tasks.context import RunAborted, RunOptions
from stemcat.tasks.manifest import ManifestError, iter_manifest
from stemcat.tasks.separation.planning import classify
from stemcat.tasks.separation.actions import ResubmitPolicy
from stemcat.tasks.tracks import stage_rows

MANIFEST_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq"})
DONE_STATUSES = frozenset({JobStatus.DOWNLOADED})
CHECK_CHUNK_ROWS = 10_000


class InboxError(Exception):
    """The inbox itself cannot be read (a missing folder, a glob under a missing folder)."""


def find_manifests(inbox: str | Path) -> list[Path]:
    """The inbox's manifest files, sorted: a folder's (not recursive), a glob's, or one file."""
    text = str(inbox)
    if glob.has_magic(text):
        parts = Path(text).parts
        fixed = parts[:next(i for i, part in enumerate(parts) if glob.has_magic(part))]
        root = Path(*fixed) if fixed else Path(".")
        if not root.is_dir():
            raise InboxError(f"inbox folder {str(root)!r} does not exist (mkdir -p {root})")
        found = [Path(p) for p in glob.glob(text)]
    else:
        path = Path(text)
        if path.is_file():
            return [path]
        if not path.is_dir():
            raise InboxError(f"inbox folder {text!r} does not exist (mkdir -p {text})")
        found = list(path.iterdir())
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
                  and not p.name.startswith("."))


async def _keys_with_work(ledger: Ledger, manifest: Path, default_type: str, policy: ResubmitPolicy) -> int:
    """How many of the manifest's keys a run would act on; -1 when only the API can tell."""
    work = 0
    for chunk in iter_manifest(manifest, default_type=default_type, chunk_rows=CHECK_CHUNK_ROWS):
        try:
            keys, _ = await stage_rows(ledger, None, chunk.rows, manifest=str(manifest), run_id="inbox-check",
                                       write=False)
        except RunAborted:  # rows naming only a task_id the ledger has not expanded yet
            return -1
        items = await asyncio.to_thread(classify, ledger, keys, policy)
        work += sum(1 for item in items if not item.action.startswith("skip_") and item.status not in DONE_STATUSES)
    return work


@task(name="inbox-work-left", cache_policy=NONE, retries=0)
async def work_left(manifest: Path, data_dir: Path, default_type: str, policy: ResubmitPolicy,
                    ledger_url: str | None = None) -> int:
    """Keys of `manifest` with work left, read from the ledger only (no API request); -1: unknown, run it."""
    if policy.force:
        return -1
    ledger_url = chosen_ledger_url(ledger_url, None)  # the edges filled it from the environment
    if ledger_url is None and not ledger_path(data_dir).exists():
        return -1
    ledger = Ledger.open(data_dir, ledger_url)
    try:
        return await _keys_with_work(ledger, manifest, default_type, policy)
    finally:
        ledger.close()


def _default_type() -> str:
    return RunOptions.model_fields["default_type"].default


def _inbox_markdown(inbox: str, rows: list[dict[str, Any]], credits: int) -> str:
    lines = [f"# stemcat inbox `{inbox}`", "", f"- manifests: {len(rows)}, credits committed: {credits}", "",
             "| manifest | outcome | run | exit | credits | note |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| `{row['manifest']}` | {row['outcome']} | {row.get('run_id') or ''} | "
                     f"{'' if row.get('exit_code') is None else row['exit_code']} | {row.get('credits_committed', 0)} | "
                     f"{(row.get('error') or '').replace('|', '/')} |")
    return "\n".join(lines)


@flow(name="stemcat-inbox", log_prints=False, retries=0)
async def separate_inbox(
    inbox: str,
    data_dir: str,
    base_url: str | None = None,
    separation_type: str | None = None,
    max_credits: int | None = None,
    allow_partial: bool | None = None,
    resubmit_unknown: bool = False,
    resubmit_failed: bool = False,
    resubmit_expired: bool = False,
    force: bool = False,
    rate_limit: int | None = None,
    rate_window_s: float | None = None,
    concurrency: int | None = None,
    download_concurrency: int | None = None,
    batch_size: int | None = None,
    poll_initial_s: float | None = None,
    poll_max_s: float | None = None,
    job_timeout_s: float | None = None,
    max_download_mb: float | None = None,
    callback_url: str | None = None,
    rate_store: str | None = None,
    poll_share: float | None = None,
    analyze: bool | None = None,
    ledger_url: str | None = None,
    storage_url: str | None = None,
) -> Any:
    """Separate every manifest of `inbox` (a folder, a glob, or one file) that has work left.

    Other parameters are `stemcat-separate`'s, passed to each subflow; unset ones keep its defaults.
    `max_credits` caps the whole run, all manifests together. Fails when any manifest's run does.
    """
    passed = {name: value for name, value in locals().items() if name != "inbox" and value is not None}
    resolved_data_dir = Path(data_dir)
    policy = ResubmitPolicy(unknown=resubmit_unknown, failed=resubmit_failed, expired=resubmit_expired, force=force)
    default_type = separation_type or _default_type()

    rows: list[dict[str, Any]] = []
    credits = 0
    for manifest in find_manifests(inbox):
        row: dict[str, Any] = {"manifest": str(manifest)}
        rows.append(row)
        try:
            left = await work_left(manifest, resolved_data_dir, default_type, policy, ledger_url)
        except ManifestError as error:
            row.update(outcome="failed", exit_code=2, error=str(error))
            continue
        if left == 0:
            row["outcome"] = "done"
            continue
        child = dict(passed)
        if max_credits is not None:
            if credits >= max_credits:
                row.update(outcome="deferred", error=f"the run's budget of {max_credits} credits is spent")
                continue
            child["max_credits"] = max_credits - credits
        state = await separate_manifest.with_options(flow_run_name=f"separate-{manifest.name}")(
            manifest=str(manifest), **child, return_state=True)
        try:  # a run that ended Failed (exit status not 0) still carries its summary
            summary = await summary_of(state)
        except Exception:  # crashed or cancelled: no summary
            row.update(outcome="failed", error=state.message or state.name)
            continue
        credits += int(summary.get("credits_committed") or 0)
        code = summary.get("exit_code")
        row.update(outcome="ran" if code == ExitCode.OK else "failed", run_id=summary.get("run_id"),
                   exit_code=code, credits_committed=summary.get("credits_committed", 0),
                   error=summary.get("error") or summary.get("stop_reason") or (ExitCode(code).meaning if code else None))

    result = {"inbox": inbox, "data_dir": str(resolved_data_dir), "credits_committed": credits, "manifests": rows}
    await create_markdown_artifact(key="stemcat-inbox-summary", markdown=_inbox_markdown(inbox, rows, credits),
                                   description="stemcat inbox run")
    problems = [r for r in rows if r["outcome"] in ("failed", "deferred")]
    if problems:
        reasons = "; ".join(f"{Path(r['manifest']).name}: {r['outcome']}"
                            + (f" (exit {r['exit_code']})" if r.get("exit_code") is not None else "")
                            + (f": {r['error']}" if r.get("error") else "") for r in problems)
        return Failed(message=f"{len(problems)} of {len(rows)} manifests not finished: {reasons}", data=result)
    return result
