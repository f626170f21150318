"""The scale benchmark's latency quantiles follow Prometheus' histogram_quantile."""

from __future__ import annotations

import math

import pytest

from bench.quantiles import histogram_quantile

INF = math.inf


def test_interpolates_inside_the_bucket_that_holds_the_rank() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, INF: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.1 + 0.4 * 20 / 40)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.5 + 0.5 * 9 / 10)


def test_a_rank_beyond_the_last_finite_bound_reads_that_bound() -> None:
    assert histogram_quantile(0.99, {0.1: 10.0, 1.0: 10.0, INF: 20.0}) == 1.0


def test_no_observations_is_not_a_number() -> None:
    assert math.isnan(histogram_quantile(0.5, {0.1: 0.0, INF: 0.0}))
    assert math.isnan(histogram_quantile(0.5, {}))
