"""The compiled plan: plain, immutable data the executor and engines run.

A plan is what a validated scenario means once every decision that does not
depend on the individual request has been made: URLs split into constant
pieces, headers as tuples, timeouts as seconds. Nothing here imports Pydantic,
so the per-request path never touches validation code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .target.config import TargetConfig
from .templates import JsonTemplate, Template


@dataclass(frozen=True, slots=True)
class TlsPlan:
    """How to speak TLS to an https target: the scenario's ``tls:`` block, paths made absolute.

    Engines build one ``ssl.SSLContext`` per distinct value (see
    :func:`runner.tls.client_context`); equal settings share a context, so a
    plan can give each request its own ``tls`` at no cost.
    """

    verify: bool = True  # check the server's certificate chain and host name
    ca: str | None = None  # a CA bundle file (PEM) to trust instead of the system's
    cert: str | None = None  # a client certificate (PEM) for mutual TLS
    key: str | None = None  # its private key (PEM); None: the key is in ``cert``
    server_name: str | None = None  # SNI and the name the certificate must match, instead of the URL's host
    min_version: str | None = None  # "1.2" or "1.3"; None: the ssl module's default


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """One request step of a flow, ready to send many times.

    ``target`` renders path and query for a virtual user; ``headers`` and
    ``body`` are what does not vary, ``header_templates`` and
    ``body_template`` what does (rendered per request, never parsed).
    """

    index: int  # position in plan.flow (every request step of every flow); metrics are kept per index
    name: str
    method: str
    path_template: str  # as written, for reports
    target: Template  # path + query, rendered per request
    headers: tuple[tuple[str, str], ...]  # constant headers
    body: bytes | None  # constant body, or None (see body_template)
    timeout_s: float  # total: connect + send + whole response
    is_static: bool  # True when nothing of the request varies
    connect_timeout_s: float = 10.0  # TCP connect (within timeout_s)
    read_timeout_s: float | None = None  # longest silence while waiting for response bytes; None = total only
    max_response_bytes: int = 0  # body bytes after which the request fails as body_too_large; 0 = no limit
    capture_headers: bool = False  # engines keep response headers for checks (channel.captured)
    capture_body: int = 0  # engines keep up to this many body bytes for checks; 0 = none
    checks: tuple = ()  # ((name, predicate), ...) from runner.checks; empty = status < 400 rule only
    has_status_check: bool = False  # a status check replaces the default "status < 400 is ok" rule
    header_templates: tuple[tuple[str, Template], ...] = ()  # headers rendered per request
    body_template: Template | JsonTemplate | None = None  # a body rendered per request (bytes via .render)
    captures: tuple = ()  # ((variable, extractor), ...) from runner.captures
    send_cookies: bool = False  # add the virtual user's cookies (the jar is filled from Set-Cookie)
    flow: int = 0  # index of the flow in plan.flows
    tls: TlsPlan | None = None  # https settings; None: the defaults (verify with the system's CAs)
    keepalive: bool = True  # False: a new connection for every request (Connection: close)


@dataclass(frozen=True, slots=True)
class ThinkPlan:
    """A pause between steps: ``min_s`` to ``max_s`` seconds, uniform (equal bounds: fixed)."""

    min_s: float
    max_s: float


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """A named journey: ``once`` per virtual user, then ``steps`` in a loop.

    Steps are :class:`RequestPlan` (also listed in ``Plan.flow`` by index) or
    :class:`ThinkPlan`. ``first_request`` is the index of the first request a
    fresh iteration sends (where an open-model arrival's drop is counted).
    """

    index: int
    name: str
    weight: int
    once: tuple
    steps: tuple
    data_per_iteration: tuple[int, ...] = ()  # indexes into Plan.data drawn at each iteration
    data_per_user: tuple[int, ...] = ()  # drawn once per virtual user

    single: bool = field(init=False, default=False)  # one request per iteration and nothing else

    def __post_init__(self) -> None:
        single = (len(self.steps) == 1 and not self.once and isinstance(self.steps[0], RequestPlan)
                  and not self.data_per_iteration and not self.data_per_user)
        object.__setattr__(self, "single", single)

    @property
    def first_request(self) -> int:
        for step in self.once + self.steps:
            if isinstance(step, RequestPlan):
                return step.index
        raise ValueError("a flow without requests")


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
class Plan:
    """Everything a run needs, decided once before the first request."""

    scenario_name: str
    source: str
    target_url: str | None  # None means: start the built-in target and use its URL
    builtin: TargetConfig  # how to start the built-in target (the same object the server gets)
    engine: str
    flow: tuple[RequestPlan, ...]  # every request step of every flow, by index
    stages: tuple[StagePlan, ...]
    outputs: tuple[tuple[str, str], ...]  # (reporter name, path)
    workers: int = 1  # processes sharing the load
    thresholds: tuple = ()  # runner.schemas.thresholds.Threshold (frozen pydantic values, judged after the run)
    threshold_sources: tuple[str, ...] = ()  # "file:line" of each threshold
    abort_on_fail: bool = False
    secrets: tuple[str, ...] = ()  # values to scrub from every report and message
    abort_delay_s: float = 0.0
    interval_s: float = 1.0  # time-series bucket width
    flows: tuple[FlowPlan, ...] = ()  # empty: one flow of every request in plan.flow, in order
    data: tuple = ()  # runner.data.DataTable, in the scenario's order
    seed: int = 0  # think times and random data rows are reproducible from it
    process_index: int = 0  # this process's part of a multi-process run (see runner.sharding)
    process_count: int = 1
    cluster: str | None = None  # the scenario's Dask scheduler address (runner.cluster); None: run here

    def flow_plans(self) -> tuple[FlowPlan, ...]:
        """The flows to run; a plan built by hand with only ``flow`` runs it as one flow."""
        if self.flows:
            return self.flows
        return (FlowPlan(0, "default", 1, (), tuple(self.flow)),)

    @property
    def max_concurrency(self) -> int:
        return max(stage.concurrency for stage in self.stages)

    def __repr__(self) -> str:  # never show header values or bodies (they may hold secrets)
        return f"<Plan {self.scenario_name!r}: {len(self.flow)} request(s), {len(self.stages)} stage(s)>"
