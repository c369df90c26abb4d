"""prefect.yaml stays loadable: every entrypoint imports and every parameter is accepted."""

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_entrypoint_and_parameters(deployment, monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    given = dict(deployment["parameters"])
    if deployment["entrypoint"].endswith((":separate_manifest", ":separate_fanout")):
        given.setdefault("manifest", "given-at-run-time.csv")  # the on-demand deployment's `-p manifest=`
    if deployment["entrypoint"].endswith(":export_dataset"):
        given.setdefault("out", "given-at-run-time")
    accepted = flow.validate_parameters(given)
    for name, value in deployment["parameters"].items():
        assert accepted[name] == value
    assert isinstance(deployment["schedules"], list)
    if deployment["schedules"]:  # a scheduled run that finds the last one still going gives way
        assert deployment["schedules"][0]["cron"]
        assert deployment["concurrency_limit"]["collision_strategy"] == "CANCEL_NEW"
    if deployment["name"] == "separate-shard":  # a fan-out's children run side by side, on every worker
        assert "concurrency_limit" not in deployment
    else:
        assert deployment["concurrency_limit"]["limit"] == 1


def test_the_fanout_parent_starts_the_declared_child_deployment():
    by_name = {d["name"]: d for d in DEPLOYMENTS}
    flow_name, _, child = by_name["separate-fanout"]["parameters"]["deployment"].partition("/")
    assert child in by_name and by_name[child]["entrypoint"].endswith(":separate_manifest")
    assert flow_name == "stemcat-separate"
    assert by_name[child]["work_pool"] == by_name["separate-fanout"]["work_pool"]


def test_no_hidden_variables_and_no_pull_steps():
    """Nothing a worker's environment must carry but the key: no `{{ $VAR }}`, no pull steps (deploy records
    the checkout's path), and no absolute data paths that must exist beforehand."""
    text = (ROOT / "prefect.yaml").read_text()
    config = yaml.safe_load(text)
    assert "{{" not in text
    assert "pull" not in config
    for deployment in DEPLOYMENTS:
        for name in ("data_dir", "manifest", "inbox"):
            assert not str(deployment["parameters"].get(name, "")).startswith("/"), (deployment["name"], name)


def test_unknown_parameter_is_refused(monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(DEPLOYMENTS[0]["entrypoint"])
    with pytest.raises(Exception, match="not_a_param|unexpected"):
        flow.validate_parameters({**DEPLOYMENTS[0]["parameters"], "not_a_param": 1})
