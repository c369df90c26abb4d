"""The export flow: catalog in, a MUSDB-like stem dataset (and optional WebDataset shards) out.

select (one read of the catalog) → write tracks in batches (parallel, sources verified) →
write shards → write metadata.parquet and the datasheet. The export manifest
``OUT/.stemcat-export.json`` is updated after every batch and shard, here in the flow only,
so a re-run (or a run after a crash) writes just what is missing and moves nothing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.futures import as_completed
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from stemcat.catalog import catalog_dir
from stemcat.catalog.published import read_current
from stemcat.catalog.storage import Storage, StorageError, open_storage
from stemcat.flows.outcome import finish
from stemcat.tasks.export.audio import AudioTarget
from stemcat.tasks.export.datasheet import command_for
from stemcat.tasks.export.options import ExportOptions, ExportSettingsError, build_options, settings_differences
from stemcat.tasks.export.plan import OutputSpec, TrackPlan
from stemcat.tasks.export.records import Candidate
from stemcat.tasks.export.splits import SplitRequest, assign_splits
from stemcat.tasks.export.state import (
    ExportBusyError,
    ExportRun,
    ExportState,
    export_lock,
    load_state,
    missing_files,
    new_state,
    save_state,
)
from stemcat.tasks.export.steps import BatchResult, plan_shards, select_tracks, write_outputs, write_shard_task, write_tracks
from stemcat.tasks.export.summary import ExportSummary

log = logging.getLogger(__name__)

# What `export_dataset` refuses with before writing anything: bad options, another export in OUT, a
# storage with no catalog published or that cannot be read.
ExportRefused = (ExportSettingsError, ExportBusyError, StorageError)

# Audio decoding and encoding release the GIL; the machine this was sized on has 2 cores.
EXPORT_WORKERS = 2
MIB = 1024 * 1024


def export_command_line(out: str, data_dir: str, storage_url: str | None = None, **option_parameters: Any) -> str:
    """The command that reproduces an export (for the datasheet); raises ExportSettingsError on bad options."""
    return command_for(Path(out), Path(data_dir), build_options(**option_parameters), storage_url)


def open_state(out_dir: Path, options: ExportOptions) -> ExportState:
    """The directory's export manifest, or a new one; refuses settings that differ from the recorded ones."""
    state = load_state(out_dir)
    if state is None:
        return new_state(options.fingerprint())
    differences = settings_differences(state.settings, options.fingerprint())
    if differences:
        raise ExportSettingsError(
            f"{out_dir} was exported with other settings ({'; '.join(differences)}); "
            "re-run with the same options to add tracks, or export into a new directory"
        )
    return state


def _plans(
    state: ExportState, options: ExportOptions, screening_to_write: list[tuple[Candidate, tuple[OutputSpec, ...]]],
    notes: list[str],
) -> list[TrackPlan]:
    requests = [SplitRequest(c.key, c.info.task_id, c.info.pinned_split)
                for c, _ in screening_to_write if c.key not in state.tracks]
    assignment = assign_splits(requests, options.ratios, state.task_splits())
    notes.extend(assignment.notes)
    plans = []
    for candidate, outputs in screening_to_write:
        earlier = state.tracks.get(candidate.key)
        split = earlier.split if earlier is not None else assignment.splits[candidate.key]
        plans.append(TrackPlan(candidate=candidate, split=split, outputs=outputs))
    return plans


def _merge(state: ExportState, result: BatchResult, run: ExportRun, summary: ExportSummary) -> None:
    for track in result.written:
        earlier = state.tracks.get(track.key)
        if earlier is not None:
            run.rewritten += 1
            track = track.model_copy(update={"shard": earlier.shard})  # its shard already holds it
        else:
            run.added += 1
        state.add(track)
        summary.files_written += len(track.files)
        summary.bytes_written += sum(f.bytes for f in track.files)
    run.refused.extend(result.refused)


def _write_all(state: ExportState, plans: list[TrackPlan], data_dir: Path, out_dir: Path, options: ExportOptions,
               batch_size: int, run: ExportRun, summary: ExportSummary, storage: Storage | None) -> None:
    """Write the tracks in parallel batches, recording each batch as soon as it is done."""
    target = AudioTarget(options.format, options.sample_rate, options.channels)
    futures = [write_tracks.submit(plans[i:i + batch_size], data_dir, out_dir, target, storage)
               for i in range(0, len(plans), batch_size)]
    for future in as_completed(futures):
        _merge(state, future.result(), run, summary)
        save_state(out_dir, state)


