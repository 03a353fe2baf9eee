"""``--metrics-port``: the running test as Prometheus/OpenMetrics metrics, for Grafana to watch.

Why from snapshots: every process of a run (one, ``workers: N``, or shards
on other hosts) already sends one :class:`~runner.snapshots.Snapshot` per
interval tick to the client process, so the endpoint sees the whole run
without a single call on the request path. :meth:`MetricsEndpoint.snapshot`
only stores the snapshot under a lock; the metric families are built when
Prometheus scrapes, in the server's thread, from a copy taken under that
lock, so a scrape never makes the thread that sends the load wait on a
lock. It shares only the GIL: under a millisecond per (source, step) whose
snapshot changed since the last scrape (finished stages are cached).

Why a custom collector instead of prometheus_client's Counter and Histogram
objects: those are fed per observation, and the numbers here arrive as
cumulative totals per source that must be merged (counts add, histograms add
bucket by bucket). A collector that rebuilds the families on each scrape
reports exactly what the snapshots say, and the final scrape equals the
run's result.

Metrics (``stage`` is the stage's name, ``step`` a request step's name,
steps of the same name merged as the result merges them):

- ``runner_requests_total{stage,step,outcome="ok"|"failed"}``
- ``runner_errors_total{stage,step,error_class}`` (failed requests by why: reset, read_timeout, ...)
- ``runner_responses_total{stage,step,code}`` (HTTP status codes)
- ``runner_dropped_total{stage,step}``, ``runner_skipped_total{stage,step}``
- ``runner_latency_seconds{stage,step}``: a histogram (``_bucket{le}``, ``_sum``, ``_count``)
- ``runner_in_flight{stage}``, ``runner_stage_active{stage}``, ``runner_shard_up{source}``
- ``runner_run_info{scenario}``

prometheus_client is imported only by :meth:`MetricsEndpoint.start` and the
collector, so a run without ``--metrics-port`` never imports it (it is the
optional extra ``runner-loadtest[metrics]``).
"""

from __future__ import annotations

import bisect
import errno
import functools
import threading
import time
from dataclasses import dataclass, field

from .errors import UsageError, install_hint
from .metrics.histogram import BUCKET_COUNT, bucket_bounds
from .plan import Plan
from .snapshots import LiveRun, Snapshot, StepSnapshot

LOOPBACK = "127.0.0.1"  # where the endpoint listens unless --metrics-host says otherwise

#: Upper bounds (seconds) of the latency histogram's ``le`` buckets, +Inf added.
#:
#: A 1-2.5-5 series, each bound 2 to 2.5 times the one before, from 100 µs to
#: 10 s, then 30 s (the default request timeout) and 60 s. Sub-millisecond
#: bounds because loopback and LAN targets answer in well under a
#: millisecond (with 1 ms as the first bound such a run would be one bucket). 18
#: bounds keep a step at 21 series (buckets, +Inf, _sum, _count), so a
#: scenario of ten steps and three stages stays near 600 series. Prometheus'
#: ``histogram_quantile`` interpolates within a bucket, so its quantiles are
#: only as fine as these steps; the run's own result keeps the 0.39 % ones.
LE_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
              1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LE_US = tuple(round(le * 1_000_000) for le in LE_SECONDS)


@functools.cache
def _le_slots() -> tuple[tuple[int, ...], tuple[float, ...]]:
    """For every runner histogram bucket, the first ``le`` bound holding it, and its midpoint in seconds.

    A runner bucket holds the integer values ``low .. high - 1`` µs; it counts
    under the first ``le`` with ``high - 1 <= le``, that is, when every value
    it can hold is at most ``le``. So a latency above ``le`` is never counted
    under it. An ``le`` that falls inside a runner bucket (1 ms is the lower
    bound of the bucket 1000..1003 µs) leaves that whole bucket to the next
    ``le`` up: the latencies from its lower bound to ``le``, less than one
    bucket width (1/128, 0.78 %, of ``le``: the ±0.39 % around a bucket's
    midpoint) below the bound, count one bucket too high. Cumulative counts
    are therefore exact or low by that sliver, never high.

    The midpoint is what a snapshot keeps of a latency (it carries bucket
    counts, not the sum), so ``_sum`` is within 0.39 % of the true sum, as the
    run's own mean is within 0.39 % when computed from merged snapshots.
    """
    slots, middles = [], []
    for index in range(BUCKET_COUNT):
        low, high = bucket_bounds(index)
        slots.append(bisect.bisect_left(_LE_US, high - 1))  # len(_LE_US): only under +Inf
        middles.append((low + high - 1) / 2_000_000)
    return tuple(slots), tuple(middles)


