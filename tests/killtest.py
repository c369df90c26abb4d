"""Kill test: SIGKILL `stemcat run` at random moments until it completes, then audit.

The simulator runs in this process (it must outlive the kills) and its own charge
ledger is the judge. The simulator is made slow where crashes hurt most: it charges
a submit and then waits before answering (a kill there leaves an intent whose taskId
was never stored), and it serves files slowly (kills land mid-download). A
long-lived callback receiver (`stemcat callbacks serve`) catches callbacks while no
run is alive, as a production setup would.

    python -m tests.killtest --kills 100          # the full run, prints its figures
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class KillReport:
    kills: int = 0
    kills_by_moment: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    final_exit_code: int | None = None
    charges: int = 0
    keys_charged_twice: int = 0
    jobs: int = 0
    unknown_intents: int = 0
    unknown_but_charged: int = 0
    settled_by_callback: int = 0
    killed_runs_left_running: int = 0
    stems_checked: int = 0
    stems_bad: list[str] = field(default_factory=list)
    duplicate_rows: int = 0
    dangling_rows: int = 0
    missing_keys: int = 0
    keys_never_charged: int = 0
    unknown_never_charged: int = 0
    charged_credits: int = 0
    spend_unexplained: int = 0  # the ledger's spend, less unknowns never charged, less the API's charges
    catalog_spend_off: int = 0  # |published catalog's spend - the ledger's|, summed over data directories
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.keys_charged_twice == 0 and not self.stems_bad and self.duplicate_rows == 0
                and self.dangling_rows == 0 and self.missing_keys == 0 and self.final_exit_code in (0, 1)
                and self.spend_unexplained == 0 and self.catalog_spend_off == 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout_s} s")


def start_prefect_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real Prefect server for the children (one start, instead of one temporary server per restart)."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_ENABLED": "false", "DO_NOT_TRACK": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                             str(port), "--no-services"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    wait_http(f"{url}/health", 90)
    return proc, url


def audit(report: KillReport, sim, workers: list[tuple[Path, set[tuple[str, str]]]],
          ledger_url: str | None = None, stem_store: StemStore | None = None) -> None:
    """Judge the run by the simulator's charge ledger: fills `report` from every worker's data directory.

    `workers` pairs each data directory with its manifest's (audio_id, type) keys; they share one
    ledger when `ledger_url` is a PostgreSQL URL (else each has its own ledger.sqlite). Stems are
    read through `stem_store` (default: the files under each data directory).
    """
    from stemcat.catalog import Ledger

    charges = sim.ledger()
    per_key = Counter((c.audio_id, c.type) for c in charges)
    manifest_keys = set().union(*(keys for _, keys in workers))
    report.charges = len(charges)
    report.charged_credits = sum(c.credits for c in charges)
    report.spend_unexplained = -report.charged_credits
    report.keys_charged_twice = sum(1 for n in per_key.values() if n > 1)
    report.keys_never_charged = len(manifest_keys - set(per_key))
    for data_dir, _ in workers:
        _audit_catalog(report, data_dir)
    # One shared ledger serves every worker; otherwise each data directory has its own.
    groups = [(workers[0][0], workers)] if ledger_url else [(data_dir, [(data_dir, keys)]) for data_dir, keys in workers]
    for ledger_dir, served in groups:
        ledger = Ledger.open(ledger_dir, ledger_url)
        try:
            _audit_ledger(report, ledger, per_key, served, stem_store)
            # What `stemcat report spend` shows in each data directory is what the ledger committed.
            spent = ledger.spend_total()
            for data_dir, _ in served:
                report.catalog_spend_off += abs(catalog_spend(data_dir) - spent)
        finally:
            ledger.close()


def _audit_ledger(report: KillReport, ledger, per_key: Counter, served: list[tuple[Path, set[tuple[str, str]]]],
                  stem_store: StemStore | None) -> None:
    jobs = ledger.jobs_by_status(["intent", "submitted", "succeeded", "failed", "unknown", "not_submitted",
                                  "downloaded", "expired"])
    report.jobs += len(jobs)
    unknown = [j for j in jobs if j.status == "unknown"]
    never_charged = [j for j in unknown if not per_key[(j.audio_id, j.separation_type)]]
    report.unknown_intents += len(unknown)
    report.unknown_but_charged += len(unknown) - len(never_charged)
    report.unknown_never_charged += len(never_charged)
    # The ledger counts an unknown as spent (it cannot know better); everything else it counts must
    # be exactly what the API charged.
    report.spend_unexplained += ledger.spend_total() - sum(j.credits for j in never_charged)
    settled = {(j.audio_id, j.separation_type) for j in jobs if j.status in ("downloaded", "unknown", "failed")}
    for _, keys in served:
        report.missing_keys += len(keys - settled)
    # Shared storage holds each stem once; otherwise every worker must hold the stems of every
    # downloaded job its own manifest names, in its own data directory.
    checks = ([(stem_store, set().union(*(keys for _, keys in served)), "")] if stem_store is not None
              else [(LocalStems(data_dir), keys, f"{data_dir.parent.name}:") for data_dir, keys in served])
    for store, keys, where in checks:
        for job in jobs:
            if job.status != "downloaded" or (job.audio_id, job.separation_type) not in keys:
                continue
            for stem in ledger.stems_for_job(job.job_id):
                report.stems_checked += 1
                if not store.verified(stem.path or "", stem.sha256):
                    report.stems_bad.append(f"{where}{stem.path}")


class StemStore(Protocol):
    def verified(self, path: str, sha256: str | None) -> bool:
        """Whether the stem at `path` exists, matches the ledger's checksum and decodes."""