def _shard_all(state: ExportState, out_dir: Path, options: ExportOptions, run: ExportRun,
               summary: ExportSummary) -> None:
    """Pack every track not yet in a shard into new shards, recording each shard as it is written."""
    for job in plan_shards(state, out_dir, int(options.shard_size_mb * MIB)):
        result = write_shard_task(job, out_dir)
        run.refused.extend(result.refused)
        if result.record is not None:
            state.mark_sharded(result.record)
            summary.shards_written += 1
            summary.shard_bytes_written += result.record.bytes
        save_state(out_dir, state)


def run_export(out_dir: Path, data_dir: Path, options: ExportOptions, batch_size: int, command: str,
               storage: Storage | None = None) -> ExportSummary:
    """The flow's body: must run inside a flow (it submits tasks)."""
    started = time.monotonic()
    if storage is not None:
        if read_current(storage) is None:
            raise ExportSettingsError(f"no catalog published in {storage.url}: run `stemcat run --storage` first")
    elif not catalog_dir(data_dir).is_dir():
        raise ExportSettingsError(f"{data_dir} holds no catalog: run `stemcat run` first, or pass --data-dir")
    summary = ExportSummary(out_dir=str(out_dir), data_dir=str(data_dir))
    with export_lock(out_dir):
        state = open_state(out_dir, options)
        redo = frozenset(key for key, track in state.tracks.items() if missing_files(out_dir, track))
        screening = select_tracks(data_dir, options, state.exported_jobs(), redo, storage)
        state.refresh(screening.refreshed)
        run = ExportRun(started_at=time.time(), command=command, excluded=dict(screening.excluded))
        state.runs.append(run)
        plans = _plans(state, options, screening.to_write, run.notes)
        _write_all(state, plans, data_dir, out_dir, options, batch_size, run, summary, storage)
        if options.shards:
            _shard_all(state, out_dir, options, run, summary)
        run.finished_at = time.time()
        save_state(out_dir, state)
        outputs = write_outputs(out_dir, data_dir, state, options, command, storage)
    for refusal in run.refused:
        log.warning("refused %s: %s", refusal.key, refusal.reason)
    return summary.model_copy(update={
        "tracks_total": len(state.tracks), "added": run.added, "rewritten": run.rewritten,
        "refused": list(run.refused), "already_exported": screening.already_exported,
        "excluded": dict(screening.excluded), "notes": list(run.notes),
        "silent_stems_left_out": screening.silent_left_out, "credits_by_type": outputs.credits_by_type,
        "metadata": str(outputs.metadata), "datasheet": str(outputs.datasheet),
        "elapsed_s": round(time.monotonic() - started, 3),
    })


@flow(name="stemcat-export", log_prints=False, retries=0,
      task_runner=ThreadPoolTaskRunner(max_workers=EXPORT_WORKERS))  # type: ignore[arg-type]
def export_dataset(
    out: str,
    data_dir: str,
    types: list[str] | None = None,
    stems: list[str] | None = None,
    min_duration_s: float = 0.0,
    exclude_silent: bool = False,
    min_snr_db: float | None = None,
    tags: list[str] | None = None,
    ratios: str = "train=0.8,valid=0.1,test=0.1",
    audio_format: str = "mp3",
    sample_rate: int | None = None,
    channels: int | None = None,
    rollup4: bool = False,
    shards: bool = False,
    shard_size_mb: float = 256.0,
    batch_size: int = 16,
    command: str | None = None,
    storage_url: str | None = None,
) -> dict[str, Any] | State:
    """Build (or extend) a stem dataset in OUT from the catalog. Returns the export summary.

    With `storage_url`, the catalog published there and its stems, fetched (verified) into `data_dir` as needed.
    """
    options = build_options(
        types=types, stems=stems, min_duration_s=min_duration_s, exclude_silent=exclude_silent,
        min_snr_db=min_snr_db, tags=tags, ratios=ratios, audio_format=audio_format, sample_rate=sample_rate,
        channels=channels, rollup4=rollup4, shards=shards, shard_size_mb=shard_size_mb,
    )
    out_dir = Path(out)
    source = Path(data_dir)
    storage = open_storage(storage_url, source)
    summary = run_export(out_dir, source, options, max(1, batch_size),
                         command or command_for(out_dir, source, options, storage_url), storage)
    result = summary.model_dump(mode="json") | {"exit_code": int(summary.exit_code)}
    return finish(result, f"{len(summary.refused)} tracks or shards refused: "
                          + "; ".join(f"{r.key}: {r.reason}" for r in summary.refused[:3]))
