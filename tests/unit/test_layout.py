"""The package's shape: one import name, defaults written once, the CLI a thin edge, one set of exit codes."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from stemcat.exit_codes import ExitCode
from stemcat.flows.separate import separate_manifest
from stemcat.settings import RUN_SETTINGS, Settings
from stemcat.tasks.context import RunOptions

ROOT = Path(__file__).resolve().parents[2]

USER_PROJECT = {
    "flows/__init__.py": "MARK = 'user flows'\n",
    "tasks.py": "MARK = 'user tasks'\n",
    "catalog.py": "MARK = 'user catalog'\n",
    "check.py": textwrap.dedent("""
        import asyncio, sys
        from pathlib import Path

        from stemcat.flows.separate import run_separation
        from stemcat.sim import SimConfig, SimServer, make_tracks_manifest

        with SimServer(SimConfig(seed=3, rate_limit=None), port=0) as sim:
            manifest = make_tracks_manifest(sim, 3, Path("m.csv"), types=("separate_vocal",))
            summary = asyncio.run(run_separation(orchestrate=False, manifest=str(manifest), data_dir="data",
                                                 base_url=sim.base_url, dry_run=True))
        import flows, tasks, catalog
        assert (flows.MARK, tasks.MARK, catalog.MARK) == ("user flows", "user tasks", "user catalog")
        assert summary["exit_code"] == 0 and summary["plan"]["rows"] == 3, summary
        assert summary["plan"]["submit_by_type"] == {"separate_vocal": 3}, summary
        assert "prefect.server.api.server" not in sys.modules  # no temporary Prefect server was started
        print("ok")
    """),
}


def test_a_users_own_flows_and_tasks_modules_do_not_shadow_stemcat(tmp_path: Path) -> None:
    for name, text in USER_PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "check.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_the_distribution_claims_only_the_stemcat_name() -> None:
    dist = importlib.metadata.distribution("stemcat")
    assert (dist.read_text("top_level.txt") or "").split() == ["stemcat"]
    claimed = {name for name, dists in importlib.metadata.packages_distributions().items() if "stemcat" in dists}
    assert claimed == {"stemcat"}


def _stemcat_imports(path: Path) -> set[str]:
    """`module` or `module:name` for every stemcat import in a file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("stemcat")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stemcat"):
            found |= {f"{node.module}:{a.name}" for a in node.names}
    return found


READ_ONLY_CATALOG = {"stemcat.catalog:open_catalog", "stemcat.catalog:catalog_dir", "stemcat.catalog:ledger_path"}


def test_the_cli_reaches_only_flows_read_only_catalog_settings_and_exit_codes() -> None:
    for path in sorted((ROOT / "stemcat" / "cli").glob("*.py")):
        for name in _stemcat_imports(path):
            module = name.split(":")[0]
            allowed = (module.startswith(("stemcat.cli", "stemcat.flows")) or module in {"stemcat.settings",
                       "stemcat.exit_codes", "stemcat.catalog.reports", "stemcat.catalog.charts",
                       "stemcat.catalog.ledger.urls", "stemcat.catalog.storage"}
                       or name in READ_ONLY_CATALOG)
            assert allowed, f"{path.name} imports {name}"


def test_flows_and_tasks_never_read_the_environment_or_the_cli() -> None:
    for folder in ("flows", "tasks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in _stemcat_imports(path):
                module = name.split(":")[0]
                for edge in ("stemcat.settings", "stemcat.cli", "stemcat.entrypoints"):
                    assert module != edge and not module.startswith(edge + "."), f"{path} imports {name}"


def test_each_run_default_is_written_once_in_run_options() -> None:
    flow_parameters = inspect.signature(separate_manifest.fn).parameters
    for name in RUN_SETTINGS:
        assert flow_parameters[name].default is None, f"the flow writes a default for {name}"
        assert Settings.model_fields[name].default is None, f"settings write a default for {name}"
    resolved = RunOptions.build(data_dir="d", **{name: None for name in RUN_SETTINGS})
    assert (resolved.rate_limit, resolved.rate_window_s, resolved.concurrency, resolved.batch_size) == (20, 10.0, 4, 50)
    deployed = yaml.safe_load((ROOT / "prefect.yaml").read_text())["definitions"]["run_parameters"]
    for name, value in deployed.items():
        field = RunOptions.model_fields.get(name)
        assert field is None or field.default != value, f"prefect.yaml repeats the default {name}={value}"


def test_environment_settings_fill_only_what_the_caller_left_unset(monkeypatch) -> None:
    monkeypatch.setenv("STEMCAT_CONCURRENCY", "7")
    monkeypatch.setenv("STEMCAT_RATE_LIMIT", "12")
    filled = Settings().fill({"concurrency": None, "rate_limit": 3, "data_dir": None})
    assert filled["concurrency"] == 7 and filled["rate_limit"] == 3 and filled["data_dir"] == "stemcat-data"


def test_stemcat_concurrency_reaches_the_flow_from_the_cli(monkeypatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import stemcat.cli.app as cli

    manifest = tmp_path / "m.csv"
    manifest.write_text("task_id,audio_id\nt1,a1\n")
    seen: list[dict] = []
    monkeypatch.setattr(cli, "run_flow", lambda params, verbose=False: seen.append(params) or 0)
    monkeypatch.setenv("STEMCAT_CONCURRENCY", "7")
    runner = CliRunner()
    assert runner.invoke(cli.app, ["run", str(manifest), "--data-dir", str(tmp_path / "d")]).exit_code == 0
    assert runner.invoke(cli.app, ["run", str(manifest), "--data-dir", str(tmp_path / "d"),
                                   "--concurrency", "3"]).exit_code == 0
    assert [p["concurrency"] for p in seen] == [7, 3]


def test_exit_codes_are_the_ones_readme_documents() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("Exit status:"):].split("\n\n")[1]
    documented = {int(m.group(1)) for m in re.finditer(r"^\| (\d) \|", table, re.M)}
    assert documented == {int(code) for code in ExitCode}
    assert all(code.meaning for code in ExitCode)


def test_deployment_entry_point_takes_the_flows_parameters_and_fills_them_from_the_environment(monkeypatch) -> None:
    from stemcat import entrypoints

    assert entrypoints.separate_manifest.name == separate_manifest.name
    assert entrypoints.separate_manifest.parameters == separate_manifest.parameters
    seen: dict = {}

    async def fake(**parameters: object) -> dict:
        seen.update(parameters)
        return {}

    monkeypatch.setattr(entrypoints.separate.separate_manifest, "fn", fake)
    monkeypatch.setenv("STEMCAT_RATE_STORE", "memory")
    monkeypatch.setenv("STEMCAT_CONCURRENCY", "2")
    import asyncio

    asyncio.run(entrypoints.separate_manifest.fn(manifest="m.csv", data_dir="/d", concurrency=None, batch_size=9))
    assert (seen["rate_store"], seen["concurrency"], seen["batch_size"], seen["rate_limit"]) == ("memory", 2, 9, None)
