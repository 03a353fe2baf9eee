"""Evaluating thresholds against a result: pure functions of the result dict.

Working on the documented dict (not live objects) means the same code judges
a finished run, a saved JSON file, and the provisional result that
``abort_on_fail`` checks once per interval. A threshold with no data to judge
fails with the reason "no data": a rule that cannot be checked never passes.
That holds for every metric: a scope (run, stage or request name) that
completed no request and scheduled no arrival has no data, even for the
metrics that would read as a harmless zero there (``rps``, ``requests``,
``dropped``): ``dropped == 0`` on a run that sent nothing proves nothing.

A ``flow:NAME`` threshold reads the flow's block in the result's top-level
``by_flow[]`` (whole run, like ``request:NAME``). Its latency metrics are
the iteration duration, because what a flow's user waits for is the whole
journey, think time included; a per-request latency is already available
by step name. A flow has data once it ran an iteration, sent a request or
dropped an arrival; the iteration metrics (latency, iteration_error_rate)
further need a completed iteration, and error_rate a completed request.

A phase threshold (``p95(ttfb) < 200ms``) reads ``phases_ms`` of the same
block a latency threshold reads. The scope must have data as above, and the
phase must have a value: ``p95(tls)`` on a plain-http run fails with "no
data", as does any phase of a result written before phases were measured,
rather than passing on the zeros an empty phase reports.

Windowed ``rps`` divides each interval's completed requests by the time the
interval covered (``span_s``), so a stage's last, partial interval is judged
on its real rate, and the window's length is counted in covered time too.
"""

from __future__ import annotations

import operator
from typing import Any, Iterable

from runner.schemas.thresholds import LATENCY_METRICS, Threshold

from .metrics.quantiles import INTERVAL_KEYS

_OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
_INTERVAL_QUANTILES = frozenset(INTERVAL_KEYS)
_NO_DATA = "no data: no request completed and no arrival was scheduled"
_NO_ITERATION = "no data: no iteration completed"


def evaluate(result: dict[str, Any], thresholds: Iterable[Threshold], sources: Iterable[str] = ()) -> list[dict]:
    """One outcome dict per threshold, in order (the shape of ``result["thresholds"]``)."""
    sources = list(sources)
    outcomes = []
    for position, threshold in enumerate(thresholds):
        if threshold.window_s is not None and threshold.scope in ("request", "flow"):
            # the parser refuses these; a hand-built Threshold must not be judged on the run's totals instead
            actual, passed, reason = None, False, f"a {threshold.scope} threshold takes no window"
        elif threshold.phase and (threshold.window_s is not None or threshold.scope == "flow"):
            # refused by the parser too: the time series and flows keep no phases to judge
            actual, passed, reason = None, False, "a phase threshold takes no window and no flow scope"
        elif threshold.window_s is not None:
            actual, passed, reason = _windowed(result, threshold)
        else:
            actual, reason = _measure(result, threshold)
            passed = actual is not None and _OPERATORS[threshold.op](actual, threshold.expected)
        outcomes.append({
            "expression": threshold.expression,
            "scope": threshold.scope,
            "target": threshold.target,
            "metric": threshold.label,  # p95(ttfb): never mistaken for the request latency's p95
            "phase": threshold.phase,
            "op": threshold.op,
            "expected": threshold.expected,
            "actual": None if actual is None else round(actual, 6),
            "unit": threshold.unit,
            "window_s": threshold.window_s,
            "passed": bool(passed),
            "reason": reason,
            "source": sources[position] if position < len(sources) else None,
        })
    return outcomes


def check_summary(by_request: list[dict]) -> list[dict]:
    """``[{name, request, passes, fails}]`` from blocks that carry ``checks``."""
    rows = []
    for block in by_request:
        for name, (passes, fails) in block.get("checks", {}).items():
            rows.append({"name": name, "request": block["name"], "passes": passes, "fails": fails})
    return rows


def _block(result: dict, threshold: Threshold) -> dict | None:
    if threshold.scope == "total":
        return result["totals"]
    pool = {"stage": "stages", "request": "by_request", "flow": "by_flow"}[threshold.scope]
    return next((block for block in result.get(pool, []) if block["name"] == threshold.target), None)


def _measure(result: dict, threshold: Threshold) -> tuple[float | None, str | None]:
    block = _block(result, threshold)
    if block is None:
        return None, f"no data: the {threshold.scope} did not run"
    if threshold.scope == "flow":
        return _measure_flow(block, threshold.metric)
    if not _has_data(result, threshold, block):
        return None, _NO_DATA
    metric = threshold.metric
    if metric == "check_rate":
        checks = _checks_in_scope(result, threshold)
        total = sum(row["passes"] + row["fails"] for row in checks)
        if total == 0:
            return None, "no data: no checks ran"
        return sum(row["passes"] for row in checks) / total, None
    if metric in ("rps", "dropped", "requests"):
        return float(block[metric]), None
    if metric == "skipped":
        return float(block.get("skipped", 0)), None  # results written before skipped steps existed had none
    if block["requests"] == 0:
        return None, "no data: no requests completed"
    if metric == "error_rate":
        return block["failed"] / block["requests"], None
    assert metric in LATENCY_METRICS
    if threshold.phase is not None:
        return _measure_phase(block, metric, threshold.phase)
    return float(block["latency_ms"][metric]), None


