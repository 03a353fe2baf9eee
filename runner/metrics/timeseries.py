"""Per-interval buckets of a stage: counts and latency, mergeable across processes.

A sampler reads the stage's cumulative counters once per interval and stores
the difference, so the request path pays nothing for the time series and
memory grows with the run's length in intervals, never with its requests.
Each bucket keeps its latency counts as a sparse array of (bucket index,
count) pairs so buckets from several processes merge exactly.

A stage rarely ends on an interval boundary, so its last bucket usually
covers less than the interval width. The final sample records when it was
taken (``end_s``), each bucket reports the time it covered (``span_s``), and
its ``rps`` is divided by that time, not by the full width: a stage that kept
its rate to the end must not show a drop in its last interval.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from .histogram import BUCKET_COUNT, Histogram
from .recorder import RequestStats

from .quantiles import QUANTILES as _QUANTILES


@dataclass(slots=True)
class Bucket:
    """What happened in one interval (``index`` counts intervals from the stage start)."""

    index: int
    sent: int = 0
    ok: int = 0
    failed: int = 0
    dropped: int = 0
    in_flight: int = 0  # outstanding requests at the end of the interval
    latency: array = field(default_factory=lambda: array("q"))  # index, count, index, count, ...
    end_s: float | None = None  # when a stage's last bucket was sampled (s after zero); None: the full width

    def merge(self, other: "Bucket") -> None:
        self.end_s = _later_end(self.end_s, other.end_s)
        self.sent += other.sent
        self.ok += other.ok
        self.failed += other.failed
        self.dropped += other.dropped
        self.in_flight += other.in_flight
        counts: dict[int, int] = {}
        for pairs in (self.latency, other.latency):
            for i in range(0, len(pairs), 2):
                counts[pairs[i]] = counts.get(pairs[i], 0) + pairs[i + 1]
        self.latency = _pairs(sorted(counts.items()))

    def histogram(self) -> Histogram:
        """The bucket's latencies as a histogram (min/max within the stated relative error)."""
        hist = Histogram()
        pairs = self.latency
        for i in range(0, len(pairs), 2):
            hist.counts[pairs[i]] += pairs[i + 1]
            hist.total += pairs[i + 1]
        if hist.total:
            from .histogram import bucket_bounds
            hist.min_us = bucket_bounds(pairs[0])[0]
            hist.max_us = bucket_bounds(pairs[len(pairs) - 2])[1] - 1
        return hist

    def span_s(self, interval_s: float) -> float:
        """Seconds this bucket covered: the interval width, or less (rarely more) for a stage's last one."""
        if self.end_s is None:
            return interval_s
        return max(0.0, self.end_s - self.index * interval_s)

    def to_dict(self, interval_s: float) -> dict:
        hist = self.histogram()
        completed = self.ok + self.failed
        span = self.span_s(interval_s)
        latency = {key: round(hist.quantile(q) / 1000.0, 3) for key, q in _QUANTILES}
        latency["max"] = round(hist.max_us / 1000.0, 3)
        return {
            "t": round((self.index + 1) * interval_s, 6),
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "dropped": self.dropped,
            "in_flight": self.in_flight,
            "span_s": round(span, 6),
            "rps": round(completed / span, 3) if span > 0 else 0.0,
            "latency_ms": latency,
        }


def _later_end(a: float | None, b: float | None) -> float | None:
    """The end of two merged buckets: a full bucket (None) covers any partial one, else the later end."""
    if a is None or b is None:
        return None
    return max(a, b)


def _pairs(items) -> array:
    flat = array("q")
    for index, count in items:
        flat.append(index)
        flat.append(count)
    return flat


class SeriesSampler:
    """Turns cumulative per-request stats into per-interval buckets."""

    def __init__(self) -> None:
        self.buckets: list[Bucket] = []
        self._previous = (0, 0, 0, 0)
        self._previous_counts = [0] * BUCKET_COUNT

    def sample(self, stats: list[RequestStats], started: int, end_s: float | None = None) -> None:
        """Store what happened since the previous sample as one bucket.

        The ticker samples on interval boundaries and passes no ``end_s``; the
        stage's final sample passes the seconds since the stage's zero, so the
        last, partial bucket knows how much time it covered.
        """
        ok = sum(s.ok for s in stats)
        failed = sum(s.failed for s in stats)
        dropped = sum(s.dropped for s in stats)
        counts = [0] * BUCKET_COUNT
        for part in stats:
            for index, count in enumerate(part.latency.counts):
                if count:
                    counts[index] += count
        previous = self._previous_counts
        delta = [(i, c - previous[i]) for i, c in enumerate(counts) if c != previous[i]]
        last_started, last_ok, last_failed, last_dropped = self._previous
        self.buckets.append(Bucket(
            index=len(self.buckets),
            sent=started - last_started,
            ok=ok - last_ok,
            failed=failed - last_failed,
            dropped=dropped - last_dropped,
            in_flight=started - ok - failed,
            latency=_pairs(delta),
            end_s=end_s,
        ))
        self._previous = (started, ok, failed, dropped)
        self._previous_counts = counts


def merge_series(series: list[list[Bucket]]) -> list[Bucket]:
    """Merge the buckets of several processes interval by interval."""
    merged: dict[int, Bucket] = {}
    for buckets in series:
        for bucket in buckets:
            if bucket.index in merged:
                merged[bucket.index].merge(bucket)
            else:
                copy = Bucket(bucket.index, end_s=bucket.end_s)  # a fresh copy must not claim the full width
                copy.merge(bucket)
                merged[bucket.index] = copy
    return [merged[i] for i in sorted(merged)]
