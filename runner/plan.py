"""The compiled plan: plain, immutable data the executor and engines run.

A plan is what a validated scenario means once every decision that does not
depend on the individual request has been made: URLs split into constant
pieces, headers as tuples, timeouts as seconds. Nothing here imports Pydantic,
so the per-request path never touches validation code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

#: Renders a request path from (sequence number in stage, worker number).
PathRenderer = Callable[[int, int], str]


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """One request of the flow, ready to send many times."""

    index: int  # position in the flow; metrics are kept per index
    name: str
    method: str
    path_template: str  # as written, for reports and engines that want it
    render_path: PathRenderer
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout_s: float  # total: connect + send + whole response
    is_static: bool  # True when the path has no per-request fields
    connect_timeout_s: float = 10.0  # TCP connect (within timeout_s)
    read_timeout_s: float | None = None  # longest silence while waiting for response bytes; None = total only
    max_response_bytes: int = 0  # body bytes after which the request fails as body_too_large; 0 = no limit
    capture_headers: bool = False  # engines keep response headers for checks (channel.captured)
    capture_body: int = 0  # engines keep up to this many body bytes for checks; 0 = none
    checks: tuple = ()  # ((name, predicate), ...) from runner.checks; empty = status < 400 rule only
    has_status_check: bool = False  # a status check replaces the default "status < 400 is ok" rule


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One stage. ``model`` is "closed" (workers) or "open" (arrival timeline).

    Closed: ``concurrency_start`` workers, ramping linearly to ``concurrency_end``.
    Open: arrivals at ``rate_start`` per second, ramping linearly to ``rate_end``,
    at most ``max_in_flight`` outstanding. Bounded by ``requests`` and/or
    ``duration_s``; ``grace_s`` is how long in-flight requests may finish after
    the duration ends.
    """

    index: int
    name: str
    model: str
    requests: int | None
    duration_s: float | None
    concurrency_start: int = 0
    concurrency_end: int = 0
    rate_start: float = 0.0
    rate_end: float = 0.0
    max_in_flight: int = 0
    grace_s: float = 5.0
    seq_offset: int = 0  # first sequence number (process shares number their requests apart)
    seq_step: int = 1

    @property
    def concurrency(self) -> int:
        """Largest number of requests this stage can have in flight."""
        return self.max_in_flight if self.model == "open" else max(self.concurrency_start, self.concurrency_end)

    @property
    def is_ramp(self) -> bool:
        if self.model == "open":
            return self.rate_start != self.rate_end
        return self.concurrency_start != self.concurrency_end


@dataclass(frozen=True, slots=True)
class BuiltinTargetPlan:
    """How to start the built-in target server (see :mod:`runner.target`)."""

    body_size: int
    delay_min_s: float
    delay_max_s: float
    seed: int
    faults: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a run needs, decided once before the first request."""

    scenario_name: str
    source: str
    target_url: str | None  # None means: start the built-in target and use its URL
    builtin: BuiltinTargetPlan
    engine: str
    flow: tuple[RequestPlan, ...]
    stages: tuple[StagePlan, ...]
    outputs: tuple[tuple[str, str], ...]  # (reporter name, path)
    workers: int = 1  # processes sharing the load
    thresholds: tuple = ()  # schemas.thresholds.Threshold (frozen pydantic values, judged after the run)
    threshold_sources: tuple[str, ...] = ()  # "file:line" of each threshold
    abort_on_fail: bool = False
    secrets: tuple[str, ...] = ()  # values to scrub from every report and message
    abort_delay_s: float = 0.0
    interval_s: float = 1.0  # time-series bucket width

    @property
    def max_concurrency(self) -> int:
        return max(stage.concurrency for stage in self.stages)

    def __repr__(self) -> str:  # never show header values or bodies (they may hold secrets)
        return f"<Plan {self.scenario_name!r}: {len(self.flow)} request(s), {len(self.stages)} stage(s)>"
