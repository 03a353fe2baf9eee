"""The live view of a run on stderr: per stage, how far it is and what the last interval looked like.

It is fed interval snapshots (:mod:`runner.snapshots`) and nothing else, so
it shows one process, ``workers: N`` processes and remote shards alike, and
costs the load nothing per request: a snapshot is stored under a lock and the
figures are worked out at most a few times a second, away from the caller.

On a terminal the view is a ``rich`` table redrawn in place by a thread of
its own (the callback may run on the load generator's event loop, which must
never wait for a redraw); it is transient, so the console summary printed
after the run starts on a clean terminal. Anywhere else (CI logs) it writes
one plain line per stage every ``log_every_s`` seconds of the stage and one
when the stage ends, so logs stay short and still show the run's course.

The generator verdict shown while the run goes is a heuristic (the final
one, in the result, also weighs event-loop lag): a source that says it is
saturated, arrivals dropped, an open stage behind its timeline or sending
late, in-flight requests at the ``max_in_flight`` cap, or ``client_resource``
errors mark the stage ``saturated?``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass, field
from typing import TextIO

from .metrics.histogram import bucket_bounds
from .pacing import ArrivalTimeline
from .plan import Plan, StagePlan
from .snapshots import LiveRun, Snapshot

#: An open stage with fewer arrivals dispatched than this share of those due is behind its timeline.
BEHIND_RATIO = 0.95
#: An open stage sending more than this share of its arrivals late is marked.
LATE_RATIO = 0.05
#: Terminals at least this wide get the stages table; narrower ones the same figures as wrapped lines.
WIDE_COLUMNS = 110
#: Error classes shown per stage (the rest are summed as "other").
TOP_ERRORS = 3
#: What the view calls failed requests without an error class: answered, then failed by status or a check.
UNCLASSED = "status/check"


@dataclass
class SourceFigures:
    """One process or shard within a stage."""

    source: int
    requests: int
    rps: float  # its last interval
    in_flight: int
    status: str  # "running", "finished" or "lost"
    elapsed_s: float = 0.0  # of its newest snapshot: sources tick on their own clocks, so they differ a little


@dataclass
class StageFigures:
    """What the view shows of one stage, worked out from the newest snapshot of each source."""

    stage: StagePlan
    started: bool = False
    done: bool = False  # every expected source sent its final snapshot (or the run is over)
    elapsed_s: float = 0.0
    requests: int = 0
    failed: int = 0
    dropped: int = 0
    in_flight: int = 0
    errors: list[tuple[str, int]] = field(default_factory=list)  # most frequent first
    rps: float = 0.0  # last interval, summed over running sources
    p50_ms: float = 0.0  # last interval
    p99_ms: float = 0.0
    stage_rps: float = 0.0  # whole stage so far
    stage_p50_ms: float = 0.0
    stage_p99_ms: float = 0.0
    fraction: float = 0.0  # toward the stage's request count or duration, whichever ends it first
    reasons: list[str] = field(default_factory=list)  # why the generator may be saturated
    sources: list[SourceFigures] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "saturated?" if self.reasons else "ok"


def model_text(stage: StagePlan) -> str:
    """The load model in a few characters: ``closed 50``, ``closed 10→500``, ``open 2,000/s``."""
    if stage.model == "open":
        if stage.rate_start != stage.rate_end:
            return f"open {stage.rate_start:,.0f}→{stage.rate_end:,.0f}/s"
        return f"open {stage.rate_start:,.0f}/s"
    if stage.concurrency_start != stage.concurrency_end:
        return f"closed {stage.concurrency_start}→{stage.concurrency_end}"
    return f"closed {stage.concurrency_start}"


class _Counts:
    """Latency bucket counts added from sparse pairs, for two quantiles a redraw.

    Cheaper than a :class:`~runner.metrics.histogram.Histogram` (no dense
    array, no min, max or sum kept); a quantile is the same bucket's
    midpoint, so the figures agree with the result's within its error bound.
    """

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, pairs) -> None:
        counts = self.counts
        get = counts.get
        amounts = pairs[1::2]
        for index, count in zip(pairs[::2], amounts):
            counts[index] = get(index, 0) + count
        self.total += sum(amounts)

    def ms(self, q: float) -> float:
        """The nearest-rank quantile ``q`` in milliseconds (0 without values)."""
        if not self.total:
            return 0.0
        rank = max(1, -int(-q * self.total // 1))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                break
        low, high = bucket_bounds(index)
        return (low if high - low == 1 else (low + high - 1) / 2.0) / 1000.0


def stage_figures(plan: Plan, stage: StagePlan, snaps: list[Snapshot], expected_sources: int,
                  lost: set[int] = frozenset(), over: bool = False) -> StageFigures:
    """The figures of ``stage`` from the newest snapshot of each of its sources (any thread; pure)."""
    figures = StageFigures(stage)
    if not snaps:
        figures.done = over
        return figures
    figures.started = True
    finals = sum(snap.final for snap in snaps)
    figures.done = over or finals >= max(expected_sources, len(snaps))
    interval_s = plan.interval_s
    errors: dict[str, int] = {}
    recent, whole = _Counts(), _Counts()
    scheduled = late = dispatched = 0  # dispatched: arrivals taken by sources still running
    due = 0.0
    timeline = ArrivalTimeline(stage.rate_start, stage.rate_end, stage.duration_s) if stage.model == "open" else None
    share = max(expected_sources, len(snaps))
    for snap in snaps:
        requests = snap.requests
        figures.requests += requests
        figures.failed += snap.failed
        figures.dropped += snap.dropped
        figures.in_flight += snap.in_flight
        figures.elapsed_s = max(figures.elapsed_s, snap.elapsed_s)
        for name, count in snap.errors().items():
            errors[name] = errors.get(name, 0) + count
        for step in snap.steps:
            whole.add(step.latency)
        bucket = snap.interval
        span = bucket.span_s(interval_s)
        rps = (bucket.ok + bucket.failed) / span if span > 0 else 0.0
        if not snap.final:
            figures.rps += rps
            recent.add(bucket.latency)
        scheduled += snap.scheduled
        late += snap.late
        if timeline is not None and not snap.final:
            dispatched += snap.scheduled
            due += timeline.expected_by(snap.elapsed_s) / share
        status = "lost" if snap.source in lost else "finished" if snap.final else "running"
        figures.sources.append(SourceFigures(snap.source, requests, rps, snap.in_flight, status, snap.elapsed_s))
        if snap.verdict == "saturated" and "a source reports saturation" not in figures.reasons:
            figures.reasons.append("a source reports saturation")
    if not recent.total:  # every source has finished: its last (partial) intervals are the recent ones
        for snap in snaps:
            recent.add(snap.interval.latency)
    unclassed = figures.failed - sum(errors.values())
    shown = dict(errors)
    if unclassed > 0:  # answered but judged failed: the status rule (>= 400) or a check
        shown[UNCLASSED] = unclassed
    figures.errors = sorted(shown.items(), key=lambda item: (-item[1], item[0]))
    figures.p50_ms, figures.p99_ms = recent.ms(0.50), recent.ms(0.99)
    figures.stage_p50_ms, figures.stage_p99_ms = whole.ms(0.50), whole.ms(0.99)
    figures.stage_rps = figures.requests / figures.elapsed_s if figures.elapsed_s > 0 else 0.0
    if figures.done and not figures.rps:
        figures.rps = figures.stage_rps
    fractions = []
    if stage.requests:
        fractions.append(figures.requests / stage.requests)
    if stage.duration_s:
        fractions.append(figures.elapsed_s / stage.duration_s)
    figures.fraction = min(1.0, max(fractions)) if fractions else 0.0
    figures.reasons.extend(_saturation(stage, figures, errors, scheduled, late, dispatched, due))
    return figures


def _saturation(stage: StagePlan, figures: StageFigures, errors: dict[str, int], scheduled: int, late: int,
                dispatched: int, due: float) -> list[str]:
    """Signs, from snapshot counters alone, that the generator rather than the server is the limit."""
    reasons = []
    if figures.dropped:
        reasons.append(f"{figures.dropped:,} dropped")
    if stage.model == "open":
        if stage.requests:
            due = min(due, float(stage.requests))
        if due >= 10 and dispatched < BEHIND_RATIO * due:
            reasons.append(f"behind timeline ({dispatched / due:.0%} of arrivals due)")
        if scheduled and late / scheduled > LATE_RATIO:
            reasons.append(f"{late / scheduled:.0%} sent late")
        if not figures.done and stage.max_in_flight and figures.in_flight >= stage.max_in_flight:
            reasons.append("in flight at max_in_flight")
    if errors.get("client_resource"):
        reasons.append("client_resource errors")
    return reasons


def _number(value: float) -> str:
    return f"{value:,.0f}"


def _latency(ms: float) -> str:
    """Milliseconds with about three significant digits."""
    if ms >= 100:
        return f"{ms:,.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def _figure(ms: float) -> str:
    """A latency cell under a "ms" header: about three significant digits."""
    return _latency(ms)[:-3]


def _errors_text(errors: list[tuple[str, int]]) -> str:
    shown = [f"{name} {count:,}" for name, count in errors[:TOP_ERRORS]]
    rest = sum(count for _, count in errors[TOP_ERRORS:])
    if rest:
        shown.append(f"other {rest:,}")
    return ", ".join(shown)


def _elapsed_text(figures: StageFigures) -> str:
    planned = f"/{figures.stage.duration_s:g}s" if figures.stage.duration_s else ""
    return f"{figures.elapsed_s:.1f}s{planned}"


def plain_line(figures: StageFigures) -> str:
    """One line for logs: a running stage's last interval, or a finished stage's whole figures."""
    stage = figures.stage
    failed = f"failed {figures.failed:,}"
    if figures.errors:
        failed += f" ({_errors_text(figures.errors)})"
    verdict = figures.verdict + (f" ({'; '.join(figures.reasons)})" if figures.reasons else "")
    if figures.done:
        head = (f"stage {stage.name} ended: {figures.requests:,} requests in {figures.elapsed_s:.1f}s, "
                f"{_number(figures.stage_rps)} req/s, p50 {_latency(figures.stage_p50_ms)}, "
                f"p99 {_latency(figures.stage_p99_ms)}")
        tail = f"{failed}, dropped {figures.dropped:,}"
    else:
        of = f"/{stage.requests:,}" if stage.requests else ""
        head = (f"stage {stage.name} ({model_text(stage)}): {figures.requests:,}{of} requests "
                f"{figures.fraction:.0%}, {_elapsed_text(figures)}; last interval {_number(figures.rps)} req/s, "
                f"p50 {_latency(figures.p50_ms)}, p99 {_latency(figures.p99_ms)}")
        tail = f"{failed}, in flight {figures.in_flight:,}, dropped {figures.dropped:,}"
    parts = [head, tail, f"generator {verdict}"]
    if len(figures.sources) > 1:
        parts.append("sources " + ", ".join(
            f"#{s.source} {s.requests:,}" + ("" if s.status == "finished" else
                                             f" {_number(s.rps)}/s" if s.status == "running" else " lost")
            for s in figures.sources))
    return " | ".join(parts)


class LiveView:
    """Shows a run as it goes, from its interval snapshots; ``snapshot`` may be called from any thread.

    ``sources`` is how many processes or shards report each stage (the
    plan's ``workers`` by default): a stage ends in the view when that many
    final snapshots have arrived. ``console`` is a ``rich`` console to draw
    on instead of one made for ``stream`` (tests force a terminal with it).
    """

    #: Shortest time between two redraws on a terminal (several sources' ticks arrive together).
    REDRAW_GAP_S = 0.25
    #: With several sources, how long a redraw waits for the rest of a tick's snapshots.
    GATHER_S = 0.1

    def __init__(self, plan: Plan, stream: TextIO | None = None, *, log_every_s: float = 10.0,
                 sources: int | None = None, console=None) -> None:
        self.plan = plan
        self.stream = stream if stream is not None else sys.stderr
        self.log_every_s = log_every_s
        self.expected_sources = sources if sources is not None else max(1, plan.workers)
        self._lock = threading.Lock()
        self._run = LiveRun()
        self._over = False
        self._logged: dict[int, float] = {}  # stage -> elapsed of its last plain line
        self._ended: set[int] = set()  # stages whose end line was written
        self._cache: dict[int, tuple] = {}  # stage -> (what its figures were worked out from, the figures)
        self._live = None
        if console is None and _isatty(self.stream):
            console = _console(self.stream)
        self.tty = console is not None and console.is_terminal
        self._console = console
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._painter: threading.Thread | None = None

    def start(self) -> "LiveView":
        """On a terminal, draw the table (every stage waiting) and start the redraw thread; else nothing.

        Separate from construction so that nothing is drawn before the run's
        other watchers have started; the first snapshot starts it otherwise.
        """
        with self._lock:
            self._start()
        return self

    def _start(self) -> None:
        if not self.tty or self._live is not None or self._over:
            return
        from rich.live import Live

        self._live = Live(self._renderable(locked=True), console=self._console, auto_refresh=False,
                          transient=True, redirect_stdout=False, redirect_stderr=False)
        self._live.start(refresh=True)
        self._painter = threading.Thread(target=self._paint, name="runner-live-view", daemon=True)
        self._painter.start()

    # -- input ----------------------------------------------------------------------------------------

    def snapshot(self, snap: Snapshot) -> None:
        """Take one snapshot: stored at once; a terminal redraw happens later on the view's own thread."""
        with self._lock:
            if self._over:
                return
            self._run.add(snap)
            if self.tty:
                if self._live is None:
                    self._start()
                self._wake.set()
                return
            self._log(snap.stage)

    def expect_sources(self, count: int) -> None:
        """A distributed run says how many shards will report (before their first snapshot)."""
        self.expected_sources = max(1, count)

    def mark_lost(self, source: int) -> None:
        """A source (a shard on another host) stopped reporting: its rows say so from now on."""
        with self._lock:
            self._run.lost.add(source)
            if self.tty:
                self._wake.set()

    def finish(self) -> None:
        """The run is over: end lines for stages that have none, or take the table off the terminal."""
        with self._lock:
            if self._over:
                return
            self._over = True
            if not self.tty:
                for index in self._run.stages():
                    if index not in self._ended:
                        self._write(self._figures(index, over=True))
                        self._ended.add(index)
                return
        if self._live is None:
            return
        self._stop.set()
        self._wake.set()
        if self._painter is not None:
            self._painter.join(timeout=5)
        self._live.stop()

    # -- figures ---------------------------------------------------------------------------------------

    def figures(self, locked: bool = False) -> list[StageFigures]:
        """Every stage of the plan as the view would show it now (started or not); ``locked``: lock held."""
        with contextlib.nullcontext() if locked else self._lock:
            latest = dict(self._run.latest)
            lost = frozenset(self._run.lost)
            over = self._over
        shown = []
        for stage in self.plan.stages:
            snaps = [snap for (index, _), snap in sorted(latest.items()) if index == stage.index]
            # A stage whose snapshots have not changed (every ended one) is not worked out again.
            key = (tuple((s.source, s.elapsed_s, s.final) for s in snaps), lost, over)
            cached = self._cache.get(stage.index)
            if cached is None or cached[0] != key:
                cached = self._cache[stage.index] = (key, stage_figures(self.plan, stage, snaps,
                                                                        self.expected_sources, lost, over))
            shown.append(cached[1])
        return shown

    def _figures(self, index: int, over: bool = False) -> StageFigures:
        """One stage's figures; the caller holds the lock."""
        return stage_figures(self.plan, self.plan.stages[index], self._run.sources(index), self.expected_sources,
                             self._run.lost, over)

    # -- plain lines ---------------------------------------------------------------------------------

    def _log(self, index: int) -> None:
        """A line when the stage ends, else when ``log_every_s`` more of the stage has passed (lock held)."""
        if index in self._ended:
            return
        sources = self._run.sources(index)
        finals = sum(snap.final for snap in sources)
        if finals >= max(self.expected_sources, len(sources)):
            self._ended.add(index)
            self._write(self._figures(index))
            return
        elapsed = max(snap.elapsed_s for snap in sources)
        if elapsed - self._logged.get(index, 0.0) >= self.log_every_s:
            self._logged[index] = elapsed
            self._write(self._figures(index))

    def _write(self, figures: StageFigures) -> None:
        try:
            self.stream.write(plain_line(figures) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the load test
            pass

    # -- terminal ------------------------------------------------------------------------------------

    def _paint(self) -> None:
        """The redraw thread: wakes on new snapshots, redraws at most once per REDRAW_GAP_S."""
        while not self._stop.is_set():
            self._wake.wait()
            if self.expected_sources > 1:  # the other sources' snapshots of this tick are due any moment
                self._stop.wait(self.GATHER_S)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._live.update(self._renderable(), refresh=True)
            except Exception:  # drawing must never take the run down; the next snapshot tries again
                pass
            self._stop.wait(self.REDRAW_GAP_S)

    def _renderable(self, locked: bool = False):
        from rich.console import Group

        figures = self.figures(locked)
        wide = self._console.width >= WIDE_COLUMNS
        parts = [render_table(self.plan, figures) if wide else render_lines(self.plan, figures)]
        current = next((f for f in reversed(figures) if f.started), None)
        if current is not None and max(len(current.sources), self.expected_sources) > 1:
            parts.append(render_sources(current, self.expected_sources))
        return Group(*parts)


def render_table(plan: Plan, figures: list[StageFigures]):
    """The stages table (two lines a stage), then a note line per stage with errors or a doubtful verdict.

    Error classes and saturation reasons are as long as they need to be, so
    they go under the table rather than into columns that would squeeze the
    figures at 120 columns. Running stages show their last interval's rate
    and percentiles, ended ones the whole stage's.
    """
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"runner: {plan.scenario_name}", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 1), show_edge=False,
                  caption="req/s, p50, p99: the last interval while a stage runs, the whole stage once it ended",
                  caption_justify="left")
    for name in ("stage", "progress", "requests", "req/s", "p50 ms", "p99 ms", "failed", "in flight", "dropped",
                 "generator"):
        table.add_column(name, justify="left" if name in ("stage", "progress", "generator") else "right",
                         no_wrap=True)
    notes = []
    for f in figures:
        stage = f.stage
        name = Text(stage.name, overflow="ellipsis")
        name.append(f"\n{model_text(stage)}", style="dim")
        if not f.started:
            table.add_row(name, Text("waiting", style="dim"), *[""] * 8)
            continue
        ended = f.done
        rps, p50, p99 = (f.stage_rps, f.stage_p50_ms, f.stage_p99_ms) if ended else (f.rps, f.p50_ms, f.p99_ms)
        bar = _bar(f.fraction, ended)
        bar.append(f" {f.fraction:4.0%}\n")
        bar.append(_elapsed_text(f) + (" ended" if ended else ""), style="dim")
        verdict = Text(f.verdict, style="yellow bold" if f.reasons else "green")
        table.add_row(name, bar, f"{f.requests:,}", _number(rps), _figure(p50), _figure(p99),
                      Text(f"{f.failed:,}", style="red" if f.failed else ""), f"{f.in_flight:,}",
                      Text(f"{f.dropped:,}", style="red" if f.dropped else ""), verdict)
        if f.errors:
            notes.append(Text.assemble((f"{stage.name}", "bold"), " errors: ", (_errors_text(f.errors), "red")))
        if f.reasons:
            notes.append(Text.assemble((f"{stage.name}", "bold"), " generator saturated? ",
                                       ("; ".join(f.reasons), "yellow")))
    return Group(table, *notes) if notes else table


