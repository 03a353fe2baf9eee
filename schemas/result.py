"""The JSON result format (``--out json=PATH``) as Pydantic models.

The runner builds results as plain dicts (:mod:`runner.result`); these models
document and check that shape: ``runner schema`` exports them to
``schemas/result.schema.json`` and the tests validate real run output against
them, so the published schema cannot drift from what runs produce.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import SCHEMA_ID_BASE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyMs(_Strict):
    """Latency in milliseconds; percentiles within ``histogram_relative_error`` of exact."""

    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float


class PhaseMs(LatencyMs):
    """One timing phase in milliseconds: how many values, and the same keys as ``latency_ms``.

    Percentiles are within ``histogram_relative_error`` of exact, as for
    latency. With ``count`` 0 the phase was not measured and every other key
    is 0.
    """

    count: int = Field(description=(
        "Values behind the numbers: connections opened for connect and tls, responses for ttfb and receive."))


class PhasesMs(_Strict):
    """Where a request's time went, phase by phase (the names k6 reports in brackets).

    connect and tls are paid only by the request that opens a connection: a
    request on a reused keep-alive connection adds no value to them, so their
    counts are connections opened, not requests, and their percentiles
    describe connection setup, not a typical request.
    """

    connect: PhaseMs = Field(description=(
        "TCP connect, name lookup excluded; one value per connection opened (k6: http_req_connecting)."))
    tls: PhaseMs = Field(description=(
        "TLS handshake; one value per https connection opened, none on plain http "
        "(k6: http_req_tls_handshaking)."))
    ttfb: PhaseMs = Field(description=(
        "Time to first byte: request written -> first response byte; one value per response "
        "(k6: http_req_waiting)."))
    receive: PhaseMs = Field(description=(
        "First response byte -> last; one value per response (k6: http_req_receiving)."))


class LatencyHistogram(_Strict):
    """Lossless, mergeable histogram: add bucket counts of equal layouts to merge runs."""

    unit: str = Field(description="Always 'us' (microseconds).")
    sub_bucket_bits: int
    total: int
    sum: int
    min: int
    max: int
    buckets: dict[str, int] = Field(description="Bucket index (as a string) -> count; empty buckets omitted.")


class Summary(_Strict):
    """The block repeated for the whole run, each stage and each request name."""

    requests: int = Field(description="Requests completed: always ok + failed.")
    ok: int = Field(description="Responses with a status below 400.")
    failed: int = Field(description="Responses with status >= 400 plus requests with no response (see errors).")
    dropped: int = Field(description="Open model: arrivals never sent because every in-flight slot was busy.")
    rps: float = Field(description="requests / duration_s.")
    duration_s: float
    bytes: int = Field(description="Response body bytes received.")
    status_codes: dict[str, int]
    errors: dict[str, int] = Field(description=(
        "Error class -> count of failed requests. No response: connect_refused, unreachable, "
        "connect_timeout, read_timeout, reset, closed_early, protocol_error, body_too_large, dns, tls, "
        "client_resource, cut_off, other; a response that lacked a captured value: capture_failed."))
    error_samples: dict[str, list[str]] = Field(default_factory=dict, description=(
        "Error class -> the first distinct messages of that class (at most 5, each at most 300 characters), "
        "merged across stages and processes; secrets are masked."))
    latency_ms: LatencyMs = Field(description="From the intended send time (open model) or the send (closed).")
    service_time_ms: LatencyMs = Field(description="From the actual send: what the server alone took.")
    latency_histogram: LatencyHistogram
    phases_ms: PhasesMs | None = Field(None, description=(
        "Timing phases: connect, tls, ttfb, receive. Absent from results written before phases were measured."))
    checks: dict[str, list[int]] = Field(description="Check name -> [passes, fails].")
    skipped: int = Field(0, description="Flow steps not sent because a capture earlier in the iteration failed.")


class NamedSummary(Summary):
    name: str


class FlowSummary(_Strict):
    """One flow: its iterations and the requests of its steps."""

    name: str
    iterations: int = Field(description="Iterations run to their end (cut-short ones are not counted).")
    iterations_failed: int = Field(description="Iterations in which a request failed.")
    iterations_per_s: float
    dropped: int = Field(description="Open model: arrivals of this flow that found no free virtual user.")
    requests: int
    ok: int
    failed: int
    skipped: int
    iteration_duration_ms: LatencyMs = Field(
        description="Whole iteration, think time included, from its start (open model: the arrival's due time).")
    iteration_duration_histogram: LatencyHistogram


class DataUsage(_Strict):
    """How much of a data table the run used."""

    name: str
    file: str
    rows: int
    mode: str
    per: str
    used: int = Field(description="Rows handed to virtual users (all processes).")
    exhausted: bool = Field(description="unique mode: every row was used, and users that needed one stopped.")


class RateReport(_Strict):
    """Open model: what was asked and what the generator achieved."""

    requested_from: float
    requested_to: float
    requested_mean: float
    achieved: float = Field(description="Arrivals sent per second over the arrival window.")
    scheduled: int = Field(description="Arrivals due: sent + dropped.")
    late_sends: int = Field(description="Sends more than 10 ms after their due time (still measured from it).")
    met: bool = Field(description="achieved >= 95% of requested.")


class IntervalLatency(_Strict):
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float


class Interval(_Strict):
    """One time-series bucket; sums over a stage's buckets equal its totals."""

    t: float = Field(description="End of the interval, seconds after the stage start.")
    sent: int
    ok: int
    failed: int
    dropped: int
    in_flight: int
    span_s: float = Field(description="Seconds the interval covered: the interval width, less for a stage's last one.")
    rps: float = Field(description="Completed requests / span_s (a stage's last, partial interval is not diluted).")
    latency_ms: IntervalLatency


