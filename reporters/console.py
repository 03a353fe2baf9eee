"""Console reporter: the human summary printed at the end of every run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.result import summary_block

if TYPE_CHECKING:
    from runner.metrics.recorder import RequestStats
    from runner.result import RunResult

_LATENCY_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")


def _row(label: str, stats: "RequestStats", duration_s: float) -> str:
    block = summary_block(stats, duration_s)
    latency = block["latency_ms"]
    return (f"  {label:<24} {block['requests']:>10,} {block['ok']:>10,} {block['failed']:>8,} "
            f"{block['rps']:>10,.0f} " + " ".join(f"{latency[k]:>8.2f}" for k in ("p50", "p95", "p99", "max")))


def _mix(counts: dict, prefix: str = "") -> str:
    return ", ".join(f"{prefix}{key}: {value:,}" for key, value in sorted(counts.items(), key=lambda kv: str(kv[0])))


class ConsoleReporter:
    name = "console"

    def render(self, result: "RunResult") -> bytes:
        lines = [
            "",
            f"runner {result.runner_version} · scenario '{result.scenario}' ({result.source})",
            f"target {result.target} · engine {result.engine} ({result.engine_reason})",
        ]
        if result.interrupted:
            lines.append(f"INTERRUPTED by {result.interrupt_signal or 'a signal'}: numbers cover the part that ran")
        header = (f"  {'':<24} {'requests':>10} {'ok':>10} {'failed':>8} {'req/s':>10} "
                  + " ".join(f"{k + ' ms':>8}" for k in ("p50", "p95", "p99", "max")))
        lines += ["", header]
        for stage in result.stages:
            lines.append(_row(f"stage {stage.name}", stage.totals, stage.duration_s))
            if len(stage.by_request) > 1:
                for name, stats in stage.by_request:
                    lines.append(_row(f"  {name}"[:24], stats, stage.duration_s))
        lines.append(_row("total", result.totals, result.duration_s))
        totals = summary_block(result.totals, result.duration_s)
        lines += [
            "",
            f"  duration {totals['duration_s']:.2f} s · {totals['bytes']:,} body bytes received",
            f"  latency ms: " + ", ".join(f"{k} {totals['latency_ms'][k]:.2f}" for k in _LATENCY_KEYS),
            f"  status codes: {_mix(result.totals.status_codes) or 'none'}",
            f"  errors: {_mix(result.totals.errors) or 'none'}",
        ]
        for stage in result.stages:
            if stage.target_rate is not None:
                lines.append(f"  stage {stage.name}: open model, {stage.achieved_rate:,.1f}/s achieved of "
                             f"{stage.target_rate:,.1f}/s requested, {stage.totals.dropped:,} dropped, "
                             f"{stage.late:,} late")
        health = result.generator
        if health:
            lines.append(f"  generator: {health['verdict'].upper()} · peak RSS {health['peak_rss_mb']:.0f} MB, "
                         f"CPU {health['cpu_s']:.1f} s in {health['processes']} process(es), "
                         f"loop lag p99 {health['loop_lag_p99_ms']:.1f} ms, {health['event_loop']}")
            lines += [f"    {reason}" for reason in health["reasons"]]
        lines += [f"  note: {note}" for note in result.notes]
        return ("\n".join(lines) + "\n").encode()
