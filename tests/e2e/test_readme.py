"""The README stays true: its schema section is the declared schema, and its SQL runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from stemcat.catalog import open_catalog
from stemcat.catalog.schema_doc import schema_markdown
from stemcat.sim import make_tracks_manifest

from .conftest import run_flow

README = Path(__file__).resolve().parents[2] / "README.md"
SCHEMA_BLOCK = re.compile(r"(<!-- schema:start -->\n)(.*?)(<!-- schema:end -->)", re.S)


def test_readme_schema_is_the_declared_schema():
    text = README.read_text()
    if os.environ.get("UPDATE_README") == "1":
        text = SCHEMA_BLOCK.sub(lambda m: m.group(1) + schema_markdown() + m.group(3), text)
        README.write_text(text)
    block = SCHEMA_BLOCK.search(text)
    assert block is not None
    assert block.group(2) == schema_markdown(), "regenerate with UPDATE_README=1 pytest tests/e2e/test_readme.py"


@pytest.mark.e2e
def test_every_readme_sql_example_runs(sim, tmp_path):
    manifest = make_tracks_manifest(sim, 4, tmp_path / "m.csv", types=("separate_vocal", "split_stem"))
    data_dir = tmp_path / "data"
    assert run_flow(manifest, data_dir, sim.base_url)["exit_code"] == 0
    con = open_catalog(data_dir)
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 4
    results = [con.execute(sql).fetchall() for sql in blocks]
    assert sum(r[2] for r in results[0]) == 1 * 2 + 5 * 2  # credits per day add up to what was charged
    assert results[1] == []  # ledger spend equals the balance change
    assert {r[0] for r in results[2]} >= {"vocals", "drums", "instrumental"}
