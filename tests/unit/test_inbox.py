"""The inbox flow's pure parts: which files are manifests, and what it passes to the separation flow."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from stemcat.flows.inbox import InboxError, find_manifests, separate_inbox
from stemcat.flows.separate import separate_manifest


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("task_id\n")


def test_a_folder_gives_its_manifests_sorted_and_skips_the_rest(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    _touch(inbox / "b.parquet", inbox / "a.csv", inbox / "c.JSONL", inbox / ".d.csv", inbox / "e.csv.part",
           inbox / "notes.txt", inbox / "sub" / "f.csv")
    assert [p.name for p in find_manifests(inbox)] == ["a.csv", "b.parquet", "c.JSONL"]


def test_a_glob_and_a_single_file(tmp_path: Path) -> None:
    _touch(tmp_path / "in" / "x" / "2.csv", tmp_path / "in" / "y" / "1.csv", tmp_path / "in" / "y" / "1.tsv")
    assert [p.relative_to(tmp_path).as_posix() for p in find_manifests(f"{tmp_path}/in/*/*.csv")] == \
        ["in/x/2.csv", "in/y/1.csv"]
    assert find_manifests(tmp_path / "in" / "y" / "1.tsv") == [tmp_path / "in" / "y" / "1.tsv"]
    assert find_manifests(tmp_path / "in") == []  # manifests are not searched for in sub-folders


@pytest.mark.parametrize("inbox", ["missing", "missing/*.csv"])
def test_a_missing_inbox_folder_is_one_line_naming_it(tmp_path: Path, inbox: str) -> None:
    with pytest.raises(InboxError) as raised:
        find_manifests(f"{tmp_path}/{inbox}")
    message = str(raised.value)
    assert f"{tmp_path}/missing" in message and "\n" not in message


def test_every_passed_parameter_is_one_of_the_separation_flows() -> None:
    own = set(inspect.signature(separate_inbox.fn).parameters) - {"inbox"}
    theirs = set(inspect.signature(separate_manifest.fn).parameters)
    assert own <= theirs, own - theirs
