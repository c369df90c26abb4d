"""README's "Deployments" walk-through, run as written: the commands come from its fenced blocks.

One real `prefect server start` (free loopback port, temporary PREFECT_HOME) for the module, the
work pool, `prefect deploy --all` from the real prefect.yaml in a copy of the checkout, the
simulator, a background process worker, the README's runs (each must end Completed, the catalog
must hold their rows, the inbox run must cost no request) and one run that must end Failed.

Only the ports, the key and the working directory differ from what a reader types; the worker
polls every second instead of every ten (PREFECT_WORKER_QUERY_SECONDS), to keep the test short.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from stemcat.catalog import connect_catalog_file

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = r"<!-- deploy:{name} -->\n```bash\n(.*?)```"
TEST_KEY = "test-key-not-secret"
COMMAND_TIMEOUT_S = 300


def readme_block(name: str, substitutions: dict[str, str]) -> list[str]:
    """The command lines of one README block, comments dropped, ports and key substituted."""
    found = re.search(BLOCK.format(name=re.escape(name)), README.read_text(), re.S)
    assert found, f"README.md lost its <!-- deploy:{name} --> block"
    text = found.group(1)
    for old, new in substitutions.items():
        text = text.replace(old, new)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url}: exited early\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not up after {timeout_s} s\n{log.read_text()[-3000:]}")


class Shell:
    """Runs README lines the way a terminal would: `export` sets the environment, `&`-less lines run."""

    def __init__(self, cwd: Path, env: dict[str, str], logs: Path) -> None:
        self.cwd, self.env, self.logs = cwd, env, logs
        self.background: list[tuple[subprocess.Popen, IO[bytes]]] = []

    def _export(self, line: str) -> bool:
        if not line.startswith("export "):
            return False
        name, _, value = line.removeprefix("export ").partition("=")
        self.env[name] = shlex.split(value)[0] if value else ""
        return True

    def run(self, line: str) -> subprocess.CompletedProcess[str]:
        if self._export(line):
            return subprocess.CompletedProcess(line, 0, "", "")
        return subprocess.run(shlex.split(line), cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)

    def run_ok(self, line: str) -> subprocess.CompletedProcess[str]:
        done = self.run(line)
        assert done.returncode == 0, f"`{line}` exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    def start(self, block: list[str], log_name: str) -> tuple[subprocess.Popen, Path]:
        """Run a block whose last line keeps running (a server, the simulator, a worker)."""
        *setup, command = block
        for line in setup:
            self.run_ok(line)
        log = self.logs / f"{log_name}.log"
        handle = log.open("wb")
        process = subprocess.Popen(shlex.split(command), cwd=self.cwd, env=dict(self.env), stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append((process, handle))
        return process, log

    def stop_all(self) -> None:
        for process, handle in reversed(self.background):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
            handle.close()


def copy_checkout(target: Path) -> None:
    """The checkout's files (tracked and new, not ignored): what a fresh clone plus this branch holds."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def flow_runs(api_url: str, deployment: str) -> list[dict]:
    """Finished runs of one deployment (scheduled future runs left out), oldest first."""
    body = {"deployments": {"name": {"any_": [deployment]}},
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]}}},
            "sort": "EXPECTED_START_TIME_ASC"}
    response = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=30.0)
    response.raise_for_status()
    return response.json()


