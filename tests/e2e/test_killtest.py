"""CI-sized kill test: at least 10 SIGKILLs of `stemcat run`, then an audit against the simulator's ledger."""

import pytest

from tests.killtest import run_kill_test

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_sigkill_at_random_moments_never_pays_twice_nor_loses_a_stem(tmp_path):
    from prefect.settings import get_current_settings

    report = run_kill_test(kills=10, tracks=8, seed=3, workdir=tmp_path,
                           prefect_api_url=str(get_current_settings().api.url), max_seconds=170)
    assert report.kills >= 10
    assert report.keys_charged_twice == 0
    assert report.stems_bad == [] and report.stems_checked > 0
    assert report.duplicate_rows == 0 and report.dangling_rows == 0
    assert report.missing_keys == 0
    assert report.final_exit_code in (0, 1)
    # Every unknown left is one the simulator may have charged: reported, never resent.
    assert report.jobs >= 8