class StageSummary(NamedSummary):
    index: int
    model: str = Field(description="'closed' (workers send back to back) or 'open' (arrival rate).")
    concurrency: int = Field(description="Most requests in flight allowed (workers, or max_in_flight).")
    planned_requests: int | None
    planned_duration_s: float | None
    started_at: str
    interrupted: bool
    rate: RateReport | None = None
    by_request: list[NamedSummary]
    by_flow: list[FlowSummary] = Field(default_factory=list)
    timeseries: list[Interval]
    checks: list["CheckRow"]


class CheckRow(_Strict):
    name: str
    request: str
    passes: int
    fails: int


class ThresholdOutcome(_Strict):
    """A threshold as written, what was measured, and whether it held."""

    expression: str
    scope: str = Field(description="'total', 'stage', 'request' or 'flow'.")
    target: str | None
    metric: str = Field(description="As written: 'p95', 'error_rate', or a statistic of a phase: 'p95(ttfb)'.")
    phase: str | None = Field(None, description="connect, tls, ttfb or receive for a phase metric; else null.")
    op: str
    expected: float
    actual: float | None = Field(description="Measured value (in unit); null when there was no data.")
    unit: str = Field(description="'ms', 'ratio', 'per_s' or 'count'.")
    window_s: float | None
    passed: bool
    reason: str | None
    source: str | None = Field(description="file:line of the threshold in the scenario.")


class Abort(_Strict):
    reason: str
    at_s: float


class ScenarioRef(_Strict):
    name: str
    source: str


class EngineRef(_Strict):
    name: str
    reason: str


class LoopLag(_Strict):
    p50: float
    p99: float
    max: float


class ProcessHealth(_Strict):
    cpu_s: float
    cpu_percent: float
    loop_lag_ms: LoopLag
    event_loop: str
    peak_rss_mb: float


class Generator(_Strict):
    """The load generator's own health, so a reader can tell server limits from client limits."""

    verdict: str = Field(description="'ok', or 'saturated' when the generator could not keep up.")
    reasons: list[str]
    processes: int
    peak_rss_mb: float = Field(description="Largest peak resident memory of any runner process.")
    cpu_s: float = Field(description="CPU seconds (user + system) of all runner processes.")
    event_loop: str = Field(description="'uvloop' or 'asyncio'.")
    loop_lag_p99_ms: float
    per_process: list[ProcessHealth]


class Shard(_Strict):
    """One shard of a distributed run (``--cluster``): where it ran and whether it finished."""

    index: int
    worker: str = Field(description="Address of the Dask worker the shard was pinned to.")
    status: Literal["ok", "lost"] = Field(description=(
        "'ok': its report came back; 'lost': its worker died or left, or it fell silent: its numbers in this "
        "result are those of its last interval snapshot, and runner run exits 5."))
    reason: str | None = Field(description="Why the shard was lost; null when ok.")
    start_skew_s: float | None = Field(description=(
        "Time zero of the shard's first stage minus the agreed common start, on the client's clock; null when "
        "it never started."))
    clock_offset_s: float = Field(description=(
        "The worker's wall clock minus the client's, measured before the run (within half a round trip); "
        "the shard's start was corrected by it."))
    requests: int = Field(description="Requests the shard completed (for a lost shard: by its last snapshot).")


class RunResultModel(_Strict):
    """A complete run result, as written by the JSON reporter."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"title": "runner result", "$id": SCHEMA_ID_BASE + "result.schema.json"},
    )

    format_version: int
    runner_version: str
    scenario: ScenarioRef
    target: str
    engine: EngineRef
    started_at: str
    finished_at: str
    interrupted: bool
    interrupt_signal: str | None
    histogram_relative_error: float
    notes: list[str]
    generator: Generator
    passed: bool = Field(description="Every threshold passed (true when there are none).")
    aborted: Abort | None
    thresholds: list[ThresholdOutcome]
    checks: list[CheckRow]
    totals: Summary
    stages: list[StageSummary]
    by_request: list[NamedSummary]
    by_flow: list[FlowSummary] = Field(
        default_factory=list, description="Per flow, whole run: iterations, their duration, and their requests.")
    data: list[DataUsage] = Field(default_factory=list, description="Data tables and how many rows were used.")
    shards: list[Shard] = Field(default_factory=list, description=(
        "Distributed run: one entry per shard, in shard order; empty for a run on one machine."))
