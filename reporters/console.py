"""Console reporter: the human summary printed at the end of every run."""

from __future__ import annotations

from typing import Any

from runner.metrics.quantiles import LATENCY_KEYS
from runner.metrics.recorder import PHASES

from .flows import data_usage, shown_flows, skipped_by_request, stage_flows
from .phases import connections_opened, measured, phase_scopes

_LATENCY_KEYS = LATENCY_KEYS
#: Error samples shown per class, and the width a sample is cut to: a hint, the JSON has them all.
_SAMPLES_SHOWN = 2
_SAMPLE_WIDTH = 100


def _row(label: str, block: dict[str, Any]) -> str:
    latency = block["latency_ms"]
    return (f"  {label:<24} {block['requests']:>10,} {block['ok']:>10,} {block['failed']:>8,} "
            f"{block['rps']:>10,.0f} " + " ".join(f"{latency[k]:>8.2f}" for k in ("p50", "p95", "p99", "max")))


def _mix(counts: dict) -> str:
    return ", ".join(f"{key}: {value:,}" for key, value in counts.items())


class ConsoleReporter:
    """Renders the documented result dict as a short text summary."""

    name = "console"

    def render(self, result: dict[str, Any]) -> bytes:
        engine = result["engine"]
        lines = [
            "",
            f"runner {result['runner_version']} · scenario '{result['scenario']['name']}' "
            f"({result['scenario']['source']})",
            f"target {result['target']} · engine {engine['name']} ({engine['reason']})",
        ]
        if result["interrupted"]:
            lines.append(f"INTERRUPTED by {result['interrupt_signal'] or 'a signal'}: "
                         f"numbers cover the part that ran")
        header = (f"  {'':<24} {'requests':>10} {'ok':>10} {'failed':>8} {'req/s':>10} "
                  + " ".join(f"{k + ' ms':>8}" for k in ("p50", "p95", "p99", "max")))
        lines += ["", header]
        for stage in result["stages"]:
            lines.append(_row(f"stage {stage['name']}", stage))
            if len(stage["by_request"]) > 1:
                for request in stage["by_request"]:
                    lines.append(_row(f"  {request['name']}"[:24], request))
        totals = result["totals"]
        lines.append(_row("total", totals))
        lines += _flows_table(result)
        lines += _phases_table(result)
        lines += [
            "",
            f"  duration {totals['duration_s']:.2f} s · {totals['bytes']:,} body bytes received",
            "  latency ms: " + ", ".join(f"{k} {totals['latency_ms'][k]:.2f}" for k in _LATENCY_KEYS),
            f"  status codes: {_mix(totals['status_codes']) or 'none'}",
            f"  errors: {_mix(totals['errors']) or 'none'}",
        ]
        lines += _error_samples(totals.get("error_samples") or {})
        lines += _skipped_line(result)
        lines += [f"  data {table.get('name', '?')}: {data_usage(table)}" for table in result.get("data") or []]
        for stage in result["stages"]:
            rate = stage.get("rate")
            if rate:
                lines.append(f"  stage {stage['name']}: open model, {rate['achieved']:,.1f}/s achieved of "
                             f"{rate['requested_mean']:,.1f}/s requested, {stage['dropped']:,} dropped, "
                             f"{rate['late_sends']:,} late")
        health = result["generator"]
        lines.append(f"  generator: {health['verdict'].upper()} · peak RSS {health['peak_rss_mb']:.0f} MB, "
                     f"CPU {health['cpu_s']:.1f} s in {health['processes']} process(es), "
                     f"loop lag p99 {health['loop_lag_p99_ms']:.1f} ms, {health['event_loop']}")
        lines += [f"    {reason}" for reason in health["reasons"]]
        lines += [f"  note: {note}" for note in result["notes"]]
        lines += _checks_table(result.get("checks", []))
        lines += _verdict_table(result)
        return ("\n".join(lines) + "\n").encode()


def _phase_cell(phase: dict[str, Any] | None) -> str:
    """``p50/p99`` of one phase in ms, or a dash when the phase has no value (never a fake 0.00)."""
    if not measured(phase):
        return "–"
    return f"{phase['p50']:.2f}/{phase['p99']:.2f}"


def _phases_table(result: dict[str, Any]) -> list[str]:
    """Where the time went, per stage and for the run: p50/p99 of each phase, and connections opened.

    The connections column is there because connect and tls get one value
    per connection opened, not per request: with keep-alive a handful of
    values stand behind them. Nothing for results older than phases.
    """
    scopes = phase_scopes(result)
    if not scopes:
        return []
    header = (f"  {'phases p50/p99 ms':<24} {'connections':>11} "
              + " ".join(f"{phase:>16}" for phase in PHASES))
    lines = ["", header]
    for label, _, phases in scopes:
        lines.append(f"  {label[:24]:<24} {connections_opened(phases):>11,} "
                     + " ".join(f"{_phase_cell(phases.get(phase)):>16}" for phase in PHASES))
    return lines


