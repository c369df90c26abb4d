"""What one run carries between its tasks: options, the open ledger, the client, counters.

`RunContext` is deliberately a plain class (not a dataclass or model) so Prefect does
not walk into it when it inspects task inputs.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from stemcat.catalog import Ledger, LedgerWriter
from stemcat.catalog.ledger.runs import DEFAULT_RUN_LEASE_S
from stemcat.catalog.storage import Storage, StorageConfigError, check_storage_url, open_storage
from stemcat.client import SunoClient
from stemcat.client.endpoints import DEFAULT_BASE_URL
from stemcat.client.ratelimit.defaults import DEFAULT_POLL_SHARE, DEFAULT_RATE_LIMIT, DEFAULT_WINDOW_S
from stemcat.exit_codes import ExitCode
from stemcat.services.callbacks import CallbackHub
from stemcat.tasks.separation.actions import ResubmitPolicy
from stemcat.tasks.shards import Shard
from stemcat.tasks.separation.window import JobWindow


log = logging.getLogger(__name__)
MIB = 1024 * 1024


class RunOptions(BaseModel):
    """Every tunable of a separation run, resolved (the flow's parameters, minus secrets).

    The one place a run's defaults are set: the flow's parameters, the CLI's options and the
    environment leave a tunable unset (None) to mean "the default here". The key's request budget
    is the client's own (`client/ratelimit/defaults.py`, the API's documented 20 per 10 s).
    """

    data_dir: Path
    base_url: str = DEFAULT_BASE_URL
    default_type: str = "separate_vocal"
    max_credits: int | None = Field(default=None, ge=0)
    allow_partial: bool = False
    dry_run: bool = False
    resubmit_unknown: bool = False
    resubmit_failed: bool = False
    resubmit_expired: bool = False
    force: bool = False
    # A child of a fanned-out run (flows/fanout.py) keeps only its shard of the manifest (tasks/shards.py).
    shard_count: int | None = Field(default=None, ge=1, description="Shards the manifest is split into.")
    shard_index: int | None = Field(default=None, ge=0, validate_default=True,
                                    description="The shard this run keeps (0-based); None with shard_count None.")
    rate_limit: int = Field(default=DEFAULT_RATE_LIMIT, ge=1)
    rate_window_s: float = Field(default=DEFAULT_WINDOW_S, gt=0)
    concurrency: int = Field(default=4, ge=1, description="Jobs in flight, in batches: concurrency x batch_size jobs.")
    download_concurrency: int = Field(default=8, ge=1)
    batch_size: int = Field(default=50, ge=1)
    poll_initial_s: float | None = Field(default=None, gt=0, description="Fixed first poll; None: from latencies seen.")
    poll_factor: float = Field(default=1.5, ge=1.0)
    poll_max_s: float = Field(default=60.0, gt=0)
    job_timeout_s: float = Field(default=1800.0, gt=0)
    run_lease_s: float = Field(default=DEFAULT_RUN_LEASE_S, gt=0,
                               description="The run's lease in the ledger, renewed every quarter of it: how long a "
                               "crashed run's intents wait before a run on another host may reconcile them.")
    max_download_bytes: int = Field(default=200 * MIB, gt=0)
    callback_url: str | None = None
    rate_store: str | None = Field(default=None, description="Shared rate budget across runs (see tasks.limits).")
    poll_share: float = Field(default=DEFAULT_POLL_SHARE, gt=0.0, le=1.0,
                              description="Most of the key's budget polls get while submits wait.")
    analyze: bool = Field(default=True, description="Measure stem quality right after each batch downloads.")
    analysis_workers: int | None = Field(default=None, ge=1, description="Processes that decode and measure audio "
                                         "(None: one per core).")
    ledger_url: str | None = Field(default=None, exclude=True, repr=False,
                                   description="postgresql://… ledger; None: ledger.sqlite in data_dir.")
    storage_url: str | None = Field(default=None, description="Where stems (and the published catalog) are "
                                    "stored: a local path or s3://bucket/prefix; None: the data directory.")

    @field_validator("storage_url")
    @classmethod
    def _known_storage(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_storage_url(value)
        except StorageConfigError as error:
            raise ValueError(str(error)) from None

    @field_validator("shard_index")
    @classmethod
    def _shard_pair(cls, index: int | None, info: ValidationInfo) -> int | None:
        if "shard_count" not in info.data:  # shard_count itself was refused: that error is the one to report
            return index
        count = info.data["shard_count"]
        if count is None and index is not None:
            raise ValueError("needs shard_count too (give both or neither)")
        if count is not None and index is None:
            raise ValueError(f"missing: shard_count={count} needs a shard_index from 0 to {count - 1}")
        if count is not None and index is not None and index >= count:
            raise ValueError(f"must be below shard_count ({count}), got {index}")
        return index

    @property
    def shard(self) -> Shard | None:
        """The part of the manifest this run keeps; None: all of it."""
        if self.shard_count is None or self.shard_index is None:
            return None
        return Shard(index=self.shard_index, count=self.shard_count)

    @classmethod
    def build(cls, **parameters: Any) -> RunOptions:
        """Options from a flow's parameters: None means the default; `max_download_mb` is given in MiB."""
        given = {name: value for name, value in parameters.items() if value is not None}
        if "max_download_mb" in given:
            given["max_download_bytes"] = int(given.pop("max_download_mb") * MIB)
        return cls(**given)

    @property
    def policy(self) -> ResubmitPolicy:
        return ResubmitPolicy(
            unknown=self.resubmit_unknown, failed=self.resubmit_failed, expired=self.resubmit_expired, force=self.force
        )


