"""Quantiles of a Prometheus histogram, the way `histogram_quantile` computes them."""

from __future__ import annotations

import math


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """The q-quantile of cumulative bucket counts keyed by upper bound (`le`, +Inf included):
    linear interpolation inside the bucket that holds it; the highest finite bound when it
    falls in +Inf; NaN with no observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / (count - below) if count > below else le
        lower, below = le, count
    return lower
