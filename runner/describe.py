"""The dry run: what a plan will do, worked out and printed before anything is sent.

``runner plan FILE`` (and ``runner run --dry-run FILE``) exists so that a user
sees ``rate: 20000/s`` where ``2000/s`` was meant *before* it reaches a shared
staging server. Every number here comes from the same pure functions the run
uses -- the arrival formula (:mod:`runner.pacing`) and the split across worker
processes (:mod:`runner.sharding`) -- so the preview and the run cannot
disagree. Nothing in this module opens a socket, starts the built-in target
or reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .limits import FD_HEADROOM
from .pacing import ArrivalTimeline
from .plan import Plan, StagePlan
from .sharding import share

#: Width of the longest bar of the rate chart, in characters.
CHART_WIDTH = 40
#: Rows drawn for a ramping rate: start, quarters and end.
RAMP_ROWS = 5


@dataclass(frozen=True, slots=True)
class ProcessShare:
    """What one worker process of a stage sends, and the connections it opens."""

    requests: int | None  # None: as many as fit in the duration
    connections: int


@dataclass(frozen=True, slots=True)
class StageOutline:
    """One stage as it will run.

    ``requests`` is the exact number the stage sends (closed model with
    ``requests``; open model: the arrivals on its timeline), or None when a
    closed stage sends as many as the server answers within its duration.
    ``duration_s`` is the expected length, or None when it depends on how
    fast the server answers.
    """

    name: str
    model: str
    load: str
    requests: int | None
    requests_capped: bool  # closed model with requests and duration: the duration may end it first
    duration_s: float | None
    grace_s: float
    connections: int
    processes: tuple[ProcessShare, ...]
    rate_samples: tuple[tuple[float, float], ...]  # open model: (seconds into the stage, arrivals per second)
    data_rows: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanOutline:
    """The whole run as it will happen, in numbers (see :func:`outline`)."""

    scenario: str
    source: str
    target: str
    engine: str
    workers: int
    flow: tuple[str, ...]
    stages: tuple[StageOutline, ...]
    outputs: tuple[tuple[str, str], ...]
    thresholds: int

    @property
    def total_requests(self) -> int | None:
        """Every request the run sends, or None when a stage's count depends on the server."""
        counts = [stage.requests for stage in self.stages]
        return None if None in counts else sum(counts)

    @property
    def total_duration_s(self) -> float | None:
        """Expected length without grace periods, or None when a stage's length depends on the server."""
        durations = [stage.duration_s for stage in self.stages]
        return None if None in durations else sum(durations)

    @property
    def peak_connections(self) -> int:
        return max(stage.connections for stage in self.stages)

    @property
    def peak_connections_per_process(self) -> int:
        return max(share.connections for stage in self.stages for share in stage.processes)


# -- numbers ---------------------------------------------------------------------------------


def outline(plan: Plan, outputs: tuple[tuple[str, str], ...] | None = None) -> PlanOutline:
    """Work out everything the run will do, from the plan alone."""
    from .engines import select_engine

    engine_class, reason = select_engine(plan, plan.target_url)
    engine_name = engine_class.__name__.removesuffix("Engine").lower()
    shares = [share(plan, part, plan.workers) for part in range(plan.workers)]
    return PlanOutline(
        scenario=plan.scenario_name,
        source=plan.source,
        target=plan.target_url or "builtin",
        engine=f"{engine_name} ({reason})",
        workers=plan.workers,
        flow=tuple(f"{request.method} {request.path_template}" for request in plan.flow),
        stages=tuple(_stage_outline(stage, [p.stages[stage.index] for p in shares]) for stage in plan.stages),
        outputs=tuple(plan.outputs if outputs is None else outputs),
        thresholds=len(plan.thresholds),
    )


def _stage_outline(stage: StagePlan, process_stages: list[StagePlan]) -> StageOutline:
    if stage.model == "open":
        return _open_stage(stage, process_stages)
    return _closed_stage(stage, process_stages)


def _closed_stage(stage: StagePlan, process_stages: list[StagePlan]) -> StageOutline:
    """Workers send back to back: the count is exact when given, the duration when given."""
    processes = tuple(ProcessShare(part.requests, max(part.concurrency_start, part.concurrency_end))
                      for part in process_stages)
    return StageOutline(
        name=stage.name, model="closed", load=_closed_load(stage), requests=stage.requests,
        requests_capped=stage.requests is not None and stage.duration_s is not None,
        duration_s=stage.duration_s, grace_s=stage.grace_s, connections=stage.concurrency,
        processes=processes, rate_samples=(), data_rows=_data_rows(stage),
    )


