"""`stemcat run --storage s3://…` end to end: stems uploaded whole and verified to a real S3-compatible
server (SeaweedFS on loopback) and the catalog published there; a second host with an empty data
directory pays for, downloads and uploads nothing; `sql`, `report` and `export` on other hosts work
from the storage alone (export fetching the stems it needs, verified)."""

from __future__ import annotations

import hashlib
import json

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


def _file_requests(sim) -> int:
    """Requests the simulator's file host has answered (stem and mix downloads)."""
    return sum(count for route, count in sim.stats().requests_by_route.items() if "file" in route)


def test_stems_go_to_s3_verified_and_a_second_host_pays_and_moves_nothing(sim, tmp_path, postgres_url, s3_url,
                                                                         monkeypatch):
    from typer.testing import CliRunner

    from stemcat.cli.app import app

    manifest = make_tracks_manifest(sim, 3, tmp_path / "m.csv", types=("separate_vocal", "split_stem"))
    data_dir = tmp_path / "host-a"
    argv = ["run", str(manifest), "--data-dir", str(data_dir), "--base-url", sim.base_url, "--ledger-url",
            postgres_url, "--storage", s3_url, *FAST_OPTIONS]
    runner = CliRunner()
    # A storage this host cannot write to stops the run before anything is paid for.
    with monkeypatch.context() as wrong:
        wrong.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        refused = runner.invoke(app, argv)
    assert refused.exit_code == 2 and "cannot be written" in refused.output, refused.output
    assert sim.ledger() == [] and "not-the-secret" not in refused.output

    first = runner.invoke(app, [*argv, "--no-analyze"])  # the analysis is left to host B
    assert first.exit_code == 0, first.output
    charged = sum(charge.credits for charge in sim.ledger())

    stored = _stored(s3_url)
    with Ledger.open(data_dir, postgres_url) as led:
        stems = [stem for job in led.jobs_by_status(["downloaded"]) for stem in led.stems_for_job(job.job_id)]
    assert len({stem.job_id for stem in stems}) == 3 and all(stem.status == "downloaded" for stem in stems)
    for stem in stems:  # every stem in the bucket, its bytes and its metadata matching the ledger
        assert stored[stem.path] == (stem.bytes, stem.sha256, stem.sha256), stem.path
        assert (data_dir / stem.path).is_file()  # the worker's local cache, for the analysis

    # Host B: its own, empty data directory; the same ledger and storage. It pays nothing, downloads
    # nothing from the API (so uploads nothing), and analyses from copies fetched from the storage.
    files_before = _file_requests(sim)
    other = tmp_path / "host-b"
    again = runner.invoke(app, [*argv[:2], "--data-dir", str(other), *argv[4:]])
    assert again.exit_code == 0, again.output
    assert sum(charge.credits for charge in sim.ledger()) == charged
    # Its only file requests are the songs' mixes, which the analysis compares the stems with.
    assert _file_requests(sim) == files_before + len({stem.audio_id for stem in stems})
    stems_stored = {key: value for key, value in stored.items() if key.startswith("stems/")}
    assert {key: value for key, value in _stored(s3_url).items() if key.startswith("stems/")} == stems_stored
    assert sorted(p.relative_to(other).as_posix() for p in other.rglob("*.mp3")
                  if p.parts[-4] == "stems") == sorted(s.path for s in stems)

    # Any host reads the catalog published there, from an empty data directory of its own.
    reader = ["--data-dir", str(tmp_path / "reader"), "--storage", s3_url]
    sql = runner.invoke(app, ["sql", "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM stems WHERE "
                              "status = 'downloaded') AS stems, (SELECT count(*) FROM jobs WHERE analyzed_at IS NOT "
                              "NULL) AS analysed", "--format", "json", *reader])
    assert sql.exit_code == 0, sql.output
    assert json.loads(sql.output) == [{"runs": 2, "stems": len(stems), "analysed": 3}]
    report = runner.invoke(app, ["report", "spend", "--by", "type", "--format", "json", *reader])
    assert report.exit_code == 0, report.output
    assert sum(row["credits"] for row in json.loads(report.output)) == charged
    assert not (tmp_path / "reader").exists()
    published = [key for key in _stored(s3_url) if key.startswith("catalog/")]
    assert "catalog/CURRENT" in published and len({key.split("/")[2] for key in published if "/versions/" in key}) == 2

    # An export on yet another host fetches the stems it needs from the storage, verified, into its data directory.
    exporter = tmp_path / "exporter"
    export = runner.invoke(app, ["export", str(tmp_path / "dataset"), "--data-dir", str(exporter), "--storage", s3_url])
    assert export.exit_code == 0, export.output
    assert sorted(p.relative_to(exporter).as_posix() for p in exporter.rglob("*.mp3")) == sorted(s.path for s in stems)
    assert len([p for p in (tmp_path / "dataset").rglob("*.mp3") if p.name != "mixture.mp3"]) == len(stems)
