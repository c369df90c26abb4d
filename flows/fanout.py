"""Fan-out: a manifest (or an inbox of manifests) split into shards, one child flow run per shard.

The parent starts each child as a run of the separation deployment (`run_deployment`, linked to
the parent as a subflow), so whichever process workers poll that deployment's work pool, on any
host, share the work. Each child keeps the manifest rows of its shard (tasks/shards.py) and
reads its environment (API key, ledger URL, data directory) on its own worker: the parent passes
on only the parameters it was given, so nothing of the parent's host is copied into the children's
parameters (which Prefect stores).

Nothing here prevents paying twice; the ledger does. Every child claims each job as a unique
ledger row before its paid request, so overlapping manifests, a parent rerun, or a child retried
by hand pay for nothing already claimed: a rerun of the parent finishes what is left.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from prefect import flow, runtime
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Failed, State
from pydantic import BaseModel

from stemcat.exit_codes import ExitCode
from stemcat.flows.inbox import InboxError, find_manifests

# The child deployment prefect.yaml declares (flow name / deployment name).
DEFAULT_CHILD_DEPLOYMENT = "stemcat-separate/separate-shard"
CHILD_POLL_S = 2.0  # how often the parent reads each child's state: one cheap API read each

log = logging.getLogger(__name__)


class ChildRun(BaseModel):
    """One child flow run as the parent saw it end; figures from its summary when the parent could read it."""

    name: str
    manifest: str
    shard: str
    flow_run_id: str | None = None
    state: str
    message: str | None = None
    exit_code: int | None = None
    downloaded: int | None = None
    submitted: int | None = None
    credits_committed: int | None = None

    @property
    def completed(self) -> bool:
        return self.state == "COMPLETED"


def split_credits(max_credits: int | None, children: int) -> list[int | None]:
    """Each child's share of the run's credit cap: spread evenly, summing to `max_credits` exactly."""
    if max_credits is None:
        return [None] * children
    share, extra = divmod(max_credits, children)
    return [share + (1 if i < extra else 0) for i in range(children)]


def child_parameters(manifests: list[Path], shards: int, passed: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(run name, parameters) of every child: each manifest times each shard, in order."""
    plans = [(manifest, index) for manifest in manifests for index in range(shards)]
    credits = split_credits(passed.get("max_credits"), len(plans))
    children = []
    for (manifest, index), cap in zip(plans, credits):
        parameters = {**passed, "manifest": str(manifest), "shard_index": index, "shard_count": shards}
        if cap is not None:
            parameters["max_credits"] = cap
        children.append((f"{manifest.name}-shard-{index + 1}-of-{shards}", parameters))
    return children


def _figure(summary: dict[str, Any], *path: str) -> int | None:
    value: Any = summary
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return int(value) if isinstance(value, (int, float)) else None


async def _summary(flow_run: FlowRun) -> dict[str, Any]:
    """The child's run summary when its result is readable from here (persisted where the parent can read it)."""
    state = flow_run.state
    if state is None:
        return {}
    try:
        result = await state.aresult(raise_on_failure=False)
    except Exception:  # no persisted result, or stored where this host cannot read: the state still tells
        return {}
    return result if isinstance(result, dict) else {}


async def _run_child(deployment: str, name: str, parameters: dict[str, Any], wait_s: float | None) -> ChildRun:
    shard = f"{parameters['shard_index'] + 1}/{parameters['shard_count']}"
    key = f"{runtime.flow_run.id}:{name}"  # a retried parent reuses its children instead of starting more
    try:
        flow_run = await run_deployment(  # type: ignore[misc]
            deployment, parameters=parameters, flow_run_name=name, timeout=wait_s, poll_interval=CHILD_POLL_S,
            idempotency_key=key, as_subflow=True)
    except ObjectNotFound:
        raise  # no such deployment: every child would fail alike, the whole fan-out is refused
    except PrefectHTTPStatusError as error:  # the server refused this child (its parameters): the others go on
        return ChildRun(name=name, manifest=parameters["manifest"], shard=shard, state="NOT_STARTED",
                        message=f"the Prefect server refused the run: {error.response.text[:300]}")
    state = flow_run.state
    summary = await _summary(flow_run)
    return ChildRun(name=name, manifest=parameters["manifest"], shard=shard, flow_run_id=str(flow_run.id),
                    state=state.type.value if state else "UNKNOWN", message=state.message if state else None,
                    exit_code=_figure(summary, "exit_code"), downloaded=_figure(summary, "counts", "downloaded"),
                    submitted=_figure(summary, "counts", "submitted"),
                    credits_committed=_figure(summary, "credits_committed"))