@dataclass(slots=True)
class _StepTotals:
    """One step's counts from one or more sources, with latency already put into ``le`` slots."""

    ok: int = 0
    failed: int = 0
    dropped: int = 0
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    codes: dict[int, int] = field(default_factory=dict)
    slots: list[int] = field(default_factory=lambda: [0] * (len(LE_SECONDS) + 1))  # per le, not cumulative
    sum_s: float = 0.0

    @classmethod
    def of(cls, step: StepSnapshot) -> "_StepTotals":
        totals = cls(step.ok, step.failed, step.dropped, step.skipped, dict(step.errors), dict(step.status_codes))
        slot_of, middle_of = _le_slots()
        pairs, slots, total = step.latency, totals.slots, 0.0
        for i in range(0, len(pairs), 2):
            index, count = pairs[i], pairs[i + 1]
            slots[slot_of[index]] += count
            total += count * middle_of[index]
        totals.sum_s = total
        return totals

    def add(self, other: "_StepTotals") -> None:
        self.ok += other.ok
        self.failed += other.failed
        self.dropped += other.dropped
        self.skipped += other.skipped
        for name, count in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + count
        for code, count in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + count
        for slot, count in enumerate(other.slots):
            self.slots[slot] += count
        self.sum_s += other.sum_s


def _stage_labels(plan: Plan) -> list[str]:
    """The ``stage`` label of each stage: its name, numbered when two stages share one (labels must differ)."""
    names = [stage.name for stage in plan.stages]
    return [name if names.count(name) == 1 else f"{name}#{index + 1}" for index, name in enumerate(names)]


