"""README's "Deployments" walk-through, run as written: the commands come from its fenced blocks.

One real `prefect server start` (free loopback port, temporary PREFECT_HOME, shared by the
session's deploy tests: tests/deploy/conftest.py), the work pool, `prefect deploy --all` from the
real prefect.yaml in a copy of the checkout, the simulator, a background process worker, the
README's runs (each must end Completed, the catalog must hold their rows, the inbox run must cost
no request) and one run that must end Failed.

Only the ports, the key and the working directory differ from what a reader types; the worker
polls every second instead of every ten (PREFECT_WORKER_QUERY_SECONDS), to keep the test short.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from stemcat.catalog import connect_catalog_file
from tests.deploy.readme_walk import ROOT, api_requests, flow_runs, readme_block

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def walkthrough(deploy_env: dict) -> Iterator[dict]:
    """Step 4 of the README: a worker, this module's only one (stopped after its tests)."""
    shell = deploy_env["shell"]
    worker, _ = shell.start(readme_block("worker", deploy_env["substitutions"]), "worker")
    try:
        yield deploy_env
    finally:
        shell.stop(worker)


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
