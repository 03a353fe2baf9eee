"""The JSON result format (``--out json=PATH``) as Pydantic models.

The runner builds results as plain dicts (:mod:`runner.result`); these models
document and check that shape: ``runner schema`` exports them to
``schemas/result.schema.json`` and the tests validate real run output against
them, so the published schema cannot drift from what runs produce.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
    rps: float = Field(description="requests / duration_s.")
    duration_s: float
    bytes: int = Field(description="Response body bytes received.")
    status_codes: dict[str, int]
    errors: dict[str, int] = Field(description="Error class -> count, for requests that got no response.")
    latency_ms: LatencyMs
    latency_histogram: LatencyHistogram


class NamedSummary(Summary):
    name: str


class StageSummary(NamedSummary):
    index: int
    model: str = Field(description="'closed': workers send back to back.")
    concurrency: int
    planned_requests: int | None
    planned_duration_s: float | None
    started_at: str
    interrupted: bool
    by_request: list[NamedSummary]


class ScenarioRef(_Strict):
    name: str
    source: str


class EngineRef(_Strict):
    name: str
    reason: str


class Generator(_Strict):
    """The load generator's own health, so a reader can tell server limits from client limits."""

    peak_rss_mb: float = Field(description="Peak resident memory of the runner process.")
    cpu_s: float = Field(description="CPU seconds (user + system) the runner process used.")
    event_loop: str = Field(description="'uvloop' or 'asyncio'.")


class RunResultModel(_Strict):
    """A complete run result, as written by the JSON reporter."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"title": "runner result", "$id": "https://runner.invalid/result.schema.json"},
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
    totals: Summary
    stages: list[StageSummary]
    by_request: list[NamedSummary]
