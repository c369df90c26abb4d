"""One Prefect server, the README's setup and the simulator for every README walk-through of the session.

Starting `prefect server start` is most of a walk-through's time, so the deploy tests share one:
each module starts (and stops) its own workers on the `stemcat` pool, so no module's runs land on
another module's worker.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.readme_walk import Shell, TEST_KEY, copy_checkout, free_port, readme_block, wait_until_up


@pytest.fixture(scope="session")
def deploy_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Steps 1-3 of the README's Deployments: server, setup, simulator. Yields what the walk-throughs need."""
    started = time.monotonic()
    root = tmp_path_factory.mktemp("deploy")
    checkout, logs = root / "checkout", root / "logs"
    checkout.mkdir()
    logs.mkdir()
    copy_checkout(checkout)
    server_port, sim_port = free_port(), free_port()
    substitutions = {"4200": str(server_port), "8765": str(sim_port), "your-key": TEST_KEY}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SUNO_", "STEMCAT_", "AWS_"))}
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
        yield {"shell": shell, "api_url": api_url, "sim_url": sim_url, "checkout": checkout, "logs": logs,
               "root": root, "substitutions": substitutions, "started": started, "server_up_s": server_up_s,
               "server_port": server_port}
    finally:
        shell.stop_all()
        print(f"\ndeploy walk-throughs: {time.monotonic() - started:.1f} s in all", file=sys.stderr)
