"""The run summary accounts for every job the run submitted, those whose status could not be read included."""

from __future__ import annotations

from rich.console import Console

from stemcat.cli.display import summary_table
from stemcat.flows.summary import RunSummary
from stemcat.tasks.separation.planning import Plan


def _summary(**fields: object) -> RunSummary:
    return RunSummary(run_id="r1", manifest="m.csv", data_dir="d", **fields)


def _rendered(summary: RunSummary) -> str:
    console = Console(width=200, record=True)
    console.print(summary_table(summary.model_dump(mode="json")))
    return console.export_text()


def test_a_job_whose_status_could_not_be_read_is_reported_and_fails_the_run() -> None:
    summary = _summary(counts={"submitted": 2, "succeeded": 1, "downloaded": 1, "poll_error": 1},
                       jobs={"downloaded": 1, "submitted": 1})
    assert summary.decide_exit_code() == 1
    text = _rendered(summary) + summary.markdown()
    assert "1 status unreadable" in text and "1 submitted" in text and "status unreadable: 1" in text


def test_a_job_left_unfinished_fails_the_run_even_when_no_counter_saw_it() -> None:
    assert _summary(counts={"submitted": 1}, jobs={"submitted": 1}).decide_exit_code() == 1
    assert _summary(counts={"submitted": 1, "downloaded": 1}, jobs={"downloaded": 1}).decide_exit_code() == 0


def test_an_incomplete_job_is_reported_with_its_missing_stems() -> None:
    summary = _summary(counts={"submitted": 1, "incomplete": 1}, jobs={"incomplete": 1},
                       incomplete={"a1/split_stem": ["drums", "fx"]})
    assert summary.decide_exit_code() == 1
    text = _rendered(summary)
    assert "1 incomplete" in text and "a1/split_stem incomplete, missing drums, fx" in text
    assert "missing drums, fx" in summary.markdown()


def _at_80(summary: RunSummary) -> str:
    console = Console(width=80, record=True)
    console.print(summary_table(summary.model_dump(mode="json")))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    return text


def test_the_summary_fits_80_columns_and_shows_no_placeholders() -> None:
    summary = _summary(counts={"submitted": 2, "succeeded": 2, "downloaded": 2, "stems_downloaded": 4,
                               "bytes_downloaded": 8_000_000}, jobs={"downloaded": 2},
                       catalog_path="/a/rather/long/data/directory/for/the/catalog/catalog.duckdb")
    text = _at_80(summary)  # no balance was read: a dash, not "None"
    assert not [word for word in ("None", "<NA>", "nan", "00:00:00") if word in text], text
    assert "4 stem files (8.0 MB)" in text and "nothing left to do" not in text


def test_a_rerun_with_nothing_left_to_do_says_so() -> None:
    plan = Plan(rows=3, keys=3, actions={"download": 3})
    summary = _summary(plan=plan, counts={"downloaded": 3}, balance_before=100, balance_after=100)
    text = _rendered(summary)
    assert "nothing left to do: every track in the manifest is already downloaded" in text
    assert "0 stem files" not in text and "None" not in _at_80(summary)
