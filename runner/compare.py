"""Baseline vs current: did this run regress against a saved result?

Thresholds judge a run against fixed numbers; a comparison judges it against
an earlier run of the same scenario, which catches a slow drift that stays
under every threshold. Both inputs are the documented result dicts (saved
with ``--out json=...``), so any two results can be compared later.

A limit is the largest tolerated *regression*, written ``metric=N%``:

* latency metrics (p50 p90 p95 p99 p999 max mean): the relative increase,
  ``p95=10%`` fails when current p95 > baseline p95 * 1.10;
* ``rps``: the relative *drop*, ``rps=10%`` fails below 90 % of the baseline;
* ``error_rate`` (failed / requests): the increase in *percentage points*,
  ``error_rate=1%`` fails when the rate rises by more than 1 point (0.5 % ->
  1.6 %). A relative limit would be useless here: any error over a clean
  baseline is an infinite relative increase. ``1pp`` is accepted too.

A timing phase is compared when asked for, written as in thresholds:
``p95(ttfb)=10%`` (any latency statistic of connect, tls, ttfb or receive),
judged like latency. Phases are not among the defaults: a baseline saved
before phases were measured has none, and connect and tls rest on one value
per connection opened, too few on a keep-alive run for a default gate.

Rows cover the totals and every stage present (by name) in both results.
Improvements never count as regressions.

A metric with no data in the current run (no request completed in that
scope, so there is no rate, latency or error rate to compare) fails the
comparison, unless the baseline had no data there either: a run that sent
nothing must not pass as "no regression". No data only in the baseline is
noted and does not fail (there is nothing to regress from).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from .metrics.quantiles import INTERVAL_KEYS, LATENCY_KEYS
from .metrics.recorder import PHASES

LATENCY_METRICS = (*INTERVAL_KEYS, "mean")
#: A statistic of one timing phase, named as thresholds name it: ``p95(ttfb)``.
PHASE_METRICS = tuple(f"{key}({phase})" for phase in PHASES for key in LATENCY_KEYS)
METRICS = LATENCY_METRICS + ("error_rate", "rps")
_PHASE_METRIC = re.compile(r"^([a-z0-9]+)\(([a-z]+)\)$")
DEFAULT_LIMITS: dict[str, float] = {"p95": 0.10, "p99": 0.10, "error_rate": 0.01, "rps": 0.10}

_LIMIT = re.compile(r"^\s*([A-Za-z0-9_]+(?:\([a-z]+\))?)\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*(%|pp)\s*$")
_EPSILON = 1e-9  # so "exactly at the limit" passes despite float rounding


def parse_limit(text: str) -> tuple[str, float]:
    """``"p95=10%"`` -> ``("p95", 0.10)``; raises ValueError with the accepted forms."""
    match = _LIMIT.match(text)
    if not match:
        raise ValueError(f"bad limit {text!r}: write METRIC=N% (e.g. p95=10%, rps=5%, error_rate=1%)")
    metric, number, unit = match.group(1), float(match.group(2)), match.group(3)
    if metric not in METRICS and metric not in PHASE_METRICS:
        raise ValueError(f"unknown metric {metric!r} in limit {text!r}: use one of {', '.join(METRICS)}, "
                         f"or a statistic of a phase such as p95(ttfb) ({', '.join(PHASES)})")
    if unit == "pp" and metric != "error_rate":
        raise ValueError(f"bad limit {text!r}: 'pp' (percentage points) applies only to error_rate; use %")
    return metric, number / 100.0


def parse_limits(texts: Iterable[str]) -> dict[str, float]:
    """Limits from CLI strings; the defaults when there are none (given limits replace them all)."""
    limits = dict(parse_limit(text) for text in texts)
    return limits or dict(DEFAULT_LIMITS)


@dataclass(frozen=True)
class Row:
    """One metric in one scope. ``change`` is relative (latency, rps) or absolute (error_rate)."""

    scope: str  # "total" or "stage <name>"
    metric: str
    baseline: float | None
    current: float | None
    change: float | None
    limit: float
    regressed: bool
    note: str = ""

    @property
    def missing(self) -> bool:
        """The current run has no data here although the baseline had some (a failure, not a regression)."""
        return self.regressed and self.current is None


@dataclass
class Comparison:
    rows: list[Row]
    limits: dict[str, float]
    baseline_name: str = ""
    current_name: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        """Any row over its limit or without data in the current run: the comparison fails."""
        return any(row.regressed for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for a CI step that wants the numbers."""
        return {"regressed": self.regressed, "limits": self.limits, "notes": self.notes,
                "baseline": self.baseline_name, "current": self.current_name,
                "rows": [row.__dict__.copy() for row in self.rows]}


def metric_value(block: dict[str, Any], metric: str) -> float | None:
    """The metric from a summary block; None when the block measured nothing."""
    requests = block.get("requests", 0)
    if not requests:
        return None
    if metric == "error_rate":
        return block.get("failed", 0) / requests
    if metric == "rps":
        return float(block.get("rps", 0.0))
    phase_metric = _PHASE_METRIC.match(metric)
    if phase_metric:
        key, phase = phase_metric.groups()
        numbers = (block.get("phases_ms") or {}).get(phase) or {}
        return float(numbers[key]) if numbers.get("count") else None  # no value in that phase: no data
    value = (block.get("latency_ms") or {}).get(metric)
    return float(value) if value is not None else None


