"""A mergeable log-linear latency histogram with a fixed relative error.

Why not keep samples: a million-request run would hold a million floats, and
percentiles of several workers could not be combined. Instead every value (an
integer number of microseconds) falls into one bucket of an HDR-style layout:
values below ``2 * SUB_BUCKETS`` get a bucket each (exact), and every power of
two above that is split into ``SUB_BUCKETS`` equal buckets. A bucket's width is
therefore at most ``1 / SUB_BUCKETS`` of its lower bound, and reporting the
bucket's midpoint bounds the relative error of any quantile by
``1 / (2 * SUB_BUCKETS)`` (0.39 % with 128 sub-buckets).

Two histograms with the same layout merge by adding counts, so per-worker and
per-interval histograms combine into exactly the histogram of the union.
"""

from __future__ import annotations

from typing import Iterable

SUB_BUCKET_BITS = 7
SUB_BUCKETS = 1 << SUB_BUCKET_BITS  # 128
#: Largest relative error of a reported quantile (bucket half-width / value).
RELATIVE_ERROR = 1.0 / (2 * SUB_BUCKETS)
#: Values above this many microseconds (about 76 hours) are clamped into the top bucket.
MAX_TRACKABLE_US = (1 << 38) - 1
_EXACT_LIMIT = 2 * SUB_BUCKETS  # values below this are their own bucket


def bucket_index(value_us: int) -> int:
    """Return the bucket index of a non-negative integer value in microseconds."""
    if value_us < _EXACT_LIMIT:
        return value_us if value_us > 0 else 0
    if value_us > MAX_TRACKABLE_US:
        value_us = MAX_TRACKABLE_US
    shift = value_us.bit_length() - SUB_BUCKET_BITS - 1
    return (shift << SUB_BUCKET_BITS) + (value_us >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """Return the inclusive lower and exclusive upper value of a bucket."""
    if index < _EXACT_LIMIT:
        return index, index + 1
    shift = (index >> SUB_BUCKET_BITS) - 1
    top = index - (shift << SUB_BUCKET_BITS)
    return top << shift, (top + 1) << shift


def _representative(index: int) -> float:
    low, high = bucket_bounds(index)
    return low if high - low == 1 else (low + high - 1) / 2.0


BUCKET_COUNT = bucket_index(MAX_TRACKABLE_US) + 1


class Histogram:
    """Counts of latency values (µs) in log-linear buckets.

    ``record`` is the per-request call and does one index computation and one
    list increment. Everything else (quantiles, merging, encoding) is for the
    end of a run or of an interval.
    """

    __slots__ = ("counts", "total", "sum_us", "min_us", "max_us")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * BUCKET_COUNT
        self.total = 0
        self.sum_us = 0
        self.min_us = -1
        self.max_us = 0

    def record(self, value_us: int) -> None:
        """Add one value in whole microseconds (negative values count as 0)."""
        if value_us < 0:
            value_us = 0
        if value_us < _EXACT_LIMIT:
            self.counts[value_us] += 1
        else:
            v = value_us if value_us <= MAX_TRACKABLE_US else MAX_TRACKABLE_US
            shift = v.bit_length() - SUB_BUCKET_BITS - 1
            self.counts[(shift << SUB_BUCKET_BITS) + (v >> shift)] += 1
        self.total += 1
        self.sum_us += value_us
        if value_us > self.max_us:
            self.max_us = value_us
        if value_us < self.min_us or self.min_us < 0:
            self.min_us = value_us

    def merge(self, other: "Histogram") -> None:
        """Add another histogram's counts into this one (exact, order-free)."""
        mine = self.counts
        for index, count in enumerate(other.counts):
            if count:
                mine[index] += count
        self.total += other.total
        self.sum_us += other.sum_us
        self.max_us = max(self.max_us, other.max_us)
        if other.min_us >= 0 and (self.min_us < 0 or other.min_us < self.min_us):
            self.min_us = other.min_us

    def copy(self) -> "Histogram":
        clone = Histogram()
        clone.merge(self)
        return clone

    def quantile(self, q: float) -> float:
        """Return the value (µs) at quantile ``q`` in [0, 1], within RELATIVE_ERROR.

        The rank is the nearest-rank definition (ceil(q * n), at least 1), the
        same one a sorted list of the raw samples would use. The extremes are
        exact because min and max are tracked on the side.
        """
        if self.total == 0:
            return 0.0
        if q <= 0:
            return float(self.min_us)
        if q >= 1:
            return float(self.max_us)
        rank = max(1, -int(-q * self.total // 1))  # ceil without float drift on ints
        if rank >= self.total:
            return float(self.max_us)
        seen = 0
        for index, count in enumerate(self.counts):
            if count:
                seen += count
                if seen >= rank:
                    value = _representative(index)
                    return float(min(max(value, self.min_us), self.max_us))
        return float(self.max_us)

    def mean(self) -> float:
        return self.sum_us / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        """Sparse, lossless form for JSON results: ``{"buckets": {index: count}}``."""
        return {
            "unit": "us",
            "sub_bucket_bits": SUB_BUCKET_BITS,
            "total": self.total,
            "sum": self.sum_us,
            "min": max(self.min_us, 0),
            "max": self.max_us,
            "buckets": {str(i): c for i, c in enumerate(self.counts) if c},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Histogram":
        if data.get("sub_bucket_bits") != SUB_BUCKET_BITS:
            raise ValueError("histogram layout differs; cannot merge")
        hist = cls()
        for index, count in data["buckets"].items():
            hist.counts[int(index)] = int(count)
        hist.total = int(data["total"])
        hist.sum_us = int(data["sum"])
        hist.min_us = int(data["min"]) if hist.total else -1
        hist.max_us = int(data["max"])
        return hist

    @classmethod
    def of(cls, values_us: Iterable[int]) -> "Histogram":
        hist = cls()
        for value in values_us:
            hist.record(value)
        return hist

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (self.counts, self.total, self.sum_us, self.min_us, self.max_us) == (
            other.counts, other.total, other.sum_us, other.min_us, other.max_us)

    def __repr__(self) -> str:
        return f"<Histogram n={self.total} p50={self.quantile(0.5):.0f}us max={self.max_us}us>"
