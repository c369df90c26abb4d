"""The datasheet's command line parses back, through the real CLI command, into the same options."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import typer
from typer.main import get_command

from stemcat.cli.cmd_export import export_command
from stemcat.tasks.export.datasheet import command_for
from stemcat.tasks.export.options import build_options


def _parsed_options(command: str):
    app = typer.Typer()
    app.command("export")(export_command)
    app.command("other")(lambda: None)  # two commands: typer keeps the sub-command name
    words = shlex.split(command)
    assert words[:2] == ["stemcat", "export"]
    click_group = get_command(app)
    context = click_group.make_context("stemcat", words[1:2] + words[2:])
    sub = click_group.get_command(context, "export")
    params = sub.make_context("export", words[2:]).params
    out, data_dir, storage = params.pop("out"), params.pop("data_dir"), params.pop("storage")
    params.pop("batch_size"), params.pop("verbose")
    params["audio_format"] = params["audio_format"].value
    return out, (data_dir, storage), build_options(**params)


@pytest.mark.parametrize("options", [
    build_options(),
    build_options(types=["split_stem"], stems=["vocals", "other"], rollup4=True, exclude_silent=True,
                  min_duration_s=12.5, min_snr_db=18, tags=["Jazz", "calm"], ratios="train=0.7,test=0.3",
                  audio_format="flac", sample_rate=44100, channels=1, shards=True, shard_size_mb=64),
])
def test_datasheet_command_reproduces_the_options(options, tmp_path):
    out, data_dir = tmp_path / "my dataset", tmp_path / "data"
    parsed_out, (parsed_data, storage), parsed = _parsed_options(command_for(out, data_dir, options))
    assert (Path(parsed_out), Path(parsed_data), storage) == (out, data_dir, None)
    assert parsed == options


def test_datasheet_command_names_the_storage_it_read(tmp_path):
    command = command_for(tmp_path / "out", tmp_path / "data", build_options(), "s3://bucket/stems")
    _out, (_data, storage), _options = _parsed_options(command)
    assert storage == "s3://bucket/stems"