def _open_stage(stage: StagePlan, process_stages: list[StagePlan]) -> StageOutline:
    """Arrivals follow the timeline: their count and the time the last is due are known exactly."""
    timeline = ArrivalTimeline(stage.rate_start, stage.rate_end, stage.duration_s)
    arrivals = arrival_count(stage)
    window_s = stage.duration_s if arrivals == timeline.total() else timeline.due(arrivals)
    processes = tuple(ProcessShare(len(range(part.seq_offset, arrivals, part.seq_step)), part.max_in_flight)
                      for part in process_stages)
    return StageOutline(
        name=stage.name, model="open", load=_open_load(stage), requests=arrivals, requests_capped=False,
        duration_s=window_s, grace_s=stage.grace_s, connections=sum(p.connections for p in processes),
        processes=processes, rate_samples=_rate_samples(timeline, window_s), data_rows=_data_rows(stage),
    )


def arrival_count(stage: StagePlan) -> int:
    """Arrivals an open-model stage schedules: its timeline up to the duration, capped by ``requests``."""
    bounds = [b for b in (stage.requests, ArrivalTimeline(stage.rate_start, stage.rate_end,
                                                          stage.duration_s).total()) if b is not None]
    return min(bounds)


def _rate_samples(timeline: ArrivalTimeline, window_s: float) -> tuple[tuple[float, float], ...]:
    if timeline.rate_start == timeline.rate_end:
        return ((0.0, timeline.rate_start),)
    times = [window_s * i / (RAMP_ROWS - 1) for i in range(RAMP_ROWS)]
    return tuple((t, timeline.rate_at(t)) for t in times)


def _data_rows(stage: StagePlan) -> tuple[str, ...]:
    """The data rows a stage will use, one line per data table.

    Scenarios cannot name data files yet, so there is nothing to list. When
    plans carry data tables, this is the one place that says, per table, its
    file, its row count and how many rows this stage takes (and whether a
    ``unique`` table runs out before the stage ends); the renderer already
    prints whatever is returned here.
    """
    return ()


def _closed_load(stage: StagePlan) -> str:
    if stage.concurrency_start == stage.concurrency_end:
        return f"{stage.concurrency_end:,} workers"
    return f"{stage.concurrency_start:,} -> {stage.concurrency_end:,} workers"


def _open_load(stage: StagePlan) -> str:
    if stage.rate_start == stage.rate_end:
        return f"{_rate(stage.rate_start)}, at most {stage.max_in_flight:,} in flight"
    return f"{_rate(stage.rate_start)} -> {_rate(stage.rate_end)}, at most {stage.max_in_flight:,} in flight"


# -- text ------------------------------------------------------------------------------------


def render(plan_outline: PlanOutline) -> str:
    """The dry run's report: header, one block per stage, totals, the rate chart."""
    lines = _header(plan_outline)
    for number, stage in enumerate(plan_outline.stages, 1):
        lines += _stage_lines(number, stage, plan_outline.workers)
    lines += _totals(plan_outline)
    lines += _rate_chart(plan_outline.stages)
    lines += ["", "dry run: nothing was sent and no server was started."]
    return "\n".join(lines) + "\n"


def _header(plan_outline: PlanOutline) -> list[str]:
    target = plan_outline.target
    if target == "builtin":
        target = "builtin (runner's own server, started on a free loopback port by the run)"
    reports = ", ".join(f"{name} -> {'stdout' if path == '-' else path}" for name, path in plan_outline.outputs)
    lines = [
        f"scenario: {plan_outline.scenario} ({plan_outline.source})",
        f"target:   {target}",
        f"engine:   {plan_outline.engine}",
        f"workers:  {plan_outline.workers} process{'es' if plan_outline.workers != 1 else ''}",
        "flow:     " + " | ".join(plan_outline.flow),
    ]
    if plan_outline.thresholds:
        lines.append(f"thresholds: {plan_outline.thresholds} (judged after the run)")
    if reports:
        lines.append(f"reports:  {reports}")
    return lines