class BucketStems:
    """Stems as objects under an ``s3://bucket/prefix`` URL (the standard AWS variables name the server)."""

    def __init__(self, url: str) -> None:
        import s3fs

        self.fs = s3fs.S3FileSystem(skip_instance_cache=True)
        self.root = url.removeprefix("s3://").rstrip("/")

    def verified(self, path: str, sha256: str | None) -> bool:
        if not path:
            return False
        bucket, _, prefix = self.root.partition("/")
        try:
            head = self.fs.call_s3("head_object", Bucket=bucket, Key=f"{prefix}/{path}" if prefix else path)
            data = self.fs.cat_file(f"{self.root}/{path}")
        except FileNotFoundError:
            return False
        with tempfile.NamedTemporaryFile(suffix=Path(path).suffix) as copy:
            copy.write(data)
            copy.flush()
            try:
                decodes = sf.info(copy.name).frames > 0
            except RuntimeError:
                decodes = False
        return (hashlib.sha256(data).hexdigest() == sha256 == head.get("Metadata", {}).get("sha256")
                and head.get("ContentLength") == len(data) and decodes)


class LocalStems:
    """Stems as files under a data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def verified(self, path: str, sha256: str | None) -> bool:
        from stemcat.catalog.atomic_files import sha256_file

        file = self.data_dir / path
        try:
            return bool(path) and file.is_file() and sha256_file(file) == sha256 and sf.info(file).frames > 0
        except RuntimeError:
            return False


def catalog_spend(data_dir: Path) -> int:
    """Credits the data directory's published catalog shows as spent."""
    from stemcat.catalog import open_catalog

    return int(open_catalog(data_dir).execute("SELECT coalesce(sum(credits), 0) FROM spend").fetchone()[0])


