"""Interval snapshots: what a running stage has done so far, small enough to send once a second.

Every process (and every shard of a distributed run) takes one
:class:`Snapshot` per interval tick of its running stage, from counters it
keeps anyway (no work on the request path). Live views, the metrics
endpoint and ``abort_on_fail`` read snapshots rather than the process's own
objects, so they work the same for one process, ``workers: N`` processes and
shards on other hosts; :class:`LiveRun` merges the latest snapshot of each
source exactly (counts add, histograms add bucket by bucket).

A snapshot carries, per request step, cumulative counts, body bytes, check
tallies, error samples and a cumulative sparse latency histogram (so a lost
snapshot loses nothing: the next one has it all), and for the stage the
interval just ended (a time-series
:class:`~runner.metrics.timeseries.Bucket`: the last second's rate and
percentiles).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from .metrics.histogram import Histogram
from .metrics.recorder import RequestStats
from .metrics.timeseries import Bucket


def sparse(histogram: Histogram) -> array:
    """A histogram's non-empty buckets as (index, count, index, count, ...)."""
    pairs = array("q")
    for index, count in enumerate(histogram.counts):
        if count:
            pairs.append(index)
            pairs.append(count)
    return pairs


def dense(pairs: array, into: Histogram | None = None) -> Histogram:
    """Add sparse pairs into a histogram (a new one by default); min and max are the buckets' bounds."""
    from .metrics.histogram import bucket_bounds

    histogram = into if into is not None else Histogram()
    counts = histogram.counts
    for i in range(0, len(pairs), 2):
        index, count = pairs[i], pairs[i + 1]
        counts[index] += count
        histogram.total += count
        low, high = bucket_bounds(index)
        histogram.sum_us += count * ((low + high - 1) // 2)
        if histogram.min_us < 0 or low < histogram.min_us:
            histogram.min_us = low
        if high - 1 > histogram.max_us:
            histogram.max_us = high - 1
    return histogram


@dataclass(slots=True)
class StepSnapshot:
    """One request step of the stage, cumulative since the stage started."""

    ok: int = 0
    failed: int = 0
    dropped: int = 0
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    status_codes: dict[int, int] = field(default_factory=dict)
    latency: array = field(default_factory=lambda: array("q"))  # sparse pairs of the latency histogram
    latency_sum_us: int = 0  # exact sum of the latencies (the buckets alone give it within 0.39 %)
    latency_min_us: int = -1  # exact extremes (-1: no value yet)
    latency_max_us: int = 0
    # Cheap to carry and exact, so a shard lost before its final report still has them:
    bytes: int = 0
    checks: dict[str, tuple[int, int]] = field(default_factory=dict)  # check name -> (passes, fails)
    error_samples: dict[str, list[str]] = field(default_factory=dict)  # at most a few per error class

    @classmethod
    def of(cls, stats: RequestStats) -> "StepSnapshot":
        latency = stats.latency
        return cls(stats.ok, stats.failed, stats.dropped, stats.skipped, dict(stats.errors),
                   dict(stats.status_codes), sparse(latency), latency.sum_us, latency.min_us, latency.max_us,
                   stats.bytes, {name: (passes, fails) for name, (passes, fails) in stats.checks.items()},
                   {name: list(samples) for name, samples in stats.error_samples.items()})

    def stats(self) -> RequestStats:
        """Back to RequestStats (counts exact, latency within the histogram's bounds) for thresholds."""
        stats = RequestStats()
        stats.ok, stats.failed, stats.dropped, stats.skipped = self.ok, self.failed, self.dropped, self.skipped
        stats.errors = dict(self.errors)
        stats.status_codes = dict(self.status_codes)
        stats.bytes = self.bytes
        stats.checks = {name: list(tally) for name, tally in self.checks.items()}
        stats.error_samples = {name: list(samples) for name, samples in self.error_samples.items()}
        latency = dense(self.latency, stats.latency)
        latency.sum_us, latency.min_us, latency.max_us = self.latency_sum_us, self.latency_min_us, self.latency_max_us
        return stats


@dataclass(slots=True)
class Snapshot:
    """One source's running stage at one interval tick (picklable; a few KiB)."""

    source: int  # process or shard number (0 for a one-process run)
    stage: int  # the stage's index in the plan
    stage_name: str
    elapsed_s: float  # since the stage's time zero
    interval: Bucket  # the interval that just ended (the time series' newest bucket)
    steps: tuple[StepSnapshot, ...]  # indexed like plan.flow
    in_flight: int = 0
    scheduled: int = 0  # open model: arrivals due so far
    late: int = 0
    final: bool = False  # the stage's last snapshot from this source
    verdict: str = "ok"  # this source's generator verdict so far ("ok" or "saturated")

    @property
    def requests(self) -> int:
        return sum(step.ok + step.failed for step in self.steps)

    @property
    def failed(self) -> int:
        return sum(step.failed for step in self.steps)

    @property
    def dropped(self) -> int:
        return sum(step.dropped for step in self.steps)

    def errors(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for step in self.steps:
            for name, count in step.errors.items():
                total[name] = total.get(name, 0) + count
        return total


def take(source: int, stage_index: int, stage_name: str, elapsed_s: float, bucket: Bucket,
         stats: list[RequestStats], started: int, scheduled: int, late: int, final: bool = False,
         verdict: str = "ok") -> Snapshot:
    """A snapshot of a stage from its live RequestStats (once per interval; not on the request path)."""
    completed = sum(s.ok + s.failed for s in stats)
    return Snapshot(source, stage_index, stage_name, elapsed_s, bucket, tuple(StepSnapshot.of(s) for s in stats),
                    max(started - completed, 0), scheduled, late, final, verdict)


class LiveRun:
    """The latest snapshot of every source, merged per stage: what a live view or endpoint shows."""

    def __init__(self) -> None:
        self.latest: dict[tuple[int, int], Snapshot] = {}  # (stage, source) -> newest snapshot
        self.lost: set[int] = set()  # sources that stopped reporting (a lost shard)

    def add(self, snapshot: Snapshot) -> None:
        key = (snapshot.stage, snapshot.source)
        current = self.latest.get(key)
        if current is None or snapshot.final or (not current.final and snapshot.elapsed_s >= current.elapsed_s):
            self.latest[key] = snapshot

    def stages(self) -> list[int]:
        return sorted({stage for stage, _ in self.latest})

    def sources(self, stage: int) -> list[Snapshot]:
        return [snap for (index, _), snap in sorted(self.latest.items()) if index == stage]

    def steps(self, stage: int) -> list[RequestStats]:
        """Per request step of ``stage``, merged over every source."""
        merged: list[RequestStats] = []
        for snap in self.sources(stage):
            for position, step in enumerate(snap.steps):
                if position == len(merged):
                    merged.append(RequestStats())
                merged[position].merge(step.stats())
        return merged

    def last_interval(self, stage: int) -> Bucket | None:
        """Every source's newest interval of ``stage``, merged: the last second across hosts (None before any)."""
        snaps = self.sources(stage)
        if not snaps:
            return None
        merged = Bucket(max(snap.interval.index for snap in snaps))
        for snap in snaps:
            merged.merge(snap.interval)
        return merged