#: Why a phase has no value, when its scope did complete requests.
_NO_PHASE = {
    "connect": "no data: no connection was opened",
    "tls": "no data: no TLS handshake, no https connection was opened",
    "ttfb": "no data: no response was received",
    "receive": "no data: no response was received",
}


def _measure_phase(block: dict, metric: str, phase: str) -> tuple[float | None, str | None]:
    """``metric`` of one timing phase of a summary block; "no data" when the phase has no value."""
    phases = block.get("phases_ms")
    if phases is None:
        return None, "no data: this result has no timing phases, it was written before they were measured"
    numbers = phases.get(phase) or {}
    if not numbers.get("count"):
        return None, _NO_PHASE[phase]
    return float(numbers[metric]), None


def _measure_flow(block: dict, metric: str) -> tuple[float | None, str | None]:
    """One metric of a ``by_flow[]`` block; latency metrics are its iteration duration."""
    if not (block["iterations"] or block["requests"] or block["dropped"]):
        return None, "no data: the flow ran no iteration, sent no request and dropped no arrival"
    if metric in ("iterations", "iterations_failed", "iterations_per_s", "requests", "skipped", "dropped"):
        return float(block[metric]), None
    if metric == "error_rate":
        if block["requests"] == 0:
            return None, "no data: no requests completed"
        return block["failed"] / block["requests"], None
    if block["iterations"] == 0:
        return None, _NO_ITERATION
    if metric == "iteration_error_rate":
        return block["iterations_failed"] / block["iterations"], None
    assert metric in LATENCY_METRICS
    return float(block["iteration_duration_ms"][metric]), None


def _has_data(result: dict, threshold: Threshold, block: dict) -> bool:
    """Did the scope complete a request or schedule an arrival (sent, dropped or still in flight)?

    A skipped step counts: its iteration reached it, so ``request:NAME
    skipped == 0`` on a step that was only ever skipped is a real failure.
    """
    if block.get("requests", 0) or block.get("dropped", 0) or block.get("skipped", 0):
        return True
    if threshold.scope == "request":
        return False  # arrivals are scheduled per flow, not per request name
    stages = result.get("stages", []) if threshold.scope == "total" else [block]
    return any((stage.get("rate") or {}).get("scheduled", 0) for stage in stages)


def _checks_in_scope(result: dict, threshold: Threshold) -> list[dict]:
    if threshold.scope == "total":
        return result.get("checks", [])
    if threshold.scope == "stage":
        stage = next((s for s in result["stages"] if s["name"] == threshold.target), {})
        return stage.get("checks", [])
    return [row for row in result.get("checks", []) if row["request"] == threshold.target]


def _interval_span(bucket: dict, previous_t: float) -> float:
    """Seconds the interval covered; results written before ``span_s`` existed assume the full width."""
    span = bucket.get("span_s")
    return bucket["t"] - previous_t if span is None else span


def _interval_value(bucket: dict, metric: str, span: float) -> float | None:
    completed = bucket["ok"] + bucket["failed"]
    if metric == "rps":
        return completed / span
    if metric == "dropped":
        return float(bucket["dropped"])
    if completed == 0:
        return None
    if metric == "error_rate":
        return bucket["failed"] / completed
    return bucket["latency_ms"].get(metric)


def _windowed(result: dict, threshold: Threshold) -> tuple[float | None, bool, str | None]:
    """Fail once every interval of a stretch at least ``window_s`` long breached the rule.

    Time is counted in what the intervals covered, so a stage's short last
    interval adds only its real length; an interval that covered no time at
    all is skipped (it has no rate and nothing happened in it).
    """
    if threshold.scope == "stage":
        stages = [s for s in result["stages"] if s["name"] == threshold.target]
        block = stages[0] if stages else None
    else:
        stages = result["stages"]
        block = result["totals"]
    if block is None:
        return None, False, "no data: the stage did not run"
    if not _has_data(result, threshold, block):
        return None, False, _NO_DATA
    compare = _OPERATORS[threshold.op]
    offset = 0.0
    run_start = None
    worst = None
    seen = False
    for stage in stages:
        previous_t = 0.0
        for bucket in stage.get("timeseries", []):
            start = offset + previous_t
            span = _interval_span(bucket, previous_t)
            previous_t = bucket["t"]
            if span <= 0:
                continue
            value = _interval_value(bucket, threshold.metric, span)
            if value is None:
                run_start = None
                continue
            seen = True
            if compare(value, threshold.expected):
                run_start = None
                worst = value if worst is None else worst
                continue
            if run_start is None:
                run_start, worst = start, value
            else:
                worst = _worse(worst, value, threshold.op)
            if start + span - run_start >= threshold.window_s - 1e-9:
                return worst, False, f"breached for {threshold.window_s:g}s from t={run_start:.1f}s"
        offset += stage.get("duration_s", previous_t)
    if not seen:
        return None, False, "no data: no interval had requests"
    return worst, True, None


def _worse(a: float, b: float, op: str) -> float:
    return max(a, b) if op in ("<", "<=", "==") else min(a, b)
