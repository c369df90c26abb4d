"""`stemcat report` over a known catalog: every format, parent-level options, and the PNG charts."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import matplotlib.image
import pytest
import typer
from typer.testing import CliRunner

from stemcat.catalog import JobQualityRow, StemQualityRow, TrackRow, open_catalog, write_snapshots
from stemcat.catalog.charts import HOURS_CHART, QUALITY_CHART, SPEND_CHART, write_charts
from stemcat.cli.cmd_report import report_app
from tests.catalog.catalog_sample import build_sample

app = typer.Typer()
app.add_typer(report_app, name="report")
runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report-cli")
    sample = build_sample(root)
    led = sample.ledger
    led.upsert_tracks([TrackRow(audio_id="a1", task_id="t1", tags="rock"), TrackRow(audio_id="a2", task_id="t1")])
    led.record_analysis(
        sample.job_ids["a2"],
        JobQualityRow(reconstruction_snr_db=5.0, mix_path="mixes/a2.mp3", mix_duration_s=120.0, low_snr=True),
        [StemQualityRow(stem="vocals", peak_dbfs=-2.0, rms_dbfs=-15.0, lufs=-13.0, clipped_fraction=0.0,
                        silent=False, duration_diff_s=0.0)],
    )
    write_snapshots(led, root)
    led.close()
    return root


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout  # chart paths go to stderr when the output is csv or json


def test_spend_by_week_as_json(data_dir: Path) -> None:
    rows = json.loads(_run("report", "spend", "--by", "week", "--format", "json", "--data-dir", str(data_dir)))
    assert [(r["week"][:10], r["separation_type"], r["credits"]) for r in rows] == [
        ("2025-02-24", "separate_vocal", 3), ("2025-02-24", "split_stem", 10)]


def test_options_before_the_subcommand_apply(data_dir: Path) -> None:
    out = _run("report", "--format", "csv", "--data-dir", str(data_dir), "spend", "--by", "tag")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {(r["tag"], r["separation_type"], r["credits"]) for r in rows} >= {("rock", "split_stem", "5")}


def test_expiring_usable_quality_failures(data_dir: Path) -> None:
    where = ("--data-dir", str(data_dir))
    expiring = list(csv.DictReader(io.StringIO(_run("report", "expiring", "--days", "3", "--format", "csv", *where))))
    assert [(r["audio_id"], r["stem"]) for r in expiring] == [("a5", "vocals")]
    usable = {r["separation_type"]: r for r in json.loads(_run("report", "usable", "--format", "json", *where))}
    assert usable["all"]["credits"] == 13
    tracks = json.loads(_run("report", "quality", "--low-snr", "--format", "json", *where))
    assert [(t["audio_id"], t["reconstruction_snr_db"], t["low_snr"]) for t in tracks] == [("a2", 5.0, True)]
    per_stem = json.loads(_run("report", "quality", "--format", "json", *where))
    assert {(r["separation_type"], r["stem"]) for r in per_stem} >= {("split_stem", "drums"), ("separate_vocal",
                                                                                                 "vocals")}
    table = _run("report", "failures", *where)
    assert "failures by reason" in table and "low_snr" in table


def test_overview_and_plot(data_dir: Path, tmp_path: Path) -> None:
    charts = tmp_path / "charts"
    overview = json.loads(_run("report", "--format", "json", "--data-dir", str(data_dir), "--plot", str(charts)))
    assert set(overview) == {"spend_by_type", "usable", "stems", "failures", "expiring"}
    assert sorted(p.name for p in charts.iterdir()) == sorted([HOURS_CHART, QUALITY_CHART, SPEND_CHART])
    table = _run("report", "stems", "--data-dir", str(data_dir), "--plot", str(tmp_path / "again"))
    assert "chart:" in table and (tmp_path / "again" / QUALITY_CHART).is_file()


def test_no_catalog_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "spend", "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "No catalog" in result.output


def test_charts_are_pngs_of_readable_size(data_dir: Path, tmp_path: Path) -> None:
    con = open_catalog(data_dir)
    paths = write_charts(con, tmp_path, min_snr_db=12.0)
    con.close()
    for path in paths:
        image = matplotlib.image.imread(path)
        height, width = image.shape[:2]
        assert width >= 800 and height >= 300, path
        assert image.std() > 0.05  # not a blank canvas
    assert not list(tmp_path.glob(".*.tmp"))


def test_charts_of_an_empty_catalog_say_so(tmp_path: Path) -> None:
    con = open_catalog(tmp_path)
    paths = write_charts(con, tmp_path / "charts")
    con.close()
    assert [p.name for p in paths] == [SPEND_CHART, HOURS_CHART, QUALITY_CHART]
    assert all(p.stat().st_size > 5_000 for p in paths)


def test_write_catalog_charts_defaults_to_the_data_dir(data_dir: Path) -> None:
    from stemcat.catalog.charts import write_catalog_charts

    paths = write_catalog_charts(data_dir, min_snr_db=12.0)
    assert [p.parent for p in paths] == [data_dir / "charts"] * 3 and all(p.is_file() for p in paths)


FORBIDDEN = re.compile(r"\bNone\b|<NA>|\bnan\b|\bNaT\b|00:00:00")


@pytest.mark.parametrize("args", [(), ("spend",), ("spend", "--by", "run"), ("spend", "--by", "tag"),
                                  ("quality", "--tracks"), ("expiring", "--days", "1000")])
def test_tables_fit_80_columns_and_show_no_placeholders(data_dir: Path, args: tuple[str, ...]) -> None:
    result = runner.invoke(app, ["report", *args, "--data-dir", str(data_dir)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    assert not FORBIDDEN.search(result.stdout), result.stdout
    assert "…" not in result.stdout  # nothing cut short: too many columns turn into one block per row


def test_all_time_spend_says_so(data_dir: Path) -> None:
    assert "all time" in _run("report", "--data-dir", str(data_dir))
    assert "all time" in _run("report", "spend", "--by", "type", "--data-dir", str(data_dir))
    assert "all time" not in _run("report", "spend", "--by", "day", "--data-dir", str(data_dir))
