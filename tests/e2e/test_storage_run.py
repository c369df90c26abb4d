"""`stemcat run --storage s3://…` end to end: stems uploaded whole and verified to a real S3-compatible
server (SeaweedFS on loopback), the catalog published there, and a second host with an empty data
directory reading it and paying for, downloading and uploading nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stemcat.catalog import Ledger
from stemcat.sim import make_tracks_manifest
from tests.e2e.test_postgres_ledger_run import FAST_OPTIONS

pytestmark = pytest.mark.e2e


def _stored(url: str) -> dict[str, tuple[int, str, str]]:
    """Every object under the URL: key -> (size, sha256 metadata, sha256 of the bytes)."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    root = url.removeprefix("s3://")
    found = {}
    for path in fs.find(root):
        head = fs.call_s3("head_object", Bucket=root.split("/")[0], Key=path.split("/", 1)[1])
        found[path[len(root) + 1:]] = (head["ContentLength"], head["Metadata"].get("sha256", ""),
                                       hashlib.sha256(fs.cat_file(path)).hexdigest())
    return found


def test_stems_go_to_s3_verified_and_a_second_host_pays_and_moves_nothing(sim, tmp_path, postgres_url, s3_url):
    from typer.testing import CliRunner

    from stemcat.cli.app import app

    manifest = make_tracks_manifest(sim, 4, tmp_path / "m.csv", types=("separate_vocal", "split_stem"))
    data_dir = tmp_path / "host-a"
    argv = ["run", str(manifest), "--data-dir", str(data_dir), "--base-url", sim.base_url, "--ledger-url",
            postgres_url, "--storage", s3_url, *FAST_OPTIONS]
    runner = CliRunner()
    first = runner.invoke(app, argv)
    assert first.exit_code == 0, first.output
    charged = sum(charge.credits for charge in sim.ledger())

    stored = _stored(s3_url)
    with Ledger.open(data_dir, postgres_url) as led:
        stems = [stem for job in led.jobs_by_status(["downloaded"]) for stem in led.stems_for_job(job.job_id)]
    assert len({stem.job_id for stem in stems}) == 4 and all(stem.status == "downloaded" for stem in stems)
    for stem in stems:  # every stem in the bucket, its bytes and its metadata matching the ledger
        assert stored[stem.path] == (stem.bytes, stem.sha256, stem.sha256), stem.path
        assert (data_dir / stem.path).is_file()  # the worker's local cache, for the analysis

    # Host B: its own, empty data directory; the same ledger and storage.
    other = tmp_path / "host-b"
    again = runner.invoke(app, [*argv[:2], "--data-dir", str(other), *argv[4:]])
    assert again.exit_code == 0, again.output
    assert sum(charge.credits for charge in sim.ledger()) == charged
    assert not list(other.rglob("*.mp3"))  # nothing downloaded, so nothing uploaded
    assert _stored(s3_url).keys() >= stored.keys()