def _row(scope: str, metric: str, limit: float, base: dict[str, Any], cur: dict[str, Any]) -> Row:
    before, after = metric_value(base, metric), metric_value(cur, metric)
    if after is None:
        if before is None:
            return Row(scope, metric, before, after, None, limit, False, "no data in either")
        return Row(scope, metric, before, after, None, limit, True, "NO DATA in the current run")
    if before is None:
        return Row(scope, metric, before, after, None, limit, False, "no data in the baseline")
    if metric == "error_rate":
        change = after - before
        return Row(scope, metric, before, after, change, limit, change > limit + _EPSILON)
    if before == 0:
        worse = after > 0 if metric != "rps" else False
        return Row(scope, metric, before, after, math.inf if worse else 0.0, limit, worse,
                   "baseline is 0" if worse else "")
    change = (after - before) / before
    worse = -change if metric == "rps" else change
    return Row(scope, metric, before, after, change, limit, worse > limit + _EPSILON)


def compare(baseline: dict[str, Any], current: dict[str, Any], limits: dict[str, float] | None = None) -> Comparison:
    """Compare totals and same-named stages metric by metric against ``limits`` (fractions)."""
    limits = dict(limits) if limits else dict(DEFAULT_LIMITS)
    unknown = sorted(set(limits) - set(METRICS) - set(PHASE_METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}: use one of {', '.join(METRICS)}")
    scopes = [("total", baseline.get("totals") or {}, current.get("totals") or {})]
    base_stages = {s["name"]: s for s in baseline.get("stages") or []}
    cur_names = [s["name"] for s in current.get("stages") or []]
    cur_stages = {s["name"]: s for s in current.get("stages") or []}
    scopes += [(f"stage {name}", base_stages[name], cur_stages[name]) for name in cur_names if name in base_stages]
    notes = []
    only_base = [n for n in base_stages if n not in cur_stages]
    only_cur = [n for n in cur_names if n not in base_stages]
    if only_base:
        notes.append(f"stages only in the baseline (not compared): {', '.join(only_base)}")
    if only_cur:
        notes.append(f"stages only in the current run (not compared): {', '.join(only_cur)}")
    base_name = (baseline.get("scenario") or {}).get("name", "")
    cur_name = (current.get("scenario") or {}).get("name", "")
    if base_name != cur_name:
        notes.append(f"different scenarios: baseline {base_name!r}, current {cur_name!r}")
    ordered = [metric for metric in METRICS + PHASE_METRICS if metric in limits]
    rows = [_row(scope, metric, limits[metric], base, cur) for scope, base, cur in scopes for metric in ordered]
    return Comparison(rows, limits, base_name, cur_name, notes)


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    if metric == "error_rate":
        return f"{value:.2%}"
    if metric == "rps":
        return f"{value:,.1f}/s"
    return f"{value:,.3f} ms"


def _change(metric: str, change: float | None) -> str:
    if change is None:
        return "–"
    if metric == "error_rate":
        return f"{change * 100:+.2f} pp"
    return "+inf" if math.isinf(change) else f"{change:+.1%}"


def _limit(metric: str, limit: float) -> str:
    if metric == "error_rate":
        return f"+{limit * 100:g} pp"
    return f"-{limit * 100:g}%" if metric == "rps" else f"+{limit * 100:g}%"


def render_comparison(c: Comparison) -> str:
    """A plain-text table for the terminal and CI logs, one row per scope and metric (no final newline)."""
    header = ("scope", "metric", "baseline", "current", "change", "limit", "verdict")
    table = [header] + [
        (row.scope, row.metric, _value(row.metric, row.baseline), _value(row.metric, row.current),
         _change(row.metric, row.change), _limit(row.metric, row.limit), _verdict(row))
        for row in c.rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [f"baseline: {c.baseline_name or '?'}   current: {c.current_name or '?'}", ""]
    for i, r in enumerate(table):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])] + [r[j].rjust(widths[j]) for j in range(2, 6)]
        lines.append("  ".join(cells + [r[6]]).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [""] + [f"note: {note}" for note in c.notes]
    lines.append(_summary(c.rows))
    return "\n".join(lines)


def _verdict(row: Row) -> str:
    if row.missing:
        return row.note
    return "REGRESSED" if row.regressed else (row.note or "ok")


def _summary(rows: list[Row]) -> str:
    """The last line: what failed, or that nothing did."""
    missing = sum(row.missing for row in rows)
    regressions = sum(row.regressed for row in rows) - missing
    if missing and regressions:
        return (f"FAILED: {missing} of {len(rows)} comparisons have no data in the current run, "
                f"{regressions} over their limit")
    if missing:
        return f"FAILED: {missing} of {len(rows)} comparisons have no data in the current run (the baseline had)"
    if regressions:
        return f"REGRESSED: {regressions} of {len(rows)} comparisons over their limit"
    return f"OK: no regression over the limits ({len(rows)} comparisons)"
