"""Thresholds: one-line pass/fail rules over a run, parsed once at load time.

Grammar (one string per threshold)::

    [stage:NAME | request:NAME] METRIC OP VALUE [for DURATION]

    p95 < 250ms                       latency percentile of the whole run
    error_rate < 0.5%                 failed / requests
    stage:steady rps >= 900           requests per second of one stage
    request:login check_rate > 99%    share of passed checks of one request name
    p99 < 1s for 10s                  fails once breached in every interval for 10 s

METRIC is min, mean, p50, p90, p95, p99, p999, max (milliseconds; VALUE may
carry a unit: 250ms, 1.5s), error_rate or check_rate (a ratio; 0.5% or 0.005),
rps (per second), dropped or requests (counts). OP is <, <=, >, >= or ==.

Whatever the metric, a threshold whose scope completed no request and
scheduled no arrival fails with "no data" (``runner/thresholds.py``): a
count or a rate of zero over nothing is not a measurement. A windowed rps
takes each interval's rate over the time it covered (its ``span_s``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema
from typing import Annotated

from .base import Model
from .units import parse_duration

LATENCY_METRICS = ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")
RATIO_METRICS = ("error_rate", "check_rate")
METRICS = LATENCY_METRICS + RATIO_METRICS + ("rps", "dropped", "requests")
#: Metrics that a windowed threshold can follow interval by interval.
WINDOW_METRICS = ("p50", "p90", "p95", "p99", "p999", "max", "error_rate", "rps", "dropped")
OPERATORS = ("<=", ">=", "==", "<", ">")

_EXPRESSION = re.compile(
    r"^\s*(?:(?P<scope>stage|request):(?P<target>\S+)\s+)?"
    r"(?P<metric>[a-z_0-9]+)\s*(?P<op><=|>=|==|<|>)\s*(?P<value>[^\s]+(?:\s*/\s*s)?)"
    r"(?:\s+for\s+(?P<window>\S+))?\s*$"
)


class Threshold(Model):
    """A parsed threshold; ``expression`` keeps the text as written."""

    expression: str
    scope: Literal["total", "stage", "request"] = "total"
    target: str | None = None
    metric: str
    op: str
    expected: float
    unit: Literal["ms", "ratio", "per_s", "count"]
    window_s: float | None = None


def parse_threshold(value: Any) -> Any:
    """Turn ``"p95 < 250ms"`` into the fields of :class:`Threshold` (or raise ValueError)."""
    if not isinstance(value, str):
        return value
    match = _EXPRESSION.match(value)
    if not match:
        raise ValueError(f"cannot read threshold {value!r}: write e.g. 'p95 < 250ms', 'error_rate < 1%', "
                         f"'stage:NAME rps >= 900' or 'p99 < 1s for 10s'")
    metric = match["metric"]
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} in threshold {value!r}; use one of {', '.join(METRICS)}")
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
    }


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
    if metric == "rps":
        return float(raw.removesuffix("/s")), "per_s"
    if not raw.isdigit():
        raise ValueError(f"'{metric}' is a count: give a whole number")
    return float(raw), "count"


ThresholdSpec = Annotated[
    Threshold,
    BeforeValidator(parse_threshold),
    WithJsonSchema({
        "type": "string",
        "description": "[stage:NAME | request:NAME] METRIC OP VALUE [for DURATION], e.g. 'p95 < 250ms'.",
        "pattern": r"^\s*((stage|request):\S+\s+)?[a-z_0-9]+\s*(<=|>=|==|<|>)\s*\S+(\s+for\s+\S+)?\s*$",
    }),
]


class AbortOnFail(Model):
    """Stop the run as soon as a threshold is lost (checked once per interval after ``delay``)."""

    delay: float = Field(0.0, ge=0, description="Seconds after the start before thresholds may abort the run.")
