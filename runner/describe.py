"""The dry run: what a plan will do, worked out and printed before anything is sent.

``runner plan FILE`` (and ``runner run --dry-run FILE``) exists so that a user
sees ``rate: 20000/s`` where ``2000/s`` was meant *before* it reaches a shared
staging server. Every number here comes from the same pure functions the run
uses -- the arrival formula (:mod:`runner.pacing`), the split across worker
processes (:mod:`runner.sharding`) and the way users and arrivals are given
flows (:func:`runner.vu.weighted_cycle`) -- so the preview and the run cannot
disagree. With flows and data files it also shows each journey step by step
and how many rows each stage draws, and warns when a ``unique`` table is too
small for the users that need a row. Nothing in this module opens a
socket, starts the built-in target or reads a clock.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

from .limits import FD_HEADROOM
from .pacing import ArrivalTimeline
from .plan import FlowPlan, Plan, RequestPlan, StagePlan, ThinkPlan, TlsPlan
from .sharding import share
from .vu import weighted_cycle

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
    data_rows: tuple[str, ...] = ()  # one line per data table a flow reads (see DataUse.text)
    data: tuple["DataUse", ...] = ()
    flow_mix: tuple[tuple[str, int], ...] = ()  # (flow, virtual users (closed) or arrivals (open) running it)


@dataclass(frozen=True, slots=True)
class DataUse:
    """How one stage draws from one data table, as far as the plan alone tells.

    ``need`` is how many virtual users (``per: vu``) or iterations (``per:
    iteration``) have needed a row by the end of the stage, run so far;
    ``rows`` how many rows this stage draws and ``total`` how many the run
    has drawn by its end (a ``unique`` table gives each row once, so these
    stop at its size, per worker process). ``short`` is how many of ``need``
    find no row left (unique only): those users stop. Counts are None when
    they depend on the server's speed (``per: iteration`` in a stage bound by
    duration alone) and upper bounds unless ``exact`` (the open model may need
    fewer users than in-flight slots; iterations cut short by a failed capture
    would draw more often than counted).
    """

    table: str
    mode: str
    per: str
    size: int  # rows in the table
    need: int | None
    rows: int | None
    total: int | None
    exact: bool
    short: int
    text: str
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class FlowOutline:
    """One flow as a journey: its weight and its steps as short lines (``POST /login -> token``)."""

    name: str
    weight: int
    share: float  # fraction of virtual users (closed) or arrivals (open)
    once: tuple[str, ...]
    steps: tuple[str, ...]
    reads: tuple[str, ...]  # data tables its templates use, "users (one row per virtual user)"
    names: tuple[str, ...] = ()  # per step of once + steps: the name the scenario gave it, or ""


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
    flows: tuple[FlowOutline, ...] = ()
    data: tuple[str, ...] = ()  # DataTable.describe() of each table
    share_of: str = "virtual users"  # what a flow's weight divides: virtual users, arrivals or both
    connections: tuple[str, ...] = ()  # header lines for tls and keepalive settings, where the scenario sets them
    builtin_tls: bool = False  # the built-in target serves https (builtin: {tls: true})
    shards: int = 0  # a distributed run's shard count (--shards); 0: a run on this machine
    cluster: str = ""  # the Dask scheduler a distributed run would use, when one is named

    @property
    def parts(self) -> int:
        """How many pieces the load is split into: shards of a distributed run, else worker processes."""
        return self.shards or self.workers

    @property
    def unit(self) -> str:
        return "shard" if self.shards else "process"

    @property
    def warnings(self) -> tuple[str, ...]:
        """Problems worth reading before sending: ``stage NAME: ...`` for each."""
        return tuple(f"stage {stage.name}: {use.warning}" for stage in self.stages for use in stage.data
                     if use.warning)

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


def outline(plan: Plan, outputs: tuple[tuple[str, str], ...] | None = None, *, shards: int | None = None,
            cluster: str | None = None) -> PlanOutline:
    """Work out everything the run will do, from the plan alone.

    ``shards``: the run is distributed in that many shards (each one process,
    whatever ``workers:`` says), split exactly as :mod:`runner.cluster` splits it.
    """
    from .engines import select_engine

    engine_class, reason = select_engine(plan, plan.target_url)
    engine_name = engine_class.__name__.removesuffix("Engine").lower()
    pieces = shards or plan.workers
    shares = [share(plan, part, pieces) for part in range(pieces)]
    per_process = [[p.stages[stage.index] for p in shares] for stage in plan.stages]
    stages = [_stage_outline(stage, parts) for stage, parts in zip(plan.stages, per_process)]
    mixes = _flow_mixes(plan, per_process)
    uses = _DataLedger(plan, mixes, pieces, "shards" if shards else "worker processes").stages(per_process)
    models = {stage.model for stage in plan.stages}
    return PlanOutline(
        scenario=plan.scenario_name,
        source=plan.source,
        target=plan.target_url or "builtin",
        engine=f"{engine_name} ({reason})",
        workers=plan.workers,
        shards=shards or 0,
        cluster=cluster or "",
        flow=tuple(f"{request.method} {request.path_template}" for request in plan.flow),
        stages=tuple(replace(stage, data=use, data_rows=tuple(u.text for u in use),
                             flow_mix=_mix_line(plan, mix))
                     for stage, use, mix in zip(stages, uses, mixes)),
        outputs=tuple(plan.outputs if outputs is None else outputs),
        thresholds=len(plan.thresholds),
        flows=_flow_outlines(plan),
        data=tuple(table.describe() + ("" if any(_reads(flow, index) for flow in plan.flow_plans())
                                        else " (no flow reads it)") for index, table in enumerate(plan.data)),
        share_of=" and ".join(noun for model, noun in (("closed", "virtual users"), ("open", "arrivals"))
                              if model in models),
        connections=_tls_lines(plan) + _keepalive_lines(plan),
        builtin_tls=plan.target_url is None and plan.builtin.tls,
    )


def _stage_outline(stage: StagePlan, process_stages: list[StagePlan]) -> StageOutline:
    """Each load model describes its own stages (:func:`runner.models.closed.describe`, ``open.describe``)."""
    from .models import MODELS

    return MODELS[stage.model].describe(stage, process_stages)


def arrival_count(stage: StagePlan) -> int:
    """Arrivals an open-model stage schedules: its timeline up to the duration, capped by ``requests``."""
    bounds = [b for b in (stage.requests, ArrivalTimeline(stage.rate_start, stage.rate_end,
                                                          stage.duration_s).total()) if b is not None]
    return min(bounds)


def rate_samples(timeline: ArrivalTimeline, window_s: float) -> tuple[tuple[float, float], ...]:
    if timeline.rate_start == timeline.rate_end:
        return ((0.0, timeline.rate_start),)
    times = [window_s * i / (RAMP_ROWS - 1) for i in range(RAMP_ROWS)]
    return tuple((t, timeline.rate_at(t)) for t in times)


# -- flows and data rows -----------------------------------------------------------------------
#
# Which flow a virtual user or an arrival runs, and so which data tables it
# draws from, follows from arithmetic the run itself does (runner.vu.weighted_cycle
# over user numbers and arrival counters), so the counts below are worked out,
# not sampled. Rows are drawn per worker process -- each has its own cursor and,
# in unique mode, only its own share of the rows -- so every count is kept per
# process and added up at the end: a total that fits can still leave one
# process short.


def _flow_counts(count: int, start: int, step: int, cycle: tuple[int, ...], flows: int) -> list[int]:
    """How many of the positions ``start``, ``start + step``, ... (``count`` of them) run each flow.

    Virtual user ``n`` (closed model) and a process's ``n``-th arrival (open
    model) run flow ``cycle[n % len(cycle)]``. That pattern repeats within
    ``len(cycle)`` positions, so one period is counted and multiplied: a
    mistyped million users costs no more to describe than ten.
    """
    counts = [0] * flows
    if count <= 0:
        return counts
    length = len(cycle)
    period = length // math.gcd(step, length)
    full, rest = divmod(count, period)
    for i in range(min(count, period)):
        counts[cycle[(start + i * step) % length]] += full + (1 if i < rest else 0)
    return counts


def _flow_mixes(plan: Plan, per_process: list[list[StagePlan]]) -> list[list[list[int]]]:
    """Per stage and process: the virtual users (closed) or arrivals (open) running each flow."""
    flows = plan.flow_plans()
    cycle = weighted_cycle(flows)
    mixes = []
    for stage, parts in zip(plan.stages, per_process):
        if stage.model == "open":
            arrivals = arrival_count(stage)
            mixes.append([_flow_counts(len(range(part.seq_offset, arrivals, part.seq_step)), 0, 1, cycle,
                                       len(flows)) for part in parts])
        else:  # each process mixes its own users 0, 1, 2, ... by weight; a ramp reaches its larger end
            mixes.append([_flow_counts(max(part.concurrency_start, part.concurrency_end), 0, 1, cycle,
                                       len(flows)) for part in parts])
    return mixes


def _mix_line(plan: Plan, mix: list[list[int]]) -> tuple[tuple[str, int], ...]:
    """(flow, users or arrivals) for a stage, when there is more than one flow to tell apart."""
    flows = plan.flow_plans()
    if len(flows) < 2:
        return ()
    return tuple((flow.name, sum(counts[flow.index] for counts in mix)) for flow in flows)


def _reads(flow: FlowPlan, table: int) -> bool:
    return table in flow.data_per_user or table in flow.data_per_iteration


def _starts_with_request(flow: FlowPlan) -> bool:
    """True when each iteration's first step sends, so a user that draws a row also takes a request."""
    first = (flow.once or flow.steps)[0]
    return isinstance(first, RequestPlan) and isinstance(flow.steps[0], RequestPlan)


