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
    accepted = flow.validate_parameters(deployment["parameters"])
    for name, value in deployment["parameters"].items():
        assert accepted[name] == value
    assert isinstance(deployment["schedules"], list) and deployment["schedules"][0]["cron"]
    assert deployment["concurrency_limit"]["collision_strategy"] == "CANCEL_NEW"


def test_unknown_parameter_is_refused(monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(DEPLOYMENTS[0]["entrypoint"])
    with pytest.raises(Exception, match="not_a_param|unexpected"):
        flow.validate_parameters({**DEPLOYMENTS[0]["parameters"], "not_a_param": 1})
