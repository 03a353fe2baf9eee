"""CSV reporter: one flat table for spreadsheets, pandas and CI dashboards.

Everything goes in ONE file so a single ``--out csv=PATH`` captures the run;
a ``kind`` column tells the row types apart so a reader can filter instead of
joining files:

* ``summary`` -- one row per stage (``request`` empty) and, after it, one row
  per request name within that stage;
* ``total`` -- one row for the whole run (``stage`` and ``request`` empty);
* ``flow`` -- one row per flow within each stage, then one per flow for the
  whole run (``stage`` empty), named in the ``flow`` column: ``iterations``,
  ``iterations_failed``, ``iterations_per_s``, ``dropped`` arrivals, the
  requests, ok, failed and ``skipped`` steps of the flow, and in the latency
  columns the duration of whole iterations (think time included). The
  implicit ``default`` flow of a plain ``flow:`` list is written too: a
  spreadsheet is better served by rows that are always there than by the
  console's judgement of what is worth showing;
* ``data`` -- one row per data table, named in the ``table`` column, with
  its ``rows``, how many were ``used`` (handed out: may exceed ``rows``
  for sequential and random tables), ``mode``, ``per`` and ``exhausted``;
* ``timeseries`` -- one row per interval per stage, ``t`` seconds after the
  stage start (the end of the interval).

The stage ``summary`` rows add up to the ``total`` row for requests, ok,
failed, dropped, skipped and bytes, because the runner builds totals by
merging stages; likewise a flow's stage rows add up to its whole-run row.
``skipped`` counts flow steps not sent because a capture earlier in the
iteration failed. New columns are appended at the end, so a reader that
picks columns by position keeps working.

The timing phases come last, on ``summary`` and ``total`` rows: for each of
connect, tls, ttfb and receive its ``count`` and p50/p95/p99 in ms
(``ttfb_p95_ms``...). connect and tls count connections opened, not
requests (a reused keep-alive connection adds no value), ttfb and receive
count responses. A phase with count 0 has empty percentile cells, and a
result written before phases has every phase cell empty.
Cells that do not apply to a row kind are left empty rather than zero, so an
empty cell never reads as a measurement. ``error_count`` counts requests that
got no response at all (connect errors, timeouts...), the sum of ``errors``;
``failed`` also includes HTTP error statuses.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from runner.metrics.quantiles import INTERVAL_KEYS
from runner.metrics.recorder import PHASES

from .phases import measured, phases_of

#: Per phase: how many values, and these percentiles (ms).
PHASE_PERCENTILES = ("p50", "p95", "p99")
PHASE_COLUMNS = tuple(column for phase in PHASES
                      for column in (f"{phase}_count", *(f"{phase}_{key}_ms" for key in PHASE_PERCENTILES)))

COLUMNS = (
    "kind", "stage", "request", "t",
    "requests", "sent", "ok", "failed", "dropped", "in_flight", "rps", "duration_s", "bytes",
    "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms", "error_count",
    "skipped", "flow", "iterations", "iterations_failed", "iterations_per_s",
    "table", "rows", "used", "mode", "per", "exhausted",
    *PHASE_COLUMNS,
)

_SUMMARY_LATENCY = (*INTERVAL_KEYS, "mean")
_INTERVAL_LATENCY = INTERVAL_KEYS  # p95/p999 only in newer results


def _summary_row(kind: str, stage: str, request: str, block: dict[str, Any]) -> dict[str, Any]:
    latency = block.get("latency_ms") or {}
    row: dict[str, Any] = {
        "kind": kind, "stage": stage, "request": request,
        "requests": block.get("requests", 0), "ok": block.get("ok", 0), "failed": block.get("failed", 0),
        "dropped": block.get("dropped", 0), "rps": block.get("rps", ""),
        "duration_s": block.get("duration_s", ""), "bytes": block.get("bytes", 0),
        "error_count": sum((block.get("errors") or {}).values()),
        "skipped": block.get("skipped", ""),  # empty in results older than flows: not measured
    }
    for key in _SUMMARY_LATENCY:
        row[f"{key}_ms"] = latency.get(key, "")
    phases = phases_of(block)
    if phases is not None:
        for phase in PHASES:
            numbers = phases.get(phase) or {}
            row[f"{phase}_count"] = numbers.get("count", 0)
            if measured(numbers):
                row.update({f"{phase}_{key}_ms": numbers.get(key, "") for key in PHASE_PERCENTILES})
    return row


def _flow_row(stage: str, flow: dict[str, Any]) -> dict[str, Any]:
    duration = flow.get("iteration_duration_ms") or {}
    row: dict[str, Any] = {"kind": "flow", "stage": stage, "flow": flow.get("name", "")}
    for key in ("iterations", "iterations_failed", "iterations_per_s", "requests", "ok", "failed", "dropped",
                "skipped"):
        row[key] = flow.get(key, 0)
    for key in _SUMMARY_LATENCY:
        row[f"{key}_ms"] = duration.get(key, "")
    return row


def _data_row(table: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": "data", "table": table.get("name", "")}
    for key in ("rows", "used", "mode", "per"):
        row[key] = table.get(key, "")
    row["exhausted"] = str(bool(table.get("exhausted"))).lower()  # as in the JSON, not Python's True
    return row


def _interval_row(stage: str, interval: dict[str, Any]) -> dict[str, Any]:
    latency = interval.get("latency_ms") or {}
    row: dict[str, Any] = {"kind": "timeseries", "stage": stage}
    for key in ("t", "sent", "ok", "failed", "dropped", "in_flight", "rps"):
        row[key] = interval.get(key, "")
    for key in _INTERVAL_LATENCY:
        row[f"{key}_ms"] = latency.get(key, "")
    return row  # no mean: intervals do not record one


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows in file order, as dicts keyed by :data:`COLUMNS` (missing keys = empty cells)."""
    stages = result.get("stages") or []
    rows: list[dict[str, Any]] = []
    for stage in stages:
        rows.append(_summary_row("summary", stage["name"], "", stage))
        for request in stage.get("by_request") or []:
            rows.append(_summary_row("summary", stage["name"], request["name"], request))
    rows.append(_summary_row("total", "", "", result.get("totals") or {}))
    for stage in stages:
        rows.extend(_flow_row(stage["name"], flow) for flow in stage.get("by_flow") or [])
    rows.extend(_flow_row("", flow) for flow in result.get("by_flow") or [])
    rows.extend(_data_row(table) for table in result.get("data") or [])
    for stage in stages:
        rows.extend(_interval_row(stage["name"], interval) for interval in stage.get("timeseries") or [])
    return rows


class CsvReporter:
    """Renders the result dict as one CSV table (header row, ``\\n`` line endings)."""

    name = "csv"

    def render(self, result: dict[str, Any]) -> bytes:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows(result))
        return buffer.getvalue().encode()