def api_requests(sim_url: str) -> dict[str, int]:
    stats = httpx.get(f"{sim_url}/admin/stats", timeout=10.0).json()["requests_by_route"]
    return {route: n for route, n in stats.items() if route != "admin"}


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Steps 1-4 of the README: server, setup, simulator, worker. Yields what the checks need."""
    started = time.monotonic()
    root = tmp_path_factory.mktemp("deploy")
    checkout, logs = root / "checkout", root / "logs"
    checkout.mkdir()
    logs.mkdir()
    copy_checkout(checkout)
    server_port, sim_port = free_port(), free_port()
    substitutions = {"4200": str(server_port), "8765": str(sim_port), "your-key": TEST_KEY}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SUNO_", "STEMCAT_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               PREFECT_HOME=str(root / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", PREFECT_WORKER_QUERY_SECONDS="1")
    shell = Shell(checkout, env, logs)
    try:
        server, server_log = shell.start(readme_block("server", substitutions), "server")
        api_url = f"http://127.0.0.1:{server_port}/api"
        wait_until_up(f"{api_url}/health", server, server_log)
        server_up_s = time.monotonic() - started
        for line in readme_block("setup", substitutions):
            shell.run_ok(line)
        sim, sim_log = shell.start(readme_block("simulator", substitutions), "simulator")
        sim_url = f"http://127.0.0.1:{sim_port}"
        wait_until_up(f"{sim_url}/admin/health", sim, sim_log)
        shell.start(readme_block("worker", substitutions), "worker")
        yield {"shell": shell, "api_url": api_url, "sim_url": sim_url, "checkout": checkout, "logs": logs,
               "substitutions": substitutions, "started": started, "server_up_s": server_up_s}
    finally:
        shell.stop_all()
        print(f"\ndeploy walk-through: {time.monotonic() - started:.1f} s in all", file=sys.stderr)


def test_readme_runs_complete_and_fill_the_catalog(walkthrough: dict) -> None:
    shell, api_url, sim_url = walkthrough["shell"], walkthrough["api_url"], walkthrough["sim_url"]
    requests_after: list[dict[str, int]] = []
    for line in readme_block("run", walkthrough["substitutions"]):
        try:
            shell.run_ok(line)
        except AssertionError as error:
            raise AssertionError(f"{error}\nworker log:\n{(walkthrough['logs'] / 'worker.log').read_text()[-4000:]}")
        requests_after.append(api_requests(sim_url))
    one_off = flow_runs(api_url, "separate-manifest")
    nightly = flow_runs(api_url, "nightly-stems")
    assert [r["state"]["type"] for r in one_off] == ["COMPLETED"]
    assert [r["state"]["type"] for r in nightly] == ["COMPLETED"]
    assert requests_after[-1] == requests_after[-2], "the inbox run re-read a done manifest through the API"

    data_dir = walkthrough["checkout"] / "stemcat-data"
    con = connect_catalog_file(data_dir)
    try:
        jobs = con.execute("SELECT separation_type, status FROM jobs ORDER BY ALL").fetchall()
        downloaded = con.execute("SELECT count(*) FROM stems WHERE status = 'downloaded'").fetchone()[0]
    finally:
        con.close()
    assert jobs == [("separate_vocal", "downloaded"), ("split_stem", "downloaded")]
    assert downloaded == 2 + 12
    assert not (ROOT / "stemcat-data" / "inbox" / "nightly" / "sim.csv").exists(), "the test wrote into the checkout"

    results = [shell.run_ok(line).stdout for line in readme_block("results", walkthrough["substitutions"])]
    assert "sim.csv" in results[-2] and "done" in results[-2]  # the inbox summary artifact
    assert "split_stem" in results[-1]  # stemcat report spend
    print(f"\nserver up after {walkthrough['server_up_s']:.1f} s; README runs done after "
          f"{time.monotonic() - walkthrough['started']:.1f} s", file=sys.stderr)


def test_a_run_of_a_missing_inbox_ends_failed_naming_it(walkthrough: dict) -> None:
    shell, api_url = walkthrough["shell"], walkthrough["api_url"]
    nightly = next(line for line in readme_block("run", walkthrough["substitutions"]) if "nightly-stems" in line)
    done = shell.run(f"{nightly} -p inbox=stemcat-data/inbox/missing")
    assert done.returncode != 0
    failed = [r for r in flow_runs(api_url, "nightly-stems")
              if r["parameters"].get("inbox") == "stemcat-data/inbox/missing"]
    assert [r["state"]["type"] for r in failed] == ["FAILED"]
    assert "stemcat-data/inbox/missing" in failed[0]["state"]["message"]
