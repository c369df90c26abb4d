import json
import re

import pandas as pd
import pytest

from stemcat.tasks.manifest import ManifestError, iter_manifest


def _all(path, **kw):
    rows, rejects = [], []
    for chunk in iter_manifest(path, **kw):
        rows += chunk.rows
        rejects += chunk.rejects
    return rows, rejects


def test_csv_rejects_bad_rows_with_line_numbers_and_keeps_the_rest(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "task_id,audio_id,type,title,genre\n"
        "t1,a1,split_stem,One,rock\n"       # line 2 ok
        ",a2,split_stem,Two,pop\n"          # line 3 missing task_id
        "t3,a3,karaoke,Three,pop\n"         # line 4 unknown type
        "t1,a1,split_stem,Again,rock\n"     # line 5 duplicate of 2
        "t5,../etc,split_stem,Five,pop\n"   # line 6 unsafe id
        "t6,,,Six,jazz\n"                   # line 7 no audio id, default type
    )
    rows, rejects = _all(path, default_type="separate_vocal", chunk_rows=2)
    assert [(r.line, r.task_id, r.audio_id, r.separation_type) for r in rows] == [
        (2, "t1", "a1", "split_stem"),
        (7, "t6", None, "separate_vocal"),
    ]
    assert rows[0].metadata == {"genre": "rock"} and rows[0].title == "One"
    reasons = {r.line: r.reason for r in rejects}
    assert set(reasons) == {3, 4, 5, 6}
    assert "task_id" in reasons[3] and "missing" in reasons[3]
    assert "karaoke" in reasons[4]
    assert reasons[5] == "duplicate of line 2"
    assert "safe identifier" in reasons[6]
    assert rejects[0].raw["audio_id"] == "a2"


def test_jsonl_reports_unparseable_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    lines = [json.dumps({"task_id": "t1", "audio_id": "a1", "type": "split_stem", "tags": "x"}), "{oops", "[1,2]", "",
             json.dumps({"task_id": "t2", "extra": 3})]
    path.write_text("\n".join(lines) + "\n")
    rows, rejects = _all(path, default_type="split_stem")
    assert [(r.line, r.task_id) for r in rows] == [(1, "t1"), (5, "t2")]
    assert rows[1].metadata == {"extra": 3}
    assert [(r.line, r.reason.split(" (")[0]) for r in rejects] == [(2, "not valid JSON"), (3, "not a JSON object")]


def test_parquet_rows_and_missing_type_without_default(tmp_path):
    path = tmp_path / "m.parquet"
    pd.DataFrame({"task_id": ["t1", "t2"], "audio_id": ["a1", "a2"], "type": ["split_stem", None]}).to_parquet(path)
    rows, rejects = _all(path, default_type=None)
    assert [r.audio_id for r in rows] == ["a1"]
    assert rejects[0].line == 2 and "type" in rejects[0].reason


@pytest.mark.parametrize("name,content", [("m.txt", "x"), ("m.csv", "audio_id\na1\n")])
def test_unreadable_manifest_is_a_clear_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ManifestError):
        _all(path, default_type="split_stem")


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        _all(tmp_path / "nope.csv", default_type="split_stem")


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl"])
def test_a_row_that_is_not_utf8_is_rejected_with_its_line_and_the_rest_proceed(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_bytes(b"task_id,audio_id,title\nt1,a1,ok\nt2,a2,caf\xe9\nt3,a3,fine\n")
        good, bad = [2, 4], 3
    else:
        path.write_bytes(b'{"task_id": "t1", "audio_id": "a1"}\n{"task_id": "t2", "title": "caf\xe9"}\n'
                         b'{"task_id": "t3", "audio_id": "a3"}\n')
        good, bad = [1, 3], 2
    rows, rejects = _all(path, default_type="separate_vocal")
    assert [r.line for r in rows] == good
    assert [(r.line, r.reason.split(" (")[0]) for r in rejects] == [(bad, "not valid UTF-8")]
    assert "0xe9" in rejects[0].reason


@pytest.mark.parametrize("name,content,reason", [
    ("m.csv", b"", "empty (0 bytes)"),
    ("m.csv", bytes(range(256)) * 8, "not a text file"),
    ("m.parquet", b"task_id\nt1\n", "not a Parquet file"),
])
def test_a_file_that_cannot_be_a_manifest_is_refused_before_any_row(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ManifestError, match=re.escape(reason)):
        _all(path, default_type="split_stem")
