"""CI-sized two-worker kill test: two `stemcat run` processes share one PostgreSQL ledger and key, their
stems go to a real S3-compatible server, either is SIGKILLed six times and PostgreSQL crashes once."""

import pytest

from tests.killtest import BucketStems
from tests.killtest_workers import run_two_worker_kill_test

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(240)
def test_two_workers_on_one_postgres_ledger_survive_sigkills_and_a_ledger_crash(
    tmp_path, postgres_server, postgres_url, s3_url
):
    from prefect.settings import get_current_settings

    report = run_two_worker_kill_test(
        kills=6, tracks=6, seed=5, workdir=tmp_path, ledger=postgres_server, ledger_url=postgres_url,
        prefect_api_url=str(get_current_settings().api.url), max_seconds=180, storage_url=s3_url,
        stem_store=BucketStems(s3_url),
    )
    assert report.kills == 6 and report.shared_keys >= 2
    # The simulator's charge ledger: every pair paid for exactly once, whoever claimed it.
    assert report.keys_charged_twice == 0 and report.keys_never_charged == 0
    assert report.spend_unexplained == 0 and report.catalog_spend_off == 0
    # Every stem of every downloaded job is in the bucket, whole, matching the ledger, decodable.
    assert report.stems_bad == [] and report.stems_checked > 0 and report.missing_keys == 0
    assert report.duplicate_rows == 0 and report.dangling_rows == 0
    # The crash stopped a working run with the documented status and one line; nothing printed a traceback.
    assert report.ledger_restarts == 1 and report.runs_stopped_by_outage >= 1
    assert set(report.outage_exit_codes) == {1}
    assert report.tracebacks == []
    assert sorted(report.final_exit_codes) in ([0, 0], [0, 1], [1, 1])
    assert report.ok
