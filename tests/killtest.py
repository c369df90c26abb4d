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
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.keys_charged_twice == 0 and not self.stems_bad and self.duplicate_rows == 0
                and self.dangling_rows == 0 and self.missing_keys == 0 and self.final_exit_code in (0, 1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout_s: float) -> None:
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
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_ENABLED": "false", "DO_NOT_TRACK": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                             str(port), "--no-services"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    _wait_http(f"{url}/health", 90)
    return proc, url


def _audit(report: KillReport, sim, data_dir: Path, manifest_keys: set[tuple[str, str]]) -> None:
    from stemcat.catalog import Ledger, open_catalog
    from stemcat.catalog.atomic_files import sha256_file

    charges = sim.ledger()
    per_key = Counter((c.audio_id, c.type) for c in charges)
    report.charges = len(charges)
    report.keys_charged_twice = sum(1 for n in per_key.values() if n > 1)
    con = open_catalog(data_dir)
    report.duplicate_rows = sum(con.execute(q).fetchone()[0] for q in (
        "SELECT count(*) - count(DISTINCT job_id) FROM jobs",
        "SELECT count(*) - count(DISTINCT (audio_id, separation_type, attempt)) FROM jobs",
        "SELECT count(*) - count(DISTINCT (job_id, stem)) FROM stems",
        "SELECT count(*) - count(DISTINCT audio_id) FROM tracks",
    ))
    # Intents whose taskId was learnt from the callback (the acceptance was recorded after it arrived):
    # the process had died between the paid request and storing its answer.
    report.settled_by_callback = con.execute(
        "SELECT count(*) FROM spend s JOIN (SELECT token, min(received_at) AS first_at FROM callbacks GROUP BY token) c"
        " ON c.token = s.job_id WHERE s.event = 'accepted' AND s.at > c.first_at"
    ).fetchone()[0]
    report.killed_runs_left_running = con.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
    report.dangling_rows = sum(con.execute(q).fetchone()[0] for q in (
        "SELECT count(*) FROM stems s ANTI JOIN jobs j USING (job_id)",
        "SELECT count(*) FROM jobs j ANTI JOIN tracks t USING (audio_id)",
        "SELECT count(*) FROM spend s ANTI JOIN jobs j USING (job_id)",
    ))
    ledger = Ledger(data_dir / "ledger.sqlite")
    try:
        jobs = ledger.jobs_by_status(["intent", "submitted", "succeeded", "failed", "unknown", "not_submitted",
                                      "downloaded", "expired"])
        report.jobs = len(jobs)
        unknown = [j for j in jobs if j.status == "unknown"]
        report.unknown_intents = len(unknown)
        report.unknown_but_charged = sum(1 for j in unknown if per_key[(j.audio_id, j.separation_type)])
        settled = {(j.audio_id, j.separation_type) for j in jobs if j.status in ("downloaded", "unknown", "failed")}
        report.missing_keys = len(manifest_keys - settled)
        for job in jobs:
            if job.status != "downloaded":
                continue
            for stem in ledger.stems_for_job(job.job_id):
                report.stems_checked += 1
                path = data_dir / (stem.path or "")
                try:
                    good = path.is_file() and sha256_file(path) == stem.sha256 and sf.info(path).frames > 0
                except RuntimeError:
                    good = False
                if not good:
                    report.stems_bad.append(str(stem.path))
    finally:
        ledger.close()


def run_kill_test(*, kills: int, tracks: int = 12, seed: int = 1, workdir: Path | None = None,
                  prefect_api_url: str | None = None, max_seconds: float = 3600) -> KillReport:
    from stemcat.sim import FaultSpec, SimConfig, SimServer, make_tracks_manifest

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
            keys = {(r.split(",")[1], r.split(",")[2]) for r in manifest.read_text().splitlines()[1:]}
            # Paid answers arrive late, and files slowly: kills land between charge and taskId, and mid-download.
            sim.inject(FaultSpec(route="generate", delay_s=0.4, after_accept=True, times=-1))
            sim.inject(FaultSpec(route="file", delay_s=0.05, times=-1))
            env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "SUNO_API_KEY": "kill-test",
                   "STEMCAT_DATA_DIR": str(data_dir)}
            port = _free_port()
            receiver = subprocess.Popen([sys.executable, "-m", "stemcat", "callbacks", "serve", "--port", str(port)],
                                        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_http(f"http://127.0.0.1:{port}/callback/x", 60)
            command = [sys.executable, "-m", "stemcat", "run", str(manifest), "--base-url", sim.base_url,
                       "--callback-url", f"http://127.0.0.1:{port}", "--rate-limit", "4", "--rate-window", "1",
                       "--poll-initial", "0.3", "--poll-max", "1", "--job-timeout", "60", "--batch-size", "4",
                       "--concurrency", "3"]
            moments = ("charge", "download", "catalog", "random")
            natural_s: float | None = None  # how long the last run that ended by itself took
            while time.monotonic() - started < max_seconds:
                report.runs += 1
                run_started = time.monotonic()
                child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                if report.kills < kills:
                    moment = moments[report.kills % len(moments)]
                    if moment == "charge" and len(sim.ledger()) >= len(keys):
                        moment = "download"  # everything is paid for: nothing left to interrupt there
                    if moment == "download" and _pending_jobs(data_dir) == 0 and len(sim.ledger()) >= len(keys):
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
                pending = _pending_jobs(data_dir)
                if code in (0, 1) and pending == 0 and report.kills >= kills:
                    report.final_exit_code = code
                    break
            _audit(report, sim, data_dir, keys)
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
    """Block until the child is at `moment`, or a random moment if that never comes; returns what was hit.

    charge   - the simulator just charged a submit whose answer it is still holding back
               (the child has paid but not yet stored the taskId)
    download - a stem is being streamed into its .part file
    catalog  - a Parquet snapshot or catalog.duckdb is being written (a temp file exists)
    random   - anywhere past interpreter start-up
    """
    charges_before = len(sim.ledger())
    latest = 9.0 if natural_s is None else max(2.2, 0.9 * natural_s)
    deadline = time.monotonic() + (rng.uniform(2.0, latest) if moment == "random" else max_wait_s)
    while time.monotonic() < deadline and child.poll() is None:
        if moment == "charge" and len(sim.ledger()) > charges_before:
            return moment
        if moment == "download" and any((data_dir / "stems").rglob("*.part")):
            return moment
        if moment == "catalog" and any(data_dir.glob("catalog/.*.tmp")) | any(data_dir.glob(".catalog.duckdb.*")):
            return moment
        time.sleep(0.005 if moment == "catalog" else 0.02)
    return "random"


def _pending_jobs(data_dir: Path) -> int:
    from stemcat.catalog import Ledger

    ledger = Ledger(data_dir / "ledger.sqlite")
    try:
        return len(ledger.jobs_by_status(["intent", "submitted", "succeeded"]))
    finally:
        ledger.close()


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