def _audit_catalog(report: KillReport, data_dir: Path) -> None:
    """Duplicate and dangling rows in one data directory's published catalog."""
    from stemcat.catalog import open_catalog

    con = open_catalog(data_dir)
    report.duplicate_rows += sum(con.execute(q).fetchone()[0] for q in (
        "SELECT count(*) - count(DISTINCT job_id) FROM jobs",
        "SELECT count(*) - count(DISTINCT (audio_id, separation_type, attempt)) FROM jobs",
        "SELECT count(*) - count(DISTINCT (job_id, stem)) FROM stems",
        "SELECT count(*) - count(DISTINCT audio_id) FROM tracks",
    ))
    # Intents whose taskId was learnt from the callback (the acceptance was recorded after it arrived):
    # the process had died between the paid request and storing its answer.
    report.settled_by_callback = max(report.settled_by_callback, con.execute(
        "SELECT count(*) FROM spend s JOIN (SELECT token, min(received_at) AS first_at FROM callbacks GROUP BY token) c"
        " ON c.token = s.job_id WHERE s.event = 'accepted' AND s.at > c.first_at"
    ).fetchone()[0])
    report.killed_runs_left_running = max(report.killed_runs_left_running, con.execute(
        "SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0])
    report.dangling_rows += sum(con.execute(q).fetchone()[0] for q in (
        "SELECT count(*) FROM stems s ANTI JOIN jobs j USING (job_id)",
        "SELECT count(*) FROM jobs j ANTI JOIN tracks t USING (audio_id)",
        "SELECT count(*) FROM spend s ANTI JOIN jobs j USING (job_id)",
    ))


MOMENTS = ("charge", "download", "catalog", "random")


def manifest_keys(manifest: Path) -> set[tuple[str, str]]:
    """The (audio_id, type) pairs of a CSV manifest made by `make_tracks_manifest`."""
    return {(r.split(",")[1], r.split(",")[2]) for r in manifest.read_text().splitlines()[1:]}


def slow_down_where_crashes_hurt(sim) -> None:
    """Paid answers arrive late, and files slowly: kills land between charge and taskId, and mid-download."""
    from stemcat.sim import FaultSpec

    sim.inject(FaultSpec(route="generate", delay_s=0.4, after_accept=True, times=-1))
    sim.inject(FaultSpec(route="file", delay_s=0.05, times=-1))


def start_receiver(env: dict[str, str], data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`stemcat callbacks serve` on a free port, outliving every killed run; returns it and its base URL.

    Its log is kept in `data_dir`/receiver.log (a traceback there is a finding)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(data_dir / "receiver.log", "wb") as log:
        receiver = subprocess.Popen([sys.executable, "-m", "stemcat", "callbacks", "serve", "--port", str(port),
                                     "--data-dir", str(data_dir)], env=env, cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/callback/x", 60)
    return receiver, f"http://127.0.0.1:{port}"


def run_command(manifest: Path, base_url: str, callback_base: str) -> list[str]:
    """`stemcat run` as every kill test starts it: slow submits (4 a second), quick polls, small batches."""
    return [sys.executable, "-m", "stemcat", "run", str(manifest), "--base-url", base_url,
            "--callback-url", callback_base, "--rate-limit", "4", "--rate-window", "1",
            "--poll-initial", "0.3", "--poll-max", "1", "--job-timeout", "60", "--batch-size", "4",
            "--concurrency", "3"]


def run_kill_test(*, kills: int, tracks: int = 12, seed: int = 1, workdir: Path | None = None,
                  prefect_api_url: str | None = None, max_seconds: float = 3600) -> KillReport:
    from stemcat.sim import SimConfig, SimServer, make_tracks_manifest

    rng = random.Random(seed)
    report = KillReport()
    started = time.monotonic()
    work = Path(workdir or tempfile.mkdtemp(prefix="stemcat-kill-"))
    data_dir = work / "data"
    server = None
    receiver = None
    if prefect_api_url is None:
        server, prefect_api_url = start_prefect_server(work / "prefect-home")
    config = SimConfig(seed=seed, processing_s=(0.3, 1.5), rate_limit=None)
    try:
        with SimServer(config, port=0) as sim:
            manifest = make_tracks_manifest(sim, tracks, work / "manifest.csv", types=("separate_vocal", "split_stem"))
            keys = manifest_keys(manifest)
            slow_down_where_crashes_hurt(sim)
            env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "SUNO_API_KEY": "kill-test",
                   "STEMCAT_DATA_DIR": str(data_dir)}
            receiver, callback_base = start_receiver(env, data_dir)
            command = run_command(manifest, sim.base_url, callback_base)
            natural_s: float | None = None  # how long the last run that ended by itself took
            while time.monotonic() - started < max_seconds:
                report.runs += 1
                run_started = time.monotonic()
                child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                if report.kills < kills:
                    moment = MOMENTS[report.kills % len(MOMENTS)]
                    if moment == "charge" and len(sim.ledger()) >= len(keys):
                        moment = "download"  # everything is paid for: nothing left to interrupt there
                    if moment == "download" and pending_jobs(data_dir) == 0 and len(sim.ledger()) >= len(keys):
                        moment = "catalog"  # every stem is home: reruns still write the catalog
                    hit = _wait_for_moment(moment, child, sim, data_dir, rng, natural_s)
                    if child.poll() is None:
                        child.send_signal(signal.SIGKILL)
                        child.wait()
                        report.kills += 1
                        report.kills_by_moment[hit] = report.kills_by_moment.get(hit, 0) + 1
                        continue
                else:
                    child.wait(timeout=max_seconds)
                # It ended on its own: aim random kills inside the length of such a run next time.
                natural_s = time.monotonic() - run_started
                code = child.returncode
                pending = pending_jobs(data_dir)
                if code in (0, 1) and pending == 0 and report.kills >= kills:
                    report.final_exit_code = code
                    break
            audit(report, sim, [(data_dir, keys)])
    finally:
        if receiver is not None:
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(timeout=10)
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _wait_for_moment(moment: str, child: subprocess.Popen[bytes], sim, data_dir: Path, rng: random.Random,
                     natural_s: float | None = None, max_wait_s: float = 8.0) -> str:
    """Block until the child is at `moment` (see `at_moment`), or a random moment if that never comes;
    returns what was hit. `random` is anywhere past interpreter start-up."""
    charges_before, since = len(sim.ledger()), time.time()
    latest = 9.0 if natural_s is None else max(2.2, 0.9 * natural_s)
    deadline = time.monotonic() + (rng.uniform(2.0, latest) if moment == "random" else max_wait_s)
    while time.monotonic() < deadline and child.poll() is None:
        if moment != "random" and at_moment(moment, sim, data_dir, charges_before, since):
            return moment
        time.sleep(0.005 if moment == "catalog" else 0.02)
    return "random"


def at_moment(moment: str, sim, data_dir: Path, charges_before: int, since: float = 0.0) -> bool:
    """Whether a run on `data_dir` is at `moment` now:

    charge   - the simulator charged a submit since `charges_before` and is still holding its answer
               back (the child has paid but not yet stored the taskId)
    download - a stem is being streamed into its .part file (one written since `since`, epoch
               seconds: a killed run leaves its .part files behind)
    catalog  - a Parquet snapshot or catalog.duckdb is being written (a temp file exists)
    """
    if moment == "charge":
        return len(sim.ledger()) > charges_before
    if moment == "download":
        return any(_modified_since(part, since) for part in (data_dir / "stems").rglob("*.part"))
    if moment == "catalog":
        return any(data_dir.glob("catalog/.*.tmp")) or any(data_dir.glob(".catalog.duckdb.*"))
    return False


def _modified_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except FileNotFoundError:  # renamed into place meanwhile
        return False


def pending_jobs(data_dir: Path, ledger_url: str | None = None, keys: set[tuple[str, str]] | None = None) -> int:
    """Jobs still in flight (of `keys`, when given): a later run has work left."""
    from stemcat.catalog import Ledger

    ledger = Ledger.open(data_dir, ledger_url)
    try:
        pending = ledger.jobs_by_status(["intent", "submitted", "succeeded"])
    finally:
        ledger.close()
    return sum(1 for j in pending if keys is None or (j.audio_id, j.separation_type) in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = run_kill_test(kills=args.kills, tracks=args.tracks, seed=args.seed)
    print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
