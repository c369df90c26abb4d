"""The first poll's timing, from observed separation latencies."""

import pytest

from stemcat.tasks.separation.poll_timing import (
    CALLBACK_COLD_S,
    PROBE_INITIAL_S,
    LatencyEstimator,
    quantile,
)


def test_quantile_is_an_observed_value():
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([1.0] * 9 + [10.0], 0.9) == 1.0
    assert quantile([1.0] * 8 + [10.0] * 2, 0.9) == 10.0
    with pytest.raises(ValueError):
        quantile([], 0.9)


def test_nothing_known_means_one_probe_then_the_estimate():
    estimator = LatencyEstimator()
    assert estimator.first_poll_after("split_stem") is None
    assert estimator.claim_probe("split_stem") and not estimator.claim_probe("split_stem")
    assert estimator.retry_delay("split_stem", None, factor=1.5, max_s=60) == PROBE_INITIAL_S
    estimator.observe("split_stem", 40.0)
    assert estimator.first_poll_after("split_stem") == pytest.approx(40.0 * 1.1 + 0.05)
    assert not estimator.claim_probe("split_stem")
    assert estimator.first_poll_after("separate_vocal") is None  # types are timed apart


def test_a_probe_that_learned_nothing_lets_another_job_probe():
    estimator = LatencyEstimator()
    assert estimator.claim_probe("t")
    estimator.release_probe("t")
    assert estimator.claim_probe("t")


def test_the_estimate_covers_most_jobs_and_follows_recent_ones():
    estimator = LatencyEstimator(history=10)
    estimator.seed("t", [100.0] * 10)  # an old, slow history...
    for _ in range(10):
        estimator.observe("t", 0.5)  # ...pushed out by this run's fast separations
    assert estimator.first_poll_after("t") == pytest.approx(0.5 * 1.1 + 0.05)


def test_seeded_history_counts_until_newer_observations_replace_it():
    estimator = LatencyEstimator()
    estimator.observe("t", 2.0)
    estimator.seed("t", [1.0, 1.0, -5.0])  # negative (clock skew) values are dropped
    assert sorted(estimator._seen["t"]) == [1.0, 1.0, 2.0]


def test_a_job_found_running_is_polled_again_after_part_of_the_estimate_then_backs_off():
    estimator = LatencyEstimator()
    estimator.observe("t", 10.0)
    first = estimator.retry_delay("t", None, factor=1.5, max_s=60)
    assert first == pytest.approx((10.0 * 1.1 + 0.05) * 0.5)
    assert estimator.retry_delay("t", first, factor=1.5, max_s=60) == pytest.approx(first * 1.5)
    assert estimator.retry_delay("t", 50.0, factor=1.5, max_s=60) == 60


def test_with_callbacks_the_poll_is_a_late_fallback_and_nobody_probes():
    estimator = LatencyEstimator()
    assert estimator.first_poll_after("t", callbacks=True) == CALLBACK_COLD_S
    estimator.observe("t", 1.0)
    assert estimator.first_poll_after("t", callbacks=True) > estimator.first_poll_after("t") + 1.0