def _cell(value: object) -> str:
    return "—" if value is None else str(value).replace("|", "/").replace("\n", " ")


def fanout_markdown(manifest: str, deployment: str, children: list[ChildRun]) -> str:
    done = sum(1 for child in children if child.completed)
    lines = [f"# stemcat fan-out `{manifest}`", "",
             f"- child runs of `{deployment}`: {len(children)}, completed: {done}, "
             f"not completed: {len(children) - done}",
             f"- credits committed: {sum(child.credits_committed or 0 for child in children)}; "
             f"jobs downloaded: {sum(child.downloaded or 0 for child in children)} "
             "(— where a child's result is not readable from the parent's host)", "",
             "| child run | manifest | shard | state | exit | submitted | downloaded | credits | message |",
             "|---|---|---|---|---|---:|---:|---:|---|"]
    for child in children:
        lines.append(f"| {child.name} | `{child.manifest}` | {child.shard} | {child.state} | "
                     f"{_cell(child.exit_code)} | {_cell(child.submitted)} | {_cell(child.downloaded)} | "
                     f"{_cell(child.credits_committed)} | {_cell(child.message if not child.completed else None)} |")
    return "\n".join(lines)


def _refused(reason: str) -> State:
    log.error("fan-out refused: %s", reason)
    return Failed(message=reason, data={"error": reason, "exit_code": int(ExitCode.BAD_CONFIG), "children": []})


@flow(name="stemcat-fanout", log_prints=False, retries=0)
async def separate_fanout(
    manifest: str,
    shards: int = 2,
    deployment: str = DEFAULT_CHILD_DEPLOYMENT,
    wait_s: float | None = None,
    data_dir: str | None = None,
    base_url: str | None = None,
    separation_type: str | None = None,
    max_credits: int | None = None,
    allow_partial: bool | None = None,
    dry_run: bool | None = None,
    resubmit_unknown: bool | None = None,
    resubmit_failed: bool | None = None,
    resubmit_expired: bool | None = None,
    force: bool | None = None,
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
    analysis_workers: int | None = None,
    storage_url: str | None = None,
) -> dict[str, Any] | State:
    """Separate `manifest` (a file, an inbox folder or a glob) as `shards` child runs of `deployment` per manifest.

    Waits for every child (at most `wait_s` seconds each; None: however long: a child still running
    then counts as not completed, and keeps running). The other parameters
    are the child's, passed on when set; unset ones the child's worker fills from its environment.
    `max_credits` caps the whole fan-out: it is split evenly between the children. Ends Failed,
    naming them, when any child did not complete.
    """
    passed = {name: value for name, value in locals().items()
              if name not in ("manifest", "shards", "deployment", "wait_s") and value is not None}
    if shards < 1:
        return _refused(f"shards must be at least 1, got {shards}")
    if wait_s is not None and wait_s < 0:
        return _refused(f"wait_s must not be negative, got {wait_s}")
    try:
        manifests = find_manifests(manifest)
    except InboxError as error:
        return _refused(str(error))
    if not manifests:
        return _refused(f"no manifest in {manifest!r} (.csv, .tsv, .jsonl or .parquet files)")

    planned = child_parameters(manifests, shards, passed)
    log.info("fan-out: %d manifests x %d shards = %d child runs of %s", len(manifests), shards, len(planned),
             deployment)
    try:
        children = list(await asyncio.gather(*(_run_child(deployment, name, parameters, wait_s)
                                                for name, parameters in planned)))
    except ObjectNotFound:
        return _refused(f"no deployment {deployment!r} on this Prefect server (run `prefect --no-prompt deploy --all`)")

    result = {"manifest": manifest, "deployment": deployment, "shards": shards,
              "credits_committed": sum(child.credits_committed or 0 for child in children),
              "children": [child.model_dump(mode="json") for child in children]}
    await create_markdown_artifact(key="stemcat-fanout-summary", description="stemcat fan-out run",
                                   markdown=fanout_markdown(manifest, deployment, children))
    failed = [child for child in children if not child.completed]
    if failed:
        reasons = "; ".join(f"{child.name} {child.state}" + (f": {child.message}" if child.message else "")
                            for child in failed)
        result["exit_code"] = int(ExitCode.INCOMPLETE)
        return Failed(message=f"{len(failed)} of {len(children)} child runs did not complete: {reasons}", data=result)
    result["exit_code"] = int(ExitCode.OK)
    return result