class RunAborted(Exception):
    """The whole run must stop (401, or bad configuration); carries the CLI exit status."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Budget:
    """Credits this run may still commit: the tighter of --max-credits and what the balance allows."""

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.committed = 0

    def try_reserve(self, credits: int) -> bool:
        if self.cap is not None and self.committed + credits > self.cap:
            return False
        self.committed += credits
        return True

    def release(self, credits: int) -> None:
        self.committed -= credits


@dataclass(frozen=True)
class WorkItem:
    """One (audio_id, type) of the manifest with the action chosen for it."""

    audio_id: str
    task_id: str
    separation_type: str
    action: str
    status: str | None = None  # latest job status before this run touched it
    job_id: str | None = None


class RunContext:
    def __init__(self, *, run_id: str, options: RunOptions, ledger: Ledger, client: SunoClient,
                 secret: bytes, callback_base: str, hub: CallbackHub, writes: LedgerWriter | None = None) -> None:
        self.run_id = run_id
        self.options = options
        self.ledger = ledger
        # The hot path's ledger calls (several per track) go through the group-committing writer
        # on the event loop; bulk work (staging, planning, snapshots) uses `ledger` in a thread.
        self.writes = writes if writes is not None else LedgerWriter(ledger)
        self.client = client
        self.secret = secret
        self.callback_base = callback_base
        self.hub = hub
        self.budget = Budget(options.max_credits)
        self.counts: Counter[str] = Counter()
        self.stop_reason: str | None = None
        self.download_slots = asyncio.Semaphore(options.download_concurrency)
        self.window = JobWindow(options.concurrency * options.batch_size)
        # None: stems live in the data directory only (the one-machine default).
        self.storage: Storage | None = open_storage(options.storage_url, options.data_dir)

    def stop_submitting(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason


class RunLock:
    """Held (flock) for the life of a run, so others can tell a live run from a crashed one."""

    def __init__(self, data_dir: Path, run_id: str) -> None:
        self.path = run_lock_path(data_dir, run_id)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self.path.unlink(missing_ok=True)


def run_lock_path(data_dir: Path, run_id: str) -> Path:
    return data_dir / "locks" / f"run-{run_id}.lock"


class RunLease:
    """Renews the run's lease in the ledger while the run lives (a thread), so that any host can
    tell a live run from a crashed one (`run_is_alive` on a PostgreSQL ledger)."""

    def __init__(self, ledger: Ledger, run_id: str, lease_s: float = DEFAULT_RUN_LEASE_S) -> None:
        self.ledger, self.run_id, self.lease_s = ledger, run_id, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"run-lease-{run_id}", daemon=True)

    def __enter__(self) -> RunLease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _renew(self) -> None:
        # start_run takes the first lease; renewing a quarter of the way through survives three misses.
        while not self._stop.wait(self.lease_s / 4):
            try:
                self.ledger.renew_lease(self.run_id, self.lease_s)
            except Exception as error:  # the run goes on; a lapsed lease only makes others wait less
                log.warning("renewing the lease of run %s failed: %s", self.run_id, error)


def run_is_alive(data_dir: Path, run_id: str, ledger: Ledger | None = None) -> bool:
    """True if run `run_id` is still running.

    On a PostgreSQL ledger (several hosts) the run's lease in the ledger decides, on the
    database's clock. On SQLite (one host) the run's flock does: exact and immediate, as the
    kernel drops it the moment the process dies, where a lease would keep a crashed run's
    intents waiting until it expired.
    """
    if ledger is not None and ledger.backend.dialect == "postgres":
        return ledger.run_lease_alive(run_id)
    path = run_lock_path(data_dir, run_id)
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
