"""The finished run: an immutable summary that reporters render.

:class:`RunResult` keeps the mergeable measurements (histograms and
counters), and :meth:`RunResult.to_dict` gives the documented JSON shape
(``schemas/result.schema.json``). Totals are merges of the stages, and stage
totals are merges of their requests, so counts always add up exactly.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from .metrics.histogram import RELATIVE_ERROR, Histogram
from .metrics.recorder import RequestStats

#: Quantiles reported under ``latency_ms``: key -> q.
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))
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


def summary_block(stats: RequestStats, duration_s: float) -> dict[str, Any]:
    """The block repeated for the run, each stage and each request name."""
    return {
        "requests": stats.requests,
        "ok": stats.ok,
        "failed": stats.failed,
        "rps": round(stats.requests / duration_s, 3) if duration_s > 0 else 0.0,
        "duration_s": round(duration_s, 6),
        "bytes": stats.bytes,
        "status_codes": {str(code): n for code, n in sorted(stats.status_codes.items())},
        "errors": dict(sorted(stats.errors.items())),
        "latency_ms": latency_ms(stats.latency),
        "latency_histogram": stats.latency.to_dict(),
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
    concurrency: int
    planned_requests: int | None
    planned_duration_s: float | None
    started_at: float
    duration_s: float
    by_request: list[tuple[str, RequestStats]]
    totals: RequestStats
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        block = {
            "name": self.name,
            "index": self.index,
            "model": "closed",
            "concurrency": self.concurrency,
            "planned_requests": self.planned_requests,
            "planned_duration_s": self.planned_duration_s,
            "started_at": _iso(self.started_at),
            "interrupted": self.interrupted,
        }
        block.update(summary_block(self.totals, self.duration_s))
        block["by_request"] = [{"name": name, **summary_block(s, self.duration_s)} for name, s in self.by_request]
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

    def to_dict(self) -> dict[str, Any]:
        return {
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
            "totals": summary_block(self.totals, self.duration_s),
            "stages": [stage.to_dict() for stage in self.stages],
            "by_request": [{"name": name, **summary_block(s, self.duration_s)} for name, s in self.by_request],
        }
