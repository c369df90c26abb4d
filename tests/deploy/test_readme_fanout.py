"""README's "Scaling out" fan-out, run as written: two process workers on the pool, a throwaway PostgreSQL ledger.

On the session's Prefect server and simulator (tests/deploy/conftest.py), with the README's
blocks: the pool and deployments, two workers (the "one per host" block twice, on this host),
then the parent deployment over an inbox of two manifests, one of them broken. The parent must end
Failed naming the broken manifest's children, the good manifest's children must pay for each of
its tracks exactly once; after the broken manifest is fixed (new tracks plus two of the first
manifest's), the same command must end Completed and the simulator's charge ledger must show
every pair charged exactly once.

Substituted: the server's and database's URLs, the paths (manifests, data directory, storage: a
local folder), the key, and 2 shards instead of 4; the workers also get SUNO_BASE_URL (the
simulator), poll every second, and `prefect flow-run ls` a wide terminal (COLUMNS).
"""

from __future__ import annotations

import csv
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from stemcat.sim.admin import AdminClient
from stemcat.sim.manifest import make_tracks_manifest
from stemcat.tasks.shards import shard_of
from tests.deploy.readme_walk import TEST_KEY, Shell, flow_runs, readme_block
from tests.servers.postgres import PostgresServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

WORKERS = 2


@pytest.fixture(scope="module")
def cluster(deploy_env: dict, postgres_server: PostgresServer) -> Iterator[dict]:
    """The README's setup and WORKERS workers with its environment, on a fresh ledger database."""
    started = time.monotonic()
    root: Path = deploy_env["root"] / "scale"
    (root / "manifests").mkdir(parents=True)
    ledger_url = postgres_server.create_database()
    substitutions = {
        "http://prefect.internal:4200": f"http://127.0.0.1:{deploy_env['server_port']}",
        "postgresql://stemcat@db.internal:5432/stemcat": ledger_url,
        "s3://stemcat-stems/prod": str(root / "storage"),
        "/shared/manifests": str(root / "manifests"),
        "/srv/stemcat": str(root / "data"),
        "shards=4": "shards=2",
        "your-key": TEST_KEY,
    }
    # COLUMNS: the width of a wide terminal, so `prefect flow-run ls` does not cut the run names
    env = dict(deploy_env["shell"].env) | {"SUNO_BASE_URL": deploy_env["sim_url"], "COLUMNS": "200"}
    shell = Shell(deploy_env["checkout"], env, deploy_env["logs"])
    try:
        for line in readme_block("scale-setup", substitutions):
            shell.run_ok(line)
        setup_s = time.monotonic() - started
        for n in range(WORKERS):
            shell.start(readme_block("scale-worker", substitutions), f"scale-worker-{n}")
        yield {**deploy_env, "shell": shell, "root": root, "substitutions": substitutions, "started": started,
               "setup_s": setup_s}
    finally:
        shell.stop_all()
        postgres_server.drop_database(ledger_url)


def _audio_ids(manifest: Path) -> list[str]:
    with manifest.open() as handle:
        return [row["audio_id"] for row in csv.DictReader(handle)]


def _charges(sim_url: str, audio_ids: set[str]) -> Counter[str]:
    with AdminClient(sim_url) as admin:
        return Counter(charge.audio_id for charge in admin.ledger() if charge.audio_id in audio_ids)


def _run_parent(cluster: dict) -> tuple[int, dict]:
    """The README's run command; its exit status and the parent flow run it started (the newest)."""
    (line,) = [line for line in readme_block("scale-run", cluster["substitutions"]) if not line.startswith("export ")]
    for export in readme_block("scale-run", cluster["substitutions"]):
        if export.startswith("export "):
            cluster["shell"].run_ok(export)
    done = cluster["shell"].run(line)
    parents = flow_runs(cluster["api_url"], "separate-fanout")
    return done.returncode, parents[-1]


def _worker_logs(cluster: dict) -> str:
    return "\n".join((cluster["logs"] / f"scale-worker-{n}.log").read_text()[-3000:] for n in range(WORKERS))


def test_fanout_fails_naming_the_broken_children_and_a_rerun_finishes_paying_nothing_twice(cluster: dict) -> None:
    manifests, sim_url = cluster["root"] / "manifests", cluster["sim_url"]
    with AdminClient(sim_url) as admin:
        tracks = make_tracks_manifest(admin, 6, manifests / "tracks.csv", types=["separate_vocal"])
        extra = make_tracks_manifest(admin, 2, cluster["root"] / "extra.csv", types=["separate_vocal"])
    (manifests / "broken.csv").write_text("title\nno task id here\n")
    first_ids = _audio_ids(tracks)

    first_started = time.monotonic()
    code, parent = _run_parent(cluster)
    first_s = time.monotonic() - first_started
    assert code != 0, "--watch exited 0 on a fan-out with a broken manifest"
    assert parent["state"]["type"] == "FAILED", _worker_logs(cluster)
    message = parent["state"]["message"]
    assert "broken.csv-shard-1-of-2" in message and "broken.csv-shard-2-of-2" in message, message
    assert "tracks.csv-shard" not in message, message
    assert _charges(sim_url, set(first_ids)) == Counter(first_ids), "the good manifest's tracks not paid exactly once"

    children = flow_runs(cluster["api_url"], "separate-shard")
    assert len(children) == 4 and all(child["parent_task_run_id"] for child in children), "children not linked"
    watched = [cluster["shell"].run_ok(line).stdout for line in readme_block("scale-watch", cluster["substitutions"])
               if not line.startswith("export ")]
    assert "tracks.csv-shard-2-of-2" in watched[0], watched[0]  # prefect flow-run ls
    expected = Counter(shard_of(audio_id, 2) for audio_id in first_ids)
    for shard in (1, 2):  # the summary artifact holds each child's figures, read from its result
        pattern = rf"tracks\.csv-shard-{shard}-of-2 \|[^|]*\| {shard}/2 \| (\w+) \| 0 \| \d+ \| (\d+) \|"
        row = re.search(pattern, watched[1])
        assert row and row.groups() == ("COMPLETED", str(expected[shard - 1])), watched[1]

    # Fixed: two new tracks and two of the first manifest's (overlap: already paid, must not be paid again).
    rows = extra.read_text().splitlines() + tracks.read_text().splitlines()[1:3]
    (manifests / "broken.csv").write_text("\n".join(rows) + "\n")
    rerun_started = time.monotonic()
    code, rerun = _run_parent(cluster)
    rerun_s = time.monotonic() - rerun_started
    assert code == 0 and rerun["state"]["type"] == "COMPLETED", (rerun["state"], _worker_logs(cluster))
    every_id = first_ids + _audio_ids(extra)
    assert _charges(sim_url, set(every_id)) == Counter(every_id), "a pair charged twice, or not at all"
    logs = [(cluster["logs"] / f"scale-worker-{n}.log").read_text() for n in range(WORKERS)]
    took = [log.count("submitted to infrastructure") for log in logs]
    print(f"\nfan-out walk-through: {time.monotonic() - cluster['started']:.1f} s (setup {cluster['setup_s']:.1f} s, "
          f"first fan-out {first_s:.1f} s, rerun {rerun_s:.1f} s; flow runs each worker took: {took})", file=sys.stderr)
