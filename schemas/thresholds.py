"""Thresholds: one-line pass/fail rules over a run, parsed once at load time.

Grammar (one string per threshold)::

    [stage:NAME | request:NAME | flow:NAME] METRIC OP VALUE [for DURATION]

    p95 < 250ms                       latency percentile of the whole run
    error_rate < 0.5%                 failed / requests
    stage:steady rps >= 900           requests per second of one stage
    request:login check_rate > 99%    share of passed checks of one request name
    p99 < 1s for 10s                  fails once breached in every interval for 10 s
    p95(ttfb) < 200ms                 a statistic of one timing phase
    request:login max(connect) < 50ms
    flow:checkout p95 < 2s            95th percentile of one flow's iteration duration
    flow:checkout iteration_error_rate < 1%   iterations with a failed request / iterations

METRIC is min, mean, p50, p90, p95, p99, p999, max (milliseconds; VALUE may
carry a unit: 250ms, 1.5s), error_rate or check_rate (a ratio; 0.5% or 0.005),
rps (per second), dropped, requests or skipped (counts). OP is <, <=, >, >= or ==.

``STAT(PHASE)`` judges one timing phase instead of the whole latency: STAT
is one of the latency metrics above, PHASE one of connect (TCP connect),
tls (TLS handshake), ttfb (request written -> first response byte) and
receive (first response byte -> last), read from ``phases_ms`` of the
scope's block in the result. connect and tls have a value only per
connection opened, so on keep-alive runs they describe connection setup,
not a typical request. A phase threshold takes no window, because the time
series keeps the overall latency per interval but not the phases (keeping
four more histograms per interval would cost memory on every run for a rule
few write), and no ``flow:`` scope, because a flow's latency metrics are its
iteration duration, which has no phases; judge a flow's steps with
``request:NAME`` instead.

``flow:NAME`` judges one flow (``by_flow[]`` of the result). A user of a flow
feels the whole iteration, so there the latency metrics are the *iteration
duration* (think time included, as k6's ``iteration_duration``), and the flow
adds iterations, iterations_failed (counts), iteration_error_rate (a ratio)
and iterations_per_s; requests, error_rate, skipped and dropped are those of
the flow's steps. The iteration metrics exist only per flow, and a flow has
no ``rps`` (use iterations_per_s) nor ``check_rate`` (checks are kept per
request name; use ``request:NAME``). A flow threshold takes no window: the
time series is kept per stage, not per flow, so there is nothing to follow.

Whatever the metric, a threshold whose scope completed no request and
scheduled no arrival (a flow: ran no iteration, sent no request and dropped
no arrival) fails with "no data" (``runner/thresholds.py``): a count or a
rate of zero over nothing is not a measurement. So does a phase with no
value (``p95(tls)`` on a plain-http run). A windowed rps
takes each interval's rate over the time it covered (its ``span_s``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema
from typing import Annotated

from runner.metrics.quantiles import INTERVAL_KEYS, LATENCY_KEYS
from runner.metrics.recorder import PHASES

from .base import Model
from .units import parse_duration

LATENCY_METRICS = LATENCY_KEYS
RATIO_METRICS = ("error_rate", "check_rate", "iteration_error_rate")
#: Metrics of a flow's iterations: they only make sense with ``flow:NAME``.
ITERATION_METRICS = ("iterations", "iterations_failed", "iteration_error_rate", "iterations_per_s")
METRICS = LATENCY_METRICS + ("error_rate", "check_rate", "rps", "dropped", "requests", "skipped") + ITERATION_METRICS
#: What ``flow:NAME`` can judge (latency metrics there are the iteration duration).
FLOW_METRICS = LATENCY_METRICS + ITERATION_METRICS + ("error_rate", "requests", "skipped", "dropped")
#: Metrics that a windowed threshold can follow interval by interval.
WINDOW_METRICS = (*INTERVAL_KEYS, "error_rate", "rps", "dropped")
OPERATORS = ("<=", ">=", "==", "<", ">")
#: k6's names of the phases, so a k6 user's guess gets a pointer instead of only "unknown".
K6_PHASE_NAMES = {"http_req_connecting": "connect", "http_req_tls_handshaking": "tls",
                  "http_req_waiting": "ttfb", "http_req_receiving": "receive"}

_EXPRESSION = re.compile(
    r"^\s*(?:(?P<scope>stage|request|flow):(?P<target>\S+)\s+)?"
    r"(?P<metric>[a-z_0-9]+)(?:\(\s*(?P<phase>[^()\s]*)\s*\))?"
    r"\s*(?P<op><=|>=|==|<|>)\s*(?P<value>[^\s]+(?:\s*/\s*s)?)"
    r"(?:\s+for\s+(?P<window>\S+))?\s*$"
)


class Threshold(Model):
    """A parsed threshold; ``expression`` keeps the text as written."""

    expression: str
    scope: Literal["total", "stage", "request", "flow"] = "total"
    target: str | None = None
    metric: str
    op: str
    expected: float
    unit: Literal["ms", "ratio", "per_s", "count"]
    window_s: float | None = None
    phase: Literal["connect", "tls", "ttfb", "receive"] | None = None  # STAT(PHASE): metric is the STAT

    @property
    def label(self) -> str:
        """The metric as written: ``p95``, or ``p95(ttfb)`` for a phase."""
        return f"{self.metric}({self.phase})" if self.phase else self.metric


def parse_threshold(value: Any) -> Any:
    """Turn ``"p95 < 250ms"`` into the fields of :class:`Threshold` (or raise ValueError)."""
    if not isinstance(value, str):
        return value
    match = _EXPRESSION.match(value)
    if not match:
        raise ValueError(f"cannot read threshold {value!r}: write e.g. 'p95 < 250ms', 'error_rate < 1%', "
                         f"'stage:NAME rps >= 900', 'p99 < 1s for 10s' or 'p95(ttfb) < 200ms'")
    metric = match["metric"]
    if metric in PHASES or metric in K6_PHASE_NAMES:
        phase = K6_PHASE_NAMES.get(metric, metric)
        named = f"k6's {metric} is {phase} here, and " if metric != phase else ""
        raise ValueError(f"threshold {value!r}: {named}a phase takes a statistic: write e.g. 'p95({phase}) < 200ms'")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} in threshold {value!r}; use one of {', '.join(METRICS)}")
    phase = match["phase"]
    if phase is not None:
        phase_problem = _phase_problem(match["scope"], metric, phase, match["window"])
        if phase_problem:
            raise ValueError(f"threshold {value!r}: {phase_problem}")
    scope_problem = _scope_problem(match["scope"], metric)
    if scope_problem:
        raise ValueError(f"threshold {value!r}: {scope_problem}")
    raw = match["value"].replace(" ", "")
    try:
        expected, unit = _parse_value(metric, raw)
    except ValueError as exc:
        raise ValueError(f"threshold {value!r}: {exc}") from None
    window = None
    if match["window"] is not None:
        window = parse_duration(match["window"])
        if window <= 0:
            raise ValueError(f"threshold {value!r}: the window must be > 0")
        if match["scope"] == "flow":
            raise ValueError(f"threshold {value!r}: a flow threshold takes no window (the time series is kept "
                             f"per stage, not per flow); drop 'for {match['window']}' or use a stage scope")
        if metric not in WINDOW_METRICS:
            raise ValueError(f"threshold {value!r}: '{metric}' cannot be followed over a window; "
                             f"use one of {', '.join(WINDOW_METRICS)}")
        if match["scope"] == "request":
            raise ValueError(f"threshold {value!r}: windows apply to the whole run or a stage, not a request")
    return {
        "expression": value.strip(),
        "scope": match["scope"] or "total",
        "target": match["target"],
        "metric": metric,
        "op": match["op"],
        "expected": expected,
        "unit": unit,
        "window_s": window,
        "phase": phase,
    }


def _phase_problem(scope: str | None, metric: str, phase: str, window: str | None) -> str | None:
    """Why ``metric(phase)`` cannot be judged (None when it can); see the module docstring for the reasons."""
    if phase not in PHASES:
        k6 = K6_PHASE_NAMES.get(phase)
        hint = f" (k6's {phase} is {k6} here)" if k6 else ""
        return f"unknown phase {phase!r}{hint}; use one of {', '.join(PHASES)}"
    if metric not in LATENCY_METRICS:
        return f"a phase takes a latency statistic ({', '.join(LATENCY_METRICS)}), not '{metric}'"
    if scope == "flow":
        return ("phases are kept per request, and a flow's latency is its iteration duration, which has none; "
                "use 'request:NAME' for a step of the flow")
    if window is not None:
        return (f"a phase cannot be followed over a window (the time series keeps the overall latency per "
                f"interval, not the phases); drop 'for {window}' (a window can follow '{metric}' without a phase)")
    return None


def _scope_problem(scope: str | None, metric: str) -> str | None:
    """Why ``metric`` cannot be judged in ``scope`` (None when it can)."""
    if scope == "flow" and metric not in FLOW_METRICS:
        instead = {"rps": "iterations_per_s", "check_rate": "request:NAME check_rate"}.get(metric)
        hint = f" (use {instead})" if instead else ""
        return f"'{metric}' is not measured per flow{hint}; a flow has {', '.join(FLOW_METRICS)}"
    if scope != "flow" and metric in ITERATION_METRICS:
        return f"'{metric}' is measured per flow: write 'flow:NAME {metric} ...'"
    return None


def _parse_value(metric: str, raw: str) -> tuple[float, str]:
    if metric in LATENCY_METRICS:
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            return float(raw), "ms"
        return parse_duration(raw) * 1000.0, "ms"
    if metric in RATIO_METRICS:
        if raw.endswith("%"):
            number = float(raw[:-1])
            ratio = number / 100.0
        else:
            ratio = float(raw)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("a rate must be between 0 and 1 (or 0% and 100%)")
        return ratio, "ratio"
    if metric in ("rps", "iterations_per_s"):
        return float(raw.removesuffix("/s")), "per_s"
    if not raw.isdigit():
        raise ValueError(f"'{metric}' is a count: give a whole number")
    return float(raw), "count"


ThresholdSpec = Annotated[
    Threshold,
    BeforeValidator(parse_threshold),
    WithJsonSchema({
        "type": "string",
        "description": ("[stage:NAME | request:NAME | flow:NAME] METRIC OP VALUE [for DURATION], e.g. 'p95 < 250ms'; "
                        "METRIC may be STAT(PHASE) with PHASE connect, tls, ttfb or receive: 'p95(ttfb) < 200ms'."),
        "pattern": (r"^\s*((stage|request|flow):\S+\s+)?[a-z_0-9]+(\(\s*[^()\s]*\s*\))?\s*(<=|>=|==|<|>)\s*\S+"
                    r"(\s+for\s+\S+)?\s*$"),
    }),
]


class AbortOnFail(Model):
    """Stop the run as soon as a threshold is lost (checked once per interval after ``delay``)."""

    delay: float = Field(0.0, ge=0, description="Seconds after the start before thresholds may abort the run.")