def _flow_row(label: str, flow: dict[str, Any], skipped_column: bool) -> str:
    """One flow in the columns of the request table above it, so both tables line up.

    The skipped cell is left blank when zero: a column of zeros would only
    hide the one flow whose steps did not run.
    """
    duration = flow.get("iteration_duration_ms") or {}
    skipped = flow.get("skipped", 0)
    skipped_cell = f"{skipped:>8,}" if skipped else " " * 8
    return (f"  {label:<24} {flow.get('iterations', 0):>10,} {flow.get('iterations_failed', 0):>10,} "
            f"{skipped_cell if skipped_column else ' ' * 8} {flow.get('iterations_per_s', 0.0):>10,.1f} "
            + " ".join(f"{duration.get(k, 0.0):>8.2f}" for k in ("p50", "p95", "p99", "max")))


def _flows_table(result: dict[str, Any]) -> list[str]:
    """Per-flow iterations after the request table; nothing for a plain ``flow:`` list.

    Durations are of whole iterations (think time included), so they are
    not comparable to the request latencies above and get their own header.
    With several stages each flow gets a line per stage, as requests do.
    """
    flows = shown_flows(result)
    if not flows:
        return []
    stages = result.get("stages") or []
    skipped_column = any(flow.get("skipped") for flow in flows)
    header = (f"  {'flows':<24} {'iterations':>10} {'failed':>10} "
              f"{'skipped' if skipped_column else '':>8} {'iter/s':>10} "
              + " ".join(f"{k + ' ms':>8}" for k in ("p50", "p95", "p99", "max")))
    lines = ["", header]
    for flow in flows:
        name = str(flow.get("name", ""))
        lines.append(_flow_row(name[:24], flow, skipped_column))
        if len(stages) > 1:
            for stage in stages:
                part = stage_flows(stage, name)
                if part is not None:
                    lines.append(_flow_row(f"  stage {stage.get('name', '')}"[:24], part, skipped_column))
    return lines


def _skipped_line(result: dict[str, Any]) -> list[str]:
    """Say how many flow steps were never sent, and which, when a capture failure cut iterations short."""
    skipped = (result.get("totals") or {}).get("skipped", 0)
    if not skipped:
        return []
    which = ", ".join(f"{name}: {count:,}" for name, count in skipped_by_request(result))
    return [f"  skipped: {skipped:,} flow steps not sent, a capture earlier in the iteration failed"
            + (f" ({which})" if which else "")]


def _error_samples(samples: dict[str, list[str]]) -> list[str]:
    """A line or two per error class saying what the failures said, e.g. what an ``other`` was."""
    lines = []
    for error_class, messages in samples.items():
        for position, message in enumerate(messages[:_SAMPLES_SHOWN]):
            text = " ".join(message.split())  # one line, whatever the engine wrote
            if len(text) > _SAMPLE_WIDTH:
                text = text[:_SAMPLE_WIDTH - 1] + "…"
            label = f"{error_class}:" if position == 0 else ""
            lines.append(f"    {label:<16} {text}")
        if len(messages) > _SAMPLES_SHOWN:
            lines.append(f"    {'':<16} (+{len(messages) - _SAMPLES_SHOWN} more distinct messages)")
    return lines


def _checks_table(checks: list[dict]) -> list[str]:
    if not checks:
        return []
    lines = ["", "  checks:"]
    for row in checks:
        total = row["passes"] + row["fails"]
        mark = "PASS" if row["fails"] == 0 else "FAIL"
        lines.append(f"    {mark}  {row['request']}: {row['name']}  "
                     f"({row['passes']:,}/{total:,} passed, {100.0 * row['passes'] / total if total else 0:.2f}%)")
    return lines


def _verdict_table(result: dict) -> list[str]:
    """The PASS/FAIL table every run ends with: each threshold with its measured value."""
    thresholds = result.get("thresholds", [])
    lines = [""]
    if result.get("aborted"):
        lines.append(f"  ABORTED at {result['aborted']['at_s']:.1f} s: {result['aborted']['reason']}")
    if thresholds:
        lines.append("  thresholds:")
        for row in thresholds:
            mark = "PASS" if row["passed"] else "FAIL"
            measured = _no_data(row) if row["actual"] is None else _measured(row)
            extra = f" ({row['reason']})" if row["reason"] and row["actual"] is not None else ""
            lines.append(f"    {mark}  {row['expression']:<40} measured {measured}{extra}")
    lines.append(f"  result: {'PASS' if result.get('passed', True) else 'FAIL'}"
                 + ("" if thresholds else " (no thresholds)"))
    return lines


def _no_data(row: dict) -> str:
    """"no data", with the reason when the judge gave one ("no data: no TLS handshake, ..."), since what
    was missing (no request at all, or only no https connection) decides what to fix."""
    reason = row.get("reason") or ""
    return reason if reason.startswith("no data") else "no data"


def _measured(row: dict) -> str:
    value = row["actual"]
    if row["unit"] == "ms":
        return f"{value:,.2f} ms"
    if row["unit"] == "ratio":
        return f"{100 * value:.3f}%"
    if row["unit"] == "per_s":
        return f"{value:,.1f}/s"
    return f"{value:,.0f}"
