"""The finished run: an immutable summary that reporters render.

:class:`RunResult` keeps the mergeable measurements (histograms and
counters), and :meth:`RunResult.to_dict` gives the documented JSON shape
(``schemas/result.schema.json``). Totals are merges of the stages, and stage
totals are merges of their requests, so counts always add up exactly.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import unquote, unquote_plus

from .metrics.histogram import RELATIVE_ERROR, Histogram
from . import __version__
from .health import LAG_P99_LIMIT_MS, RATE_MET_RATIO
from .metrics.quantiles import QUANTILES
from .metrics.recorder import PHASES, FlowStats, RequestStats
from .metrics.timeseries import Bucket, merge_series
from .secrets import redact
from .thresholds import check_summary, evaluate

#: Quantiles reported under ``latency_ms``: key -> q.
PERCENTILES = QUANTILES
RESULT_FORMAT_VERSION = 1


def _iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).isoformat(timespec="milliseconds")


def latency_ms(histogram: Histogram) -> dict[str, float]:
    """min/mean/percentiles/max of a histogram in milliseconds, rounded to the µs."""
    def ms(value_us: float) -> float:
        return round(value_us / 1000.0, 3)

    block = {"min": ms(histogram.min_us if histogram.total else 0), "mean": ms(histogram.mean())}
    for key, q in PERCENTILES:
        block[key] = ms(histogram.quantile(q))
    block["max"] = ms(histogram.max_us)
    return block


def phases_ms(stats: RequestStats) -> dict[str, dict[str, float]]:
    """Each timing phase as ``count`` plus the ``latency_ms`` keys.

    The count is stated because the phases are not counted alike: connect
    and tls get a value only when a request opened a connection (a reused
    keep-alive connection adds none), ttfb and receive one per response. A
    p95 of connect over 10 values and a p95 of ttfb over 10,000 read very
    differently, and a phase with count 0 was not measured at all (its other
    keys are then 0, as ``latency_ms`` of an empty histogram). The bucket
    arrays are left out: ``latency_histogram`` already makes results
    mergeable, and four more per block would multiply a result's size.
    """
    return {phase: {"count": getattr(stats, phase).total, **latency_ms(getattr(stats, phase))} for phase in PHASES}


def summary_block(stats: RequestStats, duration_s: float) -> dict[str, Any]:
    """The block repeated for the run, each stage and each request name."""
    return {
        "requests": stats.requests,
        "ok": stats.ok,
        "failed": stats.failed,
        "dropped": stats.dropped,
        "rps": round(stats.requests / duration_s, 3) if duration_s > 0 else 0.0,
        "duration_s": round(duration_s, 6),
        "bytes": stats.bytes,
        "status_codes": {str(code): n for code, n in sorted(stats.status_codes.items())},
        "errors": dict(sorted(stats.errors.items())),
        "error_samples": {name: list(messages) for name, messages in sorted(stats.error_samples.items())},
        "latency_ms": latency_ms(stats.latency),
        "service_time_ms": latency_ms(stats.service),
        "latency_histogram": stats.latency.to_dict(),
        "phases_ms": phases_ms(stats),
        "checks": {name: list(tally) for name, tally in stats.checks.items()},
        "skipped": stats.skipped,
    }


def flow_block(name: str, flow: FlowStats, requests: RequestStats, duration_s: float) -> dict[str, Any]:
    """One flow: its iterations (count, failures, duration as k6's iteration_duration) and its requests."""
    return {
        "name": name,
        "iterations": flow.iterations,
        "iterations_failed": flow.failed,
        "iterations_per_s": round(flow.iterations / duration_s, 3) if duration_s > 0 else 0.0,
        "dropped": flow.dropped,
        "requests": requests.requests,
        "ok": requests.ok,
        "failed": requests.failed,
        "skipped": requests.skipped,
        "iteration_duration_ms": latency_ms(flow.duration),
        "iteration_duration_histogram": flow.duration.to_dict(),
    }


def group_by_name(names: list[str], stats: list[RequestStats]) -> list[tuple[str, RequestStats]]:
    """Merge flow entries that share a name, keeping first-appearance order."""
    grouped: dict[str, RequestStats] = {}
    for name, part in zip(names, stats):
        grouped.setdefault(name, RequestStats()).merge(part)
    return list(grouped.items())


@dataclass(frozen=True)
class StageResult:
    index: int
    name: str
    model: str
    concurrency: int  # largest number of requests in flight allowed
    planned_requests: int | None
    planned_duration_s: float | None
    requested_rate: tuple[float, float] | None  # open model: (from, to) arrivals per second
    started_at: float
    duration_s: float
    by_request: list[tuple[str, RequestStats]]
    totals: RequestStats
    series: list[Bucket]
    interval_s: float
    scheduled: int = 0
    late: int = 0
    interrupted: bool = False
    by_flow: list = field(default_factory=list)  # (name, FlowStats, RequestStats of its steps)

    @property
    def arrival_window_s(self) -> float:
        """Open model: the time arrivals were due in (the planned duration, unless cut short)."""
        if self.planned_duration_s is not None and not self.interrupted:
            return min(self.planned_duration_s, self.duration_s)
        return self.duration_s

    @property
    def achieved_rate(self) -> float:
        """Open model: arrivals actually sent per second over the arrival window."""
        sent = self.scheduled - self.totals.dropped
        window = self.arrival_window_s
        return sent / window if window > 0 else 0.0

    @property
    def target_rate(self) -> float | None:
        """Open model: the mean rate the stage asked for."""
        if self.requested_rate is None:
            return None
        return (self.requested_rate[0] + self.requested_rate[1]) / 2.0

    @property
    def rate_met(self) -> bool:
        target = self.target_rate
        return target is None or self.achieved_rate >= RATE_MET_RATIO * min(target, self._capped_target())

    def _capped_target(self) -> float:
        """A requests-bounded open stage may end before its duration: judge it on what it was asked."""
        window = self.arrival_window_s
        return self.scheduled / window if window > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        block = {
            "name": self.name,
            "index": self.index,
            "model": self.model,
            "concurrency": self.concurrency,
            "planned_requests": self.planned_requests,
            "planned_duration_s": self.planned_duration_s,
            "started_at": _iso(self.started_at),
            "interrupted": self.interrupted,
        }
        if self.requested_rate is not None:
            block["rate"] = {
                "requested_from": self.requested_rate[0],
                "requested_to": self.requested_rate[1],
                "requested_mean": round(self.target_rate or 0.0, 3),
                "achieved": round(self.achieved_rate, 3),
                "scheduled": self.scheduled,
                "late_sends": self.late,
                "met": self.rate_met,
            }
        block.update(summary_block(self.totals, self.duration_s))
        block["by_request"] = [{"name": name, **summary_block(s, self.duration_s)} for name, s in self.by_request]
        block["by_flow"] = [flow_block(name, f, r, self.duration_s) for name, f, r in self.by_flow]
        block["timeseries"] = [bucket.to_dict(self.interval_s) for bucket in self.series]
        block["checks"] = check_summary(block["by_request"])
        return block


@dataclass(frozen=True)
class RunResult:
    """Everything reporters need; built once, after the run."""

    scenario: str
    source: str
    target: str
    engine: str
    engine_reason: str
    started_at: float
    finished_at: float
    duration_s: float
    stages: list[StageResult]
    totals: RequestStats
    by_request: list[tuple[str, RequestStats]]
    runner_version: str
    interrupted: bool = False
    interrupt_signal: str | None = None
    notes: list[str] = field(default_factory=list)
    generator: dict[str, Any] = field(default_factory=dict)
    thresholds: tuple = ()  # runner.schemas.thresholds.Threshold objects
    threshold_sources: tuple = ()  # "file:line" of each
    aborted: dict[str, Any] | None = None
    by_flow: list = field(default_factory=list)  # (name, FlowStats, RequestStats), whole run
    data: list = field(default_factory=list)  # per data table: {"name", "rows", "used", "mode", "exhausted"}
    shards: list = field(default_factory=list)  # distributed run: one dict per shard (runner.cluster); else empty
    _verdicts: list = field(default_factory=list, compare=False, repr=False)  # thresholds, judged once

    def _judged(self, document: dict) -> list[dict]:
        """The thresholds' outcomes, evaluated on the first ``to_dict`` and kept (the result never changes)."""
        if not self._verdicts and self.thresholds:
            self._verdicts.extend(evaluate(document, self.thresholds, self.threshold_sources))
        return self._verdicts

    def to_dict(self) -> dict[str, Any]:
        document = {
            "format_version": RESULT_FORMAT_VERSION,
            "runner_version": self.runner_version,
            "scenario": {"name": self.scenario, "source": self.source},
            "target": self.target,
            "engine": {"name": self.engine, "reason": self.engine_reason},
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "interrupted": self.interrupted,
            "interrupt_signal": self.interrupt_signal,
            "histogram_relative_error": RELATIVE_ERROR,
            "notes": list(self.notes),
            "generator": dict(self.generator),
            "passed": True,
            "aborted": self.aborted,
            "thresholds": [],
            "checks": [],
            "totals": summary_block(self.totals, self.duration_s),
            "stages": [stage.to_dict() for stage in self.stages],
            "by_request": [{"name": name, **summary_block(s, self.duration_s)} for name, s in self.by_request],
            "by_flow": [flow_block(name, f, r, self.duration_s) for name, f, r in self.by_flow],
            "data": [dict(table) for table in self.data],
            "shards": [dict(shard) for shard in self.shards],
        }
        document["checks"] = check_summary(document["by_request"])
        document["thresholds"] = [dict(outcome) for outcome in self._judged(document)]
        document["passed"] = all(t["passed"] for t in document["thresholds"]) and self.aborted is None
        return document


def build_result(plan, base_url: str, reports: list, control, shards: list | None = None,
                 notes: list | None = None) -> RunResult:
    """Merge the process reports of a run, stage by stage, into one result.

    A distributed run also passes its ``shards`` (where each ran, whether it
    finished) and ``notes`` (a lost shard, say); a lost shard's report is
    made of its last snapshots and merges like any other.
    """
    names = [request.name for request in plan.flow]
    flows = plan.flow_plans()
    stages = []
    for stage in plan.stages:
        parts = [o for report in reports for o in report.outcomes if o.plan.index == stage.index]
        if not parts:
            continue
        per_entry = [RequestStats.merged([p.stats[i] for p in parts]) for i in range(len(names))]
        stages.append(StageResult(
            index=stage.index,
            name=stage.name,
            model=stage.model,
            concurrency=stage.concurrency,
            planned_requests=stage.requests,
            planned_duration_s=stage.duration_s,
            requested_rate=(stage.rate_start, stage.rate_end) if stage.model == "open" else None,
            started_at=min(p.started_at for p in parts),
            duration_s=max(p.duration_s for p in parts),
            by_request=group_by_name(names, per_entry),
            totals=RequestStats.merged(per_entry),
            series=merge_series([p.series for p in parts]),
            interval_s=plan.interval_s,
            scheduled=sum(p.scheduled for p in parts),
            late=sum(p.late for p in parts),
            interrupted=any(p.interrupted for p in parts),
            by_flow=_by_flow(plan, flows, parts, per_entry),
        ))
    per_entry_run = [RequestStats.merged([s for stage in stages for n, s in stage.by_request if n == name])
                     for name in dict.fromkeys(names)]
    totals = RequestStats.merged([stage.totals for stage in stages])
    merged_levels = [totals, *per_entry_run] + [s for stage in stages for s in (stage.totals,
                                                                              *(p for _, p in stage.by_request))]
    for stats in merged_levels:
        scrub_error_samples(stats, plan.secrets)
    started_wall = min(r.started_wall for r in reports)
    duration = max(r.duration_s for r in reports)
    signal_name = control.signal_name or next((r.signal_name for r in reports if r.signal_name), None)
    return RunResult(
        scenario=plan.scenario_name,
        source=plan.source,
        target=base_url if plan.target_url else f"builtin ({base_url})",
        engine=reports[0].engine,
        engine_reason=reports[0].engine_reason,
        started_at=started_wall,
        finished_at=started_wall + duration,
        duration_s=duration,
        stages=stages,
        totals=totals,
        by_request=list(zip(dict.fromkeys(names), per_entry_run)),
        runner_version=__version__,
        interrupted=signal_name is not None,
        interrupt_signal=signal_name,
        generator=generator_verdict(stages, [r.health for r in reports]),
        thresholds=plan.thresholds,
        threshold_sources=plan.threshold_sources,
        aborted=control.aborted,
        by_flow=[(flow.name,
                  _merged_flows([stage.by_flow[flow.index][1] for stage in stages]),
                  RequestStats.merged([stage.by_flow[flow.index][2] for stage in stages]))
                 for flow in flows],
        data=_data_report(plan, reports),
        shards=list(shards or []),
        notes=list(notes or []),
    )


def _by_flow(plan, flows, parts: list, per_entry: list[RequestStats]) -> list:
    """Per flow of one stage: merged iteration stats, and the merge of its steps' request stats."""
    blocks = []
    for flow in flows:
        iterations = _merged_flows([p.flows[flow.index] for p in parts if len(p.flows) > flow.index])
        steps = [i for i, request in enumerate(plan.flow) if request.flow == flow.index] if plan.flows else \
            list(range(len(per_entry)))
        blocks.append((flow.name, iterations, RequestStats.merged([per_entry[i] for i in steps])))
    return blocks


def _merged_flows(parts: list[FlowStats]) -> FlowStats:
    total = FlowStats()
    for part in parts:
        total.merge(part)
    return total


def _data_report(plan, reports: list) -> list[dict]:
    """How many rows of each data table were used (the last stage's counts are cumulative per process)."""
    rows = []
    for table in plan.data:
        used = 0
        for report in reports:
            counts = [o.data_used.get(table.name, 0) for o in report.outcomes]
            used += max(counts, default=0)
        rows.append({"name": table.name, "file": table.path, "rows": len(table), "mode": table.mode,
                     "per": table.per, "used": used,
                     "exhausted": table.mode == "unique" and used >= len(table)})
    return rows


def scrub_error_samples(stats: RequestStats, secrets: Iterable[str]) -> None:
    """Mask secrets in ``stats.error_samples`` (a merged copy, never the executor's own stats).

    Reports are scrubbed byte for byte before they are written, but an
    engine's message may quote a URL in which a secret is percent-encoded, a
    form the byte-level scrub cannot see; such a message is shown decoded,
    with the secret masked.
    """
    if not secrets or not stats.error_samples:
        return
    for error_class, messages in stats.error_samples.items():
        stats.error_samples[error_class] = list(dict.fromkeys(_scrub_message(m, secrets) for m in messages))


def _scrub_message(message: str, secrets: Iterable[str]) -> str:
    message = _redact_text(message, secrets)
    for decode in (unquote, unquote_plus):
        decoded = decode(message)
        scrubbed = _redact_text(decoded, secrets)
        if scrubbed != decoded:
            message = scrubbed
    return message


def _redact_text(text: str, secrets: Iterable[str]) -> str:
    return redact(text.encode(), secrets).decode("utf-8", "replace")


def generator_verdict(stages: list[StageResult], processes: list[dict]) -> dict[str, Any]:
    """Say whether the numbers describe the server, or a generator that could not keep up."""
    reasons = []
    dropped = sum(stage.totals.dropped for stage in stages)
    if dropped:
        reasons.append(f"{dropped} arrivals dropped: every in-flight slot was busy (raise max_in_flight)")
    for stage in stages:
        if stage.target_rate is not None and not stage.rate_met:
            reasons.append(f"stage {stage.name}: achieved {stage.achieved_rate:.1f}/s of "
                           f"{stage.target_rate:.1f}/s requested")
    resource_errors = sum(stage.totals.errors.get("client_resource", 0) for stage in stages)
    if resource_errors:
        reasons.append(f"{resource_errors} requests failed with client_resource: this machine ran out of "
                       f"file descriptors or ephemeral ports (EMFILE/EADDRNOTAVAIL); keep connections alive, "
                       f"lower the concurrency, or widen net.ipv4.ip_local_port_range")
    worst_lag = max((p["loop_lag_ms"]["p99"] for p in processes), default=0.0)
    if worst_lag > LAG_P99_LIMIT_MS:
        reasons.append(f"event-loop lag p99 {worst_lag:.1f} ms > {LAG_P99_LIMIT_MS:.0f} ms: "
                       f"the generator was too busy to send and read on time")
    return {
        "verdict": "saturated" if reasons else "ok",
        "reasons": reasons,
        "processes": len(processes),
        "peak_rss_mb": max((p["peak_rss_mb"] for p in processes), default=0.0),
        "cpu_s": round(sum(p["cpu_s"] for p in processes), 3),
        "event_loop": processes[0]["event_loop"] if processes else "asyncio",
        "loop_lag_p99_ms": worst_lag,
        "per_process": processes,
    }