def _stage_lines(number: int, stage: StageOutline, workers: int) -> list[str]:
    lines = ["", f"stage {number}: {stage.name} ({stage.model} model)",
             f"  load:        {stage.load}",
             f"  sends:       {_sends(stage)}",
             f"  duration:    {_stage_duration(stage)}",
             f"  connections: {stage.connections:,}"]
    if workers > 1:
        lines.append("  per process: " + "; ".join(_process_share(number, process, stage.model)
                                                 for number, process in enumerate(stage.processes, 1)))
    lines.append("  data:        " + ("; ".join(stage.data_rows) if stage.data_rows else "none"))
    return lines


def _sends(stage: StageOutline) -> str:
    if stage.requests is None:
        return f"as many requests as the server answers in {_duration(stage.duration_s)}"
    noun = "arrivals" if stage.model == "open" else "requests"
    if stage.requests_capped:
        return f"{stage.requests:,} {noun}, unless {_duration(stage.duration_s)} runs out first"
    return f"{stage.requests:,} {noun}"


def _stage_duration(stage: StageOutline) -> str:
    if stage.duration_s is None:
        return f"until {stage.requests:,} requests are answered (depends on the server)"
    grace = f" + up to {_duration(stage.grace_s)} grace for requests in flight"
    if stage.requests_capped:
        return f"at most {_duration(stage.duration_s)}{grace}"
    if stage.model == "open":
        return f"{_duration(stage.duration_s)} of arrivals{grace}"
    return f"{_duration(stage.duration_s)}{grace}"


def _process_share(number: int, process: ProcessShare, model: str) -> str:
    if model == "open":
        return f"process {number}: {process.requests:,} arrivals, at most {process.connections:,} in flight"
    sends = "open-ended" if process.requests is None else f"{process.requests:,} requests"
    return f"process {number}: {sends}, {process.connections:,} workers"


def _totals(plan_outline: PlanOutline) -> list[str]:
    stages = plan_outline.stages
    requests = sum(stage.requests for stage in stages if stage.requests is not None)
    open_ended = [stage.name for stage in stages if stage.requests is None]
    seconds = sum(stage.duration_s for stage in stages if stage.duration_s is not None)
    unknown_length = [stage.name for stage in stages if stage.duration_s is None]
    per_process = plan_outline.peak_connections_per_process
    return [
        "",
        f"total:       {requests:,} requests" + _plus("what", open_ended, "sends"),
        f"duration:    about {_duration(seconds)}" + _plus("however long", unknown_length, "takes"),
        f"connections: at most {plan_outline.peak_connections:,} at once "
        f"({per_process:,} per process: needs {per_process + FD_HEADROOM:,} open files)",
    ]


def _plus(what: str, stage_names: list[str], verb: str) -> str:
    """" + what stage(s) a, b send(s)" for the part of a total that depends on the server."""
    if not stage_names:
        return ""
    noun = "stage" if len(stage_names) == 1 else "stages"
    verb = verb if len(stage_names) == 1 else verb.removesuffix("s")
    return f" + {what} {noun} {', '.join(stage_names)} {verb} (depends on the server)"


def _rate_chart(stages: tuple[StageOutline, ...]) -> list[str]:
    """Arrival rate over time as text bars, all scaled to the run's highest rate."""
    open_stages = [stage for stage in stages if stage.rate_samples]
    if not open_stages:
        return []
    peak = max(rate for stage in open_stages for _, rate in stage.rate_samples)
    name_width = max(len(stage.name) for stage in stages)
    lines = ["", "arrival rate over time:"]
    for stage in stages:
        if not stage.rate_samples:
            lines.append(f"  {stage.name:<{name_width}}  {'':>7}  (closed model: {stage.load}; "
                         f"the server's speed sets the rate)")
            continue
        constant = len(stage.rate_samples) == 1
        for seconds, rate in stage.rate_samples:
            bar = "#" * max(1, round(CHART_WIDTH * rate / peak)) if rate > 0 else ""
            span = f" for {_duration(stage.duration_s)}" if constant else ""
            lines.append(f"  {stage.name:<{name_width}}  {'+' + _duration(seconds):>7}  "
                         f"{bar:<{CHART_WIDTH}}  {_rate(rate)}{span}")
    return lines


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}/s" if per_second >= 10 else f"{per_second:.3g}/s"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.3g}s" if seconds < 100 else f"{seconds:.0f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 120:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def describe(plan: Plan, outputs: tuple[tuple[str, str], ...] | None = None) -> str:
    """The dry run's text for ``plan`` (``outputs``: the reports the run would write)."""
    return render(outline(plan, outputs))


__all__ = ["PlanOutline", "ProcessShare", "StageOutline", "arrival_count", "describe", "outline", "render"]