class MetricsEndpoint:
    """An HTTP endpoint serving the run's merged interval snapshots as Prometheus metrics.

    ``start()`` before the run, ``snapshot`` as the run's ``on_snapshot``
    consumer (any thread), ``stop()`` after the reports are written, so a
    last scrape can still read the final numbers.
    """

    def __init__(self, plan: Plan, port: int, host: str = LOOPBACK) -> None:
        self.plan = plan
        self.host = host
        self.port = port  # the bound port once started (useful with port 0)
        self.live = LiveRun()
        #: A source whose newest snapshot is not final and older than this is reported down (lost).
        self.stale_after_s = max(5 * plan.interval_s, 5.0)
        self._lock = threading.Lock()  # guards live and _heard; held only to store or copy
        self._heard: dict[int, tuple[float, bool]] = {}  # source -> (monotonic time, final) of its newest snapshot
        self._collect_lock = threading.Lock()  # concurrent scrapes share one cache
        self._cache: dict[tuple[int, int], tuple[Snapshot, list[_StepTotals]]] = {}
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port`` as a URL writes it (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def start(self) -> "MetricsEndpoint":
        """Listen in a daemon thread; a port that is taken (or not ours to use) is a usage error."""
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise UsageError(f"--metrics-port needs prometheus-client: {install_hint('metrics')}") from None
        registry = CollectorRegistry(auto_describe=False)  # not the global one: only this run's metrics
        registry.register(_RunCollector(self))
        try:
            started = start_http_server(self.port, addr=self.host, registry=registry)
        except (OSError, OverflowError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                why = "the port is already in use (choose another, or 0 for a free one)"
            else:
                why = getattr(exc, "strerror", None) or str(exc)
            raise UsageError(f"--metrics-port {self.port}: cannot listen on {self.address}: {why}") from None
        if started is None:  # before 0.20 the server could not be stopped (or its port read)
            raise UsageError(f"--metrics-port needs prometheus-client 0.20 or later: {install_hint('metrics')}")
        self._server, self._thread = started
        self.port = self._server.server_address[1]
        return self

    def snapshot(self, snap: Snapshot) -> None:
        """Store one interval snapshot (called from the run's threads: only stores)."""
        heard = time.monotonic()
        with self._lock:
            self.live.add(snap)
            self._heard[snap.source] = (heard, snap.final)

    def mark_lost(self, source: int) -> None:
        """A source (a shard) stopped reporting: its ``runner_shard_up`` is 0 from now on."""
        with self._lock:
            self.live.lost.add(source)

    def stop(self) -> None:
        """Stop listening and wait for the server thread (idempotent)."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)

    def __enter__(self) -> "MetricsEndpoint":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- scrape side (the server's threads) --------------------------------------------------------

    def _copy(self) -> tuple[dict[tuple[int, int], Snapshot], set[int], dict[int, tuple[float, bool]]]:
        with self._lock:
            return dict(self.live.latest), set(self.live.lost), dict(self._heard)

    def _totals(self, key: tuple[int, int], snap: Snapshot) -> list[_StepTotals]:
        """Per-step totals of one snapshot, computed once per snapshot (finished stages cost nothing later)."""
        cached = self._cache.get(key)
        if cached is not None and cached[0] is snap:
            return cached[1]
        totals = [_StepTotals.of(step) for step in snap.steps]
        self._cache[key] = (snap, totals)
        return totals

    def families(self) -> list:
        """The metric families of the run so far (what a scrape returns)."""
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                            InfoMetricFamily)
        from prometheus_client.utils import floatToGoString

        latest, lost, heard = self._copy()
        plan = self.plan
        stage_labels = _stage_labels(plan)
        names = list(dict.fromkeys(request.name for request in plan.flow))
        step_name = [request.name for request in plan.flow]

        requests = CounterMetricFamily("runner_requests", "Requests completed, by outcome (failed: an error, "
                                       "a status of 400 or more, or a failed check).",
                                       labels=["stage", "step", "outcome"])
        errors = CounterMetricFamily("runner_errors", "Failed requests by error class (no valid "
                                     "response, or one a capture failed on); HTTP statuses are in runner_responses.",
                                     labels=["stage", "step", "error_class"])
        responses = CounterMetricFamily("runner_responses", "Responses by HTTP status code.",
                                        labels=["stage", "step", "code"])
        dropped = CounterMetricFamily("runner_dropped", "Open-model arrivals never sent: no free virtual user.",
                                      labels=["stage", "step"])
        skipped = CounterMetricFamily("runner_skipped", "Flow steps not sent: a capture earlier in the "
                                      "iteration failed.", labels=["stage", "step"])
        latency = HistogramMetricFamily("runner_latency_seconds", "Request latency (open model: from the "
                                        "arrival's due time), from runner's log-linear histogram.",
                                        labels=["stage", "step"], unit="seconds")
        in_flight = GaugeMetricFamily("runner_in_flight", "Requests sent and not yet answered, at the newest "
                                      "snapshot of every source.", labels=["stage"])
        active = GaugeMetricFamily("runner_stage_active", "1 while the stage runs (a source's newest snapshot "
                                   "of it is not its last).", labels=["stage"])
        up = GaugeMetricFamily("runner_shard_up", "1 while a source (process or shard) reports, or has "
                               "finished its stage; 0 once it is lost.", labels=["source"])
        info = InfoMetricFamily("runner_run", "The scenario being run.", value={"scenario": plan.scenario_name})

        le_names = [floatToGoString(le) for le in LE_SECONDS] + ["+Inf"]
        with self._collect_lock:
            for key in [key for key in self._cache if key not in latest]:
                del self._cache[key]
            for stage in range(len(plan.stages)):
                label = stage_labels[stage]
                merged = {name: _StepTotals() for name in names}
                flying, running = 0, False
                for key, snap in sorted(latest.items()):
                    if key[0] != stage:
                        continue
                    flying += snap.in_flight
                    running = running or (not snap.final and snap.source not in lost)
                    for position, totals in enumerate(self._totals(key, snap)):
                        name = step_name[position] if position < len(step_name) else f"step-{position + 1}"
                        merged.setdefault(name, _StepTotals()).add(totals)
                in_flight.add_metric([label], flying)
                active.add_metric([label], 1 if running else 0)
                for name, totals in merged.items():
                    requests.add_metric([label, name, "ok"], totals.ok)
                    requests.add_metric([label, name, "failed"], totals.failed)
                    for error_class, count in sorted(totals.errors.items()):
                        errors.add_metric([label, name, error_class], count)
                    for code, count in sorted(totals.codes.items()):
                        responses.add_metric([label, name, str(code)], count)
                    dropped.add_metric([label, name], totals.dropped)
                    skipped.add_metric([label, name], totals.skipped)
                    cumulative, buckets = 0, []
                    for le_name, count in zip(le_names, totals.slots):
                        cumulative += count
                        buckets.append((le_name, cumulative))
                    latency.add_metric([label, name], buckets, totals.sum_s)
        now = time.monotonic()
        for source, (at, final) in sorted(heard.items()):
            reporting = source not in lost and (final or now - at <= self.stale_after_s)
            up.add_metric([str(source)], 1 if reporting else 0)
        return [info, requests, errors, responses, dropped, skipped, latency, in_flight, active, up]


class _RunCollector:
    """What the endpoint's registry calls on each scrape (no ``describe``: nothing runs at registration)."""

    def __init__(self, endpoint: MetricsEndpoint) -> None:
        self.endpoint = endpoint

    def collect(self):
        return iter(self.endpoint.families())
