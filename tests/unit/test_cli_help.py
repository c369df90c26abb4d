"""Help texts show their bracketed hints (``[env NAME]``, ``[default: …]``): rich markup must not eat them."""

from __future__ import annotations

import re

import click
import pytest
import typer
from typer.testing import CliRunner

from stemcat.cli.app import app

HINT = re.compile(r"\\?\[(env [A-Z0-9_]+|default: [^\]]+)\]")


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


COMMANDS = {" ".join(path): command for path, command in _commands(typer.main.get_command(app))}  # type: ignore[arg-type]


def _hints(command: click.Command) -> set[str]:
    texts = [getattr(param, "help", None) or "" for param in command.params]
    return {f"[{match}]" for text in texts for match in HINT.findall(text)}


def test_the_commands_that_read_the_environment_are_found():
    assert {"run", "report", "analyze", "export"} <= {name.split()[0] for name in COMMANDS}
    assert "[env STEMCAT_DATA_DIR]" in _hints(COMMANDS["run"]) and "[env SUNO_BASE_URL]" in _hints(COMMANDS["run"])


@pytest.mark.parametrize("name", sorted(name for name, command in COMMANDS.items() if _hints(command)))
def test_help_keeps_its_bracketed_hints(name: str):
    result = CliRunner().invoke(app, [*name.split(), "--help"], env={"TERMINAL_WIDTH": "250", "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for hint in _hints(COMMANDS[name]):
        assert hint in result.output, (name, hint)
    assert "\\[" not in result.output
