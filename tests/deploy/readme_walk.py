"""Walking README.md's deployment blocks as written: the blocks, a shell that runs them, the server's runs.

A README block is a fenced ```bash block right after an `<!-- deploy:NAME -->` comment; tests run
its lines after substituting only ports, hosts, paths and keys.
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
from pathlib import Path
from typing import IO

import httpx

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

    def stop(self, process: subprocess.Popen) -> None:
        """End one background process (and its children: a worker's flow runs) that `start` began."""
        for started, handle in list(self.background):
            if started is process:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    try:
                        process.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait(timeout=10)
                handle.close()
                self.background.remove((started, handle))

    def stop_all(self) -> None:
        for process, _ in reversed(list(self.background)):
            self.stop(process)


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


