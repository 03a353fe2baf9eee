"""The latency histogram: stated error bound, exact merging, lossless encoding."""

import math
import random

import pytest

from runner.metrics.histogram import RELATIVE_ERROR, Histogram, bucket_bounds, bucket_index

QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999)


def exact_quantile(ordered: list[int], q: float) -> int:
    """Nearest-rank quantile of a sorted list: the definition the histogram follows."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@pytest.mark.parametrize("distribution", ["lognormal", "uniform", "bimodal"])
def test_quantiles_within_stated_error_on_100k_samples(distribution):
    rng = random.Random(7)
    if distribution == "lognormal":
        values = [int(rng.lognormvariate(8, 2)) for _ in range(150_000)]
    elif distribution == "uniform":
        values = [rng.randrange(0, 5_000_000) for _ in range(150_000)]
    else:
        values = [rng.randrange(200, 400) if rng.random() < 0.9 else rng.randrange(900_000, 1_100_000)
                  for _ in range(150_000)]
    histogram = Histogram.of(values)
    ordered = sorted(values)
    assert RELATIVE_ERROR < 0.01
    for q in QUANTILES:
        exact = exact_quantile(ordered, q)
        estimate = histogram.quantile(q)
        assert abs(estimate - exact) <= max(1.0, exact * RELATIVE_ERROR), (q, exact, estimate)
    assert histogram.quantile(0) == ordered[0]
    assert histogram.quantile(1) == ordered[-1]
    assert histogram.total == len(values)
    assert histogram.mean() == pytest.approx(sum(values) / len(values))


def test_merge_equals_histogram_of_union():
    rng = random.Random(11)
    a = [int(rng.expovariate(1 / 5000)) for _ in range(60_000)]
    b = [int(rng.lognormvariate(10, 1)) for _ in range(40_000)]
    merged = Histogram.of(a)
    merged.merge(Histogram.of(b))
    union = Histogram.of(a + b)
    assert merged == union
    assert merged.counts == union.counts
    for q in QUANTILES:
        assert merged.quantile(q) == union.quantile(q)


def test_merge_is_order_free_and_handles_empty():
    parts = [Histogram.of([1, 500, 70_000]), Histogram(), Histogram.of([3, 3, 9_999_999])]
    forward, backward = Histogram(), Histogram()
    for part in parts:
        forward.merge(part)
    for part in reversed(parts):
        backward.merge(part)
    assert forward == backward
    assert forward.min_us == 1 and forward.max_us == 9_999_999


def test_encoding_round_trips_exactly():
    histogram = Histogram.of(random.Random(3).randrange(0, 10**8) for _ in range(20_000))
    assert Histogram.from_dict(histogram.to_dict()) == histogram


def test_every_value_lands_in_a_bucket_that_contains_it():
    for value in [0, 1, 2, 255, 256, 257, 511, 512, 1000, 123_456, 10**9, 2**37]:
        low, high = bucket_bounds(bucket_index(value))
        assert low <= value < high
        assert (high - low) <= max(1, low / 128)


def test_values_beyond_range_are_clamped_not_lost():
    histogram = Histogram.of([10, 2**60])
    assert histogram.total == 2
    assert histogram.max_us == 2**60


def test_empty_histogram_reports_zeroes():
    assert Histogram().quantile(0.99) == 0.0
    assert Histogram().mean() == 0.0