def _bar(fraction: float, ended: bool, width: int = 10):
    """A progress bar as styled text: cheaper to lay out than a nested renderable at every redraw."""
    from rich.text import Text

    halves = round(max(0.0, min(1.0, fraction)) * width * 2)
    full, half = divmod(halves, 2)
    bar = Text("━" * full, style="green" if ended else "magenta")
    if half:
        bar.append("╸", style="magenta")
    bar.append("━" * (width - full - half), style="bright_black")
    return bar


def render_lines(plan: Plan, figures: list[StageFigures]):
    """The stages for a narrow terminal: the same figures as wrapped text, a few lines a stage."""
    from rich.console import Group
    from rich.text import Text

    lines = [Text(f"runner: {plan.scenario_name}", style="italic")]
    for f in figures:
        stage = f.stage
        head = Text.assemble((stage.name, "bold"), " ", (model_text(stage), "dim"), " ")
        if not f.started:
            head.append("waiting", style="dim")
            lines.append(head)
            continue
        ended = f.done
        head.append_text(_bar(f.fraction, ended))
        head.append(f" {f.fraction:.0%} {_elapsed_text(f)}" + (" ended" if ended else ""))
        rps, p50, p99 = (f.stage_rps, f.stage_p50_ms, f.stage_p99_ms) if ended else (f.rps, f.p50_ms, f.p99_ms)
        which = "stage" if ended else "last interval"
        body = Text(f"  {f.requests:,} requests · {which} {_number(rps)} req/s, p50 {_latency(p50)}, "
                    f"p99 {_latency(p99)} · failed {f.failed:,} · in flight {f.in_flight:,} · ")
        body.append(f"dropped {f.dropped:,}", style="red" if f.dropped else "")
        body.append(" · generator ")
        body.append(f.verdict, style="yellow bold" if f.reasons else "green")
        lines.extend((head, body))
        if f.errors:
            lines.append(Text(f"  errors: {_errors_text(f.errors)}", style="red"))
        if f.reasons:
            lines.append(Text(f"  saturated? {'; '.join(f.reasons)}", style="yellow"))
    return Group(*lines)


def render_sources(figures: StageFigures, expected: int = 0):
    """Per process or shard of one stage, for runs with more than one source (those not heard yet: waiting)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"stage {figures.stage.name} by source", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 1), show_edge=False)
    for name in ("source", "time", "requests", "req/s", "in flight", "status"):
        table.add_column(name, justify="left" if name == "status" else "right")
    styles = {"running": "", "finished": "green", "lost": "red bold"}
    for source in figures.sources:
        table.add_row(f"#{source.source}", f"{source.elapsed_s:.1f}s", f"{source.requests:,}",
                      "-" if source.status != "running" else _number(source.rps), f"{source.in_flight:,}",
                      Text(source.status, style=styles[source.status]))
    heard = {source.source for source in figures.sources}
    for missing in range(expected):
        if missing not in heard:
            table.add_row(f"#{missing}", "", "", "", "", Text("waiting", style="dim"))
    return table


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _console(stream: TextIO):
    """A rich console on ``stream``; None when rich is missing (the view falls back to plain lines)."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream, highlight=False, markup=False, emoji=False)