class _DataLedger:
    """Rows each data table gives out, stage after stage, counted per worker process.

    ``per: vu``: a virtual user draws once, the first time it runs a flow that
    reads the table, and keeps the row for the rest of the run, also in later
    stages. Each process's users are a prefix of its pool (``executor.users``),
    so the users that may hold a row are described by two prefix lengths: the
    open model may hand any flow to any of its first ``slots`` users, the
    closed model gives user ``n`` always the same flow. ``per: iteration``:
    one row per iteration, which is known from arrivals (open) or bounded by
    the requests a stage may send (closed); a stage bound only by duration
    runs as many as the server allows.
    """

    def __init__(self, plan: Plan, mixes: list[list[list[int]]], processes: int, kind: str):
        self.plan = plan
        self.flows = plan.flow_plans()
        self.cycle = weighted_cycle(self.flows)
        self.mixes = mixes
        self.processes = processes
        self.kind = kind  # "worker processes" or "shards": what draws from its own rows

    def stages(self, per_process: list[list[StagePlan]]) -> list[tuple[DataUse, ...]]:
        """For each stage, one :class:`DataUse` per data table that some flow reads."""
        columns = []
        for index, table in enumerate(self.plan.data):
            readers = [flow for flow in self.flows if _reads(flow, index)]
            if not readers:
                columns.append([None] * len(self.plan.stages))
            elif table.per == "vu":
                columns.append(self._per_user(table, readers, per_process))
            else:
                columns.append(self._per_iteration(table, readers, per_process))
        return [tuple(column[i] for column in columns if column[i] is not None) for i in range(len(self.plan.stages))]

    def _matching(self, process: int, low: int, high: int, readers: list[FlowPlan]) -> int:
        """Users ``low`` up to ``high`` of a process's pool whose (closed-model) flow reads the table."""
        if high <= low:
            return 0
        counts = _flow_counts(high - low, low, 1, self.cycle, len(self.flows))
        return sum(counts[flow.index] for flow in readers)

    def _shares(self, table) -> list[int]:
        return [table.share(k, self.processes) for k in range(self.processes)]

    def _per_user(self, table, readers: list[FlowPlan], per_process: list[list[StagePlan]]) -> list[DataUse]:
        processes = self.processes
        shares = self._shares(table)
        unique = table.mode == "unique"
        any_flow = [0] * processes  # open model: users 0..n-1 may have run any flow
        closed = [0] * processes  # closed model: users 0..n-1 ran their own flow
        need = [0] * processes  # users that hold (or wanted) a row so far, at most
        exact = True
        gated = all(_starts_with_request(flow) for flow in self.flows)
        used_before = short_before = need_before = 0
        uses = []
        for stage, parts, mix in zip(self.plan.stages, per_process, self.mixes):
            users_here = 0
            for k, part in enumerate(parts):
                if stage.model == "open":
                    arrivals = sum(mix[k][flow.index] for flow in readers)
                    slots = min(part.max_in_flight, sum(mix[k]))
                    if arrivals:
                        any_flow[k] = max(any_flow[k], slots)
                        exact = False
                    reach = min(arrivals, slots)
                else:
                    users = max(part.concurrency_start, part.concurrency_end)
                    if gated and part.requests is not None:  # only users that get a request start an iteration
                        users = min(users, part.requests)
                    closed[k] = max(closed[k], users)
                    reach = self._matching(k, 0, users, readers)
                held = any_flow[k] + self._matching(k, any_flow[k], max(any_flow[k], closed[k]), readers)
                need[k] = min(held, need[k] + reach)
                users_here += reach
            used = [min(n, s) for n, s in zip(need, shares)] if unique else need
            total, needed = sum(used), sum(need)
            short = needed - total
            text = self._per_user_text(table, readers, stage, total - used_before, total, needed - need_before,
                                       short - short_before, users_here, exact)
            warning = self._per_user_warning(table, shares, needed, short, exact) if short > short_before else None
            uses.append(DataUse(table.name, table.mode, table.per, len(table), needed, total - used_before, total,
                                exact, short, text, warning))
            used_before, short_before, need_before = total, short, needed
        return uses

    def _per_user_text(self, table, readers, stage: StagePlan, rows: int, total: int, new_users: int,
                       new_short: int, users_here: int, exact: bool) -> str:
        name = table.name
        up_to = "" if exact else "up to "
        if not users_here:
            return f"{name}: no rows (no user of this stage runs {_names(readers)})"
        if not new_users:
            return f"{name}: no new rows (its virtual users all started in earlier stages and drew then)"
        if not rows:
            text = f"{name}: no rows left for its {up_to}{new_users:,} new virtual user{_s(new_users)}"
        else:
            more, new = ("", "") if rows == total else ("more ", "new ")
            text = f"{name}: {up_to}{rows:,} {more}row{_s(rows)}, one per {new}virtual user"
        notes = [] if not rows or rows == total else [f"{up_to}{total:,} in all"]
        if stage.model == "open":
            notes.append(f"open model: a user per request in flight, at most {stage.max_in_flight:,}")
        if notes:
            text += f" ({'; '.join(notes)})"
        if new_short and rows:
            text += f"; {up_to}{new_short:,} find{'s' if new_short == 1 else ''} none left"
        if table.mode == "sequential" and new_users and total > len(table):
            text += f"; users share rows: the file has {len(table):,}"
        return text

    def _per_user_warning(self, table, shares: list[int], needed: int, short: int, exact: bool) -> str:
        rows = f"{table.name}: {len(table):,} row{_s(len(table))}"
        if exact:
            text = f"{rows}, but {needed:,} virtual users need one each: {short:,} will stop at once"
        else:
            text = (f"{rows}, but up to {needed:,} virtual users may need one each:"
                    f" up to {short:,} may stop at once")
        return text + self._process_note(shares)

    def _process_note(self, shares: list[int]) -> str:
        """Why a table that looks big enough can still run short: each process has only its own rows."""
        if self.processes == 1:
            return ""
        low, high = min(shares), max(shares)
        own = f"{low:,}" if low == high else f"{low:,} to {high:,}"
        return f" (each of the {self.processes} {self.kind} draws only from its own {own} rows)"

    def _per_iteration(self, table, readers: list[FlowPlan], per_process: list[list[StagePlan]]) -> list[DataUse]:
        shares = self._shares(table)
        unique = table.mode == "unique"
        need: list[int] | None = [0] * self.processes  # None once a stage's count depends on the server
        per_iteration = min(sum(isinstance(step, RequestPlan) for step in flow.steps) for flow in readers)
        gated = all(_starts_with_request(flow) for flow in readers)
        used_before = short_before = 0
        uses = []
        for stage, parts, mix in zip(self.plan.stages, per_process, self.mixes):
            bounds: list[int | None] = []
            for k, part in enumerate(parts):
                readers_here = sum(mix[k][flow.index] for flow in readers)  # users (closed) or arrivals (open)
                if not readers_here or stage.model == "open":
                    bounds.append(readers_here)
                elif part.requests is None:
                    bounds.append(None)
                else:
                    # Every finished iteration sends per_iteration requests; each user may also draw for
                    # one last iteration that the stage's budget cuts short (one request, or none after a think).
                    cut_short = min(readers_here, part.requests) if gated else readers_here
                    spent = cut_short if gated else 0
                    bounds.append(cut_short + (part.requests - spent) // per_iteration)
            stage_need = None if None in bounds else sum(bounds)
            need = None if need is None or stage_need is None else [a + b for a, b in zip(need, bounds)]
            alone = ""
            if need is None:
                # An earlier stage drew an unknown number of rows, so only this stage's own need is known; a
                # unique table too small for that alone runs short whatever came before.
                total = needed = None
                short_before = 0
                if stage_need is None:
                    rows, short = None, 0
                else:
                    used = [min(b, s) for b, s in zip(bounds, shares)] if unique else bounds
                    rows, short = sum(used), stage_need - sum(used)
                    needed, alone = stage_need, " in this stage alone"
            else:
                used = [min(n, s) for n, s in zip(need, shares)] if unique else need
                total, needed = sum(used), sum(need)
                rows, short = total - used_before, needed - total
                used_before = total
            text = self._per_iteration_text(table, readers, stage, stage_need, rows, total, short - short_before,
                                            per_iteration)
            warning = None
            if short > short_before:
                warning = (f"{table.name}: {len(table):,} row{_s(len(table))}, but up to {needed:,} iterations{alone}"
                           f" may need one each: up to {short:,} find none, and each user that finds none stops"
                           + self._process_note(shares))
            uses.append(DataUse(table.name, table.mode, table.per, len(table), needed, rows, total, False, short,
                                text, warning))
            short_before = short
        return uses

    def _per_iteration_text(self, table, readers, stage: StagePlan, stage_need: int | None, rows: int | None,
                            total: int | None, new_short: int, per_iteration: int) -> str:
        name = table.name
        if stage_need is None:
            text = (f"{name}: one row per iteration, as many as the server answers in"
                    f" {_duration(stage.duration_s)} (not known before the run)")
            if table.mode == "unique":
                text += f"; users stop once all {len(table):,} rows are used"
            return text
        if not stage_need:
            return (f"{name}: no rows (no {'arrival' if stage.model == 'open' else 'user'} of this stage"
                    f" runs {_names(readers)})")
        if not rows:
            text = f"{name}: no rows left for its up to {stage_need:,} iterations"
        else:
            text = f"{name}: at most {rows:,} row{_s(rows)}, one per "
            if stage.model == "open":
                text += "arrival" if len(readers) == len(self.flows) else f"arrival running {_names(readers)}"
            notes = []
            if stage.model == "closed":
                text += "iteration"
                notes.append(f"{stage.requests:,} requests, {per_iteration} per iteration")
            if total is not None and total != rows:
                notes.append(f"{total:,} in all")
            if notes:
                text += f" ({'; '.join(notes)})"
            if new_short:
                text += f"; up to {new_short:,} iterations find none left"
        if table.mode == "sequential" and (total if total is not None else rows) > len(table):
            text += f"; rows repeat: the file has {len(table):,}"
        return text


def _names(flows: list[FlowPlan]) -> str:
    return "flow " + flows[0].name if len(flows) == 1 else "flows " + ", ".join(flow.name for flow in flows)


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _flow_outlines(plan: Plan) -> tuple[FlowOutline, ...]:
    """Each flow as a journey, with its weight as a share of all weights."""
    flows = plan.flow_plans()
    weights = sum(flow.weight for flow in flows)
    outlines = []
    for flow in flows:
        reads = tuple(f"{table.name} (one row per {'virtual user' if table.per == 'vu' else 'iteration'})"
                      for index, table in enumerate(plan.data) if _reads(flow, index))
        outlines.append(FlowOutline(flow.name, flow.weight, flow.weight / weights,
                                    tuple(_step_text(step) for step in flow.once),
                                    tuple(_step_text(step) for step in flow.steps), reads,
                                    tuple(_step_name(step) for step in flow.once + flow.steps)))
    return tuple(outlines)


def _tls_lines(plan: Plan) -> tuple[str, ...]:
    """``tls:`` lines: each distinct setting and the requests using it (none when no request sets any)."""
    requests = [request for request in plan.flow if request.tls is not None]
    if not requests:
        return ()
    settings: dict[TlsPlan, list[str]] = {}
    for request in requests:
        settings.setdefault(request.tls, []).append(request.name)
    https = (plan.target_url or "").lower().startswith("https://") or (plan.target_url is None and plan.builtin.tls)
    base_dir = os.path.dirname(os.path.abspath(plan.source))
    lines = []
    for tls, names in settings.items():
        users = "every request" if len(names) == len(plan.flow) else _request_names(names)
        lines.append(f"{_tls_text(tls, base_dir)}: {users}")
    if not https:
        lines[-1] += " (unused: the target is plain http)"
    return tuple(("tls:      " if number == 0 else " " * 10) + line for number, line in enumerate(lines))


def _tls_text(tls: TlsPlan, base_dir: str) -> str:
    """``verify with ca certs/ca.pem, client cert certs/me.pem, TLS >= 1.3``: what differs from the default."""
    if tls.verify:
        parts = [f"verify with ca {_shown_path(tls.ca, base_dir)}" if tls.ca else "verify with the system's CAs"]
    else:
        parts = ["no certificate verification (verify: false)"]
    if tls.cert:
        parts.append(f"client cert {_shown_path(tls.cert, base_dir)}"
                     + (f" + key {_shown_path(tls.key, base_dir)}" if tls.key else ""))
    if tls.server_name:
        parts.append(f"server name {tls.server_name}")
    if tls.min_version:
        parts.append(f"TLS >= {tls.min_version}")
    return ", ".join(parts)


def _shown_path(path: str, base_dir: str) -> str:
    """A path relative to the scenario's directory when it is inside it, else as the plan has it (absolute)."""
    relative = os.path.relpath(path, base_dir)
    return path if relative.startswith(os.pardir) else relative


def _keepalive_lines(plan: Plan) -> tuple[str, ...]:
    """``keepalive:`` line when some request opens a new connection each time (none when all reuse them)."""
    names = [request.name for request in plan.flow if not request.keepalive]
    if not names:
        return ()
    users = "every request" if len(names) == len(plan.flow) else _request_names(names)
    return (f"keepalive: off (a new connection for each send): {users}",)


def _request_names(names: list[str], shown: int = 5) -> str:
    names = list(dict.fromkeys(names))  # two steps may share a name
    listed = ", ".join(names[:shown])
    return listed + (f", ... ({len(names)} requests)" if len(names) > shown else "")


def _step_text(step) -> str:
    """``GET /items -> item`` for a request (with what it captures), ``think 5ms-20ms`` for a pause."""
    if isinstance(step, ThinkPlan):
        if step.min_s == step.max_s:
            return f"think {_duration(step.min_s)}"
        return f"think {_duration(step.min_s)}-{_duration(step.max_s)}"
    text = f"{step.method} {step.path_template}"
    if step.captures:
        text += " -> " + ", ".join(name for name, _ in step.captures)
    return text


def _step_name(step) -> str:
    """The name a scenario gave a request step (results and thresholds use it), or "" when it has none."""
    if isinstance(step, ThinkPlan) or step.name == f"{step.method} {step.path_template}":
        return ""
    return step.name


# -- text ------------------------------------------------------------------------------------


def render(plan_outline: PlanOutline) -> str:
    """The dry run's report: header, one block per stage, totals, the rate chart."""
    lines = _header(plan_outline)
    for number, stage in enumerate(plan_outline.stages, 1):
        lines += _stage_lines(number, stage, plan_outline.parts, plan_outline.unit)
    lines += _totals(plan_outline)
    lines += _rate_chart(plan_outline.stages)
    if plan_outline.warnings:
        lines += ["", "warnings (read before sending):"] + [f"  {warning}" for warning in plan_outline.warnings]
    lines += ["", "dry run: nothing was sent and no server was started."]
    return "\n".join(lines) + "\n"


def _header(plan_outline: PlanOutline) -> list[str]:
    target = plan_outline.target
    if target == "builtin":
        served = ", over https with a throwaway certificate only the run trusts" if plan_outline.builtin_tls else ""
        target = f"builtin (runner's own server{served}, started on a free loopback port by the run)"
    reports = ", ".join(f"{name} -> {'stdout' if path == '-' else path}" for name, path in plan_outline.outputs)
    lines = [
        f"scenario: {plan_outline.scenario} ({plan_outline.source})",
        f"target:   {target}",
        f"engine:   {plan_outline.engine}",
        _split_line(plan_outline),
    ]
    lines += _journeys(plan_outline)
    for number, table in enumerate(plan_outline.data):
        lines.append(("data:     " if number == 0 else " " * 10) + table)
    lines += plan_outline.connections
    if plan_outline.thresholds:
        lines.append(f"thresholds: {plan_outline.thresholds} (judged after the run)")
    if reports:
        lines.append(f"reports:  {reports}")
    return lines


def _split_line(plan_outline: PlanOutline) -> str:
    """How the load is split: worker processes here, or shards on a Dask cluster."""
    cluster = f" at {plan_outline.cluster}" if plan_outline.cluster else ""
    if plan_outline.shards:
        return (f"shards:   {plan_outline.shards} on the Dask cluster{cluster}, one process each "
                f"(shard k runs on worker k)")
    if plan_outline.cluster:
        return (f"shards:   one per Dask worker of the cluster{cluster}, counted when the run connects "
                f"(--shards N shows each shard's share)")
    workers = plan_outline.workers
    return f"workers:  {workers} process{'es' if workers != 1 else ''}"


def _journeys(plan_outline: PlanOutline) -> list[str]:
    """The flows as journeys: once steps, then the loop, one step a line, with what each captures.

    A scenario with one plain ``flow:`` keeps its one-line form; named flows
    get a block each, with their weight and share, so a mix that sends most
    users down the wrong path is seen before it is sent.
    """
    flows = plan_outline.flows
    if not flows:
        return ["flow:     " + " | ".join(plan_outline.flow)]
    if len(flows) == 1 and not flows[0].once and flows[0].name == "default":
        return ["flow:     " + " | ".join(flows[0].steps)]
    lines = []
    for number, flow in enumerate(flows):
        share = (f"weight {flow.weight}, {flow.share * 100:.3g}% of {plan_outline.share_of}"
                 if len(flows) > 1 else f"all {plan_outline.share_of}")
        reads = f"; reads {', '.join(flow.reads)}" if flow.reads else ""
        lines.append(("flows:    " if number == 0 else " " * 10) + f"{flow.name}: {share}{reads}")
        width = max(len(step) for step in flow.once + flow.steps)
        names = iter(flow.names)
        for label, steps in (("once", flow.once), ("loop", flow.steps)):
            for position, step in enumerate(steps):
                name = next(names)
                text = f"{step:<{width}}  ({name})" if name else step
                lines.append(" " * 12 + (f"{label}  " if position == 0 else " " * 6) + text)
    return lines


def _stage_lines(number: int, stage: StageOutline, parts: int, unit: str) -> list[str]:
    lines = ["", f"stage {number}: {stage.name} ({stage.model} model)",
             f"  load:        {stage.load}",
             f"  sends:       {_sends(stage)}",
             f"  duration:    {_stage_duration(stage)}",
             f"  connections: {stage.connections:,}"]
    if stage.flow_mix:
        noun = "arrivals" if stage.model == "open" else "users"
        lines.append("  flows:       " + ", ".join(f"{name} {count:,} {noun}" for name, count in stage.flow_mix))
    if parts > 1:
        lines.append(f"  {'per ' + unit + ':':<13}" + "; ".join(_process_share(number, process, stage.model, unit)
                                                             for number, process in enumerate(stage.processes, 1)))
    if not stage.data:
        lines.append("  data:        " + ("; ".join(stage.data_rows) if stage.data_rows else "none"))
    for position, use in enumerate(stage.data):
        lines.append(("  data:        " if position == 0 else " " * 15) + use.text)
        if use.warning:
            lines.append(" " * 15 + "warning: " + use.warning)
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


def _process_share(number: int, process: ProcessShare, model: str, unit: str) -> str:
    if model == "open":
        return f"{unit} {number}: {process.requests:,} arrivals, at most {process.connections:,} in flight"
    sends = "open-ended" if process.requests is None else f"{process.requests:,} requests"
    return f"{unit} {number}: {sends}, {process.connections:,} workers"


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
        f"({per_process:,} per {plan_outline.unit}: needs {per_process + FD_HEADROOM:,} open files)",
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
                         f"{bar:<{CHART_WIDTH}}  {rate_text(rate)}{span}")
    return lines


def rate_text(per_second: float) -> str:
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


def describe(plan: Plan, outputs: tuple[tuple[str, str], ...] | None = None, *, shards: int | None = None,
             cluster: str | None = None) -> str:
    """The dry run's text for ``plan`` (``outputs``: the reports the run would write; ``shards``, ``cluster``:
    a distributed run's, see :func:`outline`)."""
    return render(outline(plan, outputs, shards=shards, cluster=cluster))


__all__ = ["DataUse", "FlowOutline", "PlanOutline", "ProcessShare", "StageOutline", "arrival_count", "describe",
           "outline", "render"]
