"""Runs a plan's stages on one engine: the closed and the open model.

Closed model: exactly ``concurrency`` worker tasks (or a ramp of them) pull
sequence numbers from a shared counter, each waiting for its answer before
the next request. Open model: a dispatcher hands arrivals, due on a fixed
timeline (:mod:`runner.pacing`), to a fixed pool of ``max_in_flight`` slot
tasks; an arrival that finds every slot busy is counted as dropped, never
delayed, and latency is measured from the time it was due.

Either way the number of tasks depends on the concurrency, never on the
number of requests, and the request loop does no formatting or logging.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from .engines.base import Engine, TransportError
from .metrics.recorder import RequestStats
from .metrics.timeseries import Bucket, SeriesSampler
from .pacing import ArrivalTimeline, ramp_value
from .plan import Plan, RequestPlan, StagePlan

#: A send this much later than its due time counts as late (it is still measured from the due time).
LATE_AFTER_S = 0.010
#: The last stretch before an arrival is due is waited by yielding to the loop, not by a timer.
_SPIN_NS = 1_000_000
#: The error class of requests still in flight when a stage's grace period ran out.
CUT_OFF = "cut_off"


@dataclass
class RunControl:
    """Shared stop switch: set by signal handlers, read by workers between requests."""

    stopping: bool = False
    hurry: bool = False  # a second signal: do not wait for in-flight requests
    signal_name: str | None = None
    aborted: dict | None = None  # set when abort_on_fail stopped the run: {"reason", "at_s"}


@dataclass
class StageOutcome:
    """What one stage measured; ``stats`` is indexed like the plan's flow."""

    plan: StagePlan
    stats: list[RequestStats]
    started_at: float  # wall clock (epoch seconds) for reports only
    duration_s: float
    series: list[Bucket] = field(default_factory=list)
    late: int = 0  # open model: sends later than LATE_AFTER_S after their due time
    scheduled: int = 0  # open model: arrivals due (sent + dropped)
    interrupted: bool = False


@dataclass
class Progress:
    """A snapshot for progress lines: cheap to build once per interval."""

    stage: StagePlan
    completed: int
    failed: int
    elapsed_s: float


ProgressCallback = Callable[[Progress], None]


class _StageState:
    """Counters shared by one stage's tasks (one attribute write per request)."""

    __slots__ = ("started", "late", "scheduled", "zero")

    def __init__(self) -> None:
        self.started = 0
        self.late = 0
        self.scheduled = 0
        self.zero: float | None = None  # perf_counter() at the stage's time zero (intervals count from it)


@dataclass
class Executor:
    """Runs a plan's stages, in order, on one engine."""

    plan: Plan
    engine: Engine
    control: RunControl = field(default_factory=RunControl)
    on_progress: ProgressCallback | None = None

    def __post_init__(self) -> None:
        self.completed: list[StageOutcome] = []
        self.live: StageOutcome | None = None  # the running stage, for abort_on_fail's provisional results

    async def run(self) -> list[StageOutcome]:
        for stage in self.plan.stages:
            if self.control.stopping:
                break
            self.completed.append(await self.run_stage(stage))
        self.live = None
        return self.completed

    async def run_stage(self, stage: StagePlan) -> StageOutcome:
        stats = [RequestStats() for _ in self.plan.flow]
        state = _StageState()
        sampler = SeriesSampler()
        started_wall, started = time.time(), time.perf_counter()
        self.live = StageOutcome(stage, stats, started_wall, 0.0, sampler.buckets)
        ticker = asyncio.create_task(self._tick(stage, stats, state, sampler, started))
        try:
            if stage.model == "open":
                await self._run_open(stage, stats, state)
            else:
                state.zero = started
                await self._run_closed(stage, stats, state)
        finally:
            ticker.cancel()
        duration = time.perf_counter() - started
        sampler.sample(stats, state.started, end_s=time.perf_counter() - (state.zero or started))  # last, partial
        if stage.model == "closed":
            for part in stats:
                part.adopt_latency_as_service()
        return StageOutcome(stage, stats, started_wall, duration, sampler.buckets, state.late,
                            state.scheduled, self.control.stopping)

    async def _tick(self, stage: StagePlan, stats: list[RequestStats], state: _StageState,
                    sampler: SeriesSampler, started: float) -> None:
        interval = self.plan.interval_s
        while state.zero is None:  # the open model starts its timeline once every slot is ready
            await asyncio.sleep(0.001)
        next_tick = state.zero + interval
        while True:
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
            next_tick += interval
            sampler.sample(stats, state.started)
            if self.live is not None:
                self.live.duration_s = time.perf_counter() - started
                self.live.scheduled = state.scheduled
            if self.on_progress is not None:
                completed = sum(s.ok + s.failed for s in stats)
                self.on_progress(Progress(stage, completed, sum(s.failed for s in stats),
                                          time.perf_counter() - started))

    # -- closed model ---------------------------------------------------------------------------

    async def _run_closed(self, stage: StagePlan, stats: list[RequestStats], state: _StageState) -> None:
        loop = asyncio.get_running_loop()
        flow = self.plan.flow
        counter = itertools.count()
        limit = stage.requests if stage.requests is not None else math.inf
        offset, step = stage.seq_offset, stage.seq_step
        stage_start = loop.time()
        deadline = stage_start + stage.duration_s if stage.duration_s is not None else math.inf
        control = self.control
        engine = self.engine
        gate = _Gate(loop, stage.concurrency_start)

        async def worker(number: int) -> None:
            channel = await engine.open_channel(number)
            perf_ns = time.perf_counter_ns
            now = loop.time
            flow_length = len(flow)
            position = 0
            in_send = False
            record = stats[0]
            start = 0
            try:
                while not control.stopping:
                    while number >= gate.allowed:
                        if control.stopping or now() >= deadline:
                            return
                        await gate.changed
                    index = next(counter)
                    if index >= limit or now() >= deadline:
                        break
                    request = flow[position]
                    position += 1
                    if position == flow_length:
                        position = 0
                    record = stats[request.index]
                    state.started += 1
                    in_send = True
                    start = perf_ns()
                    try:
                        status, received = await channel.send(request, offset + index * step, number)
                    except TransportError as exc:
                        record.failure(exc.error_class, (perf_ns() - start) // 1000, exc)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # an engine bug must not kill the run: count it, keep its message
                        record.failure("other", (perf_ns() - start) // 1000, exc)
                    else:
                        if request.checks:
                            captured = getattr(channel, "captured", None) or (None, None)
                            record.checked_response(status, received, (perf_ns() - start) // 1000, request,
                                                    captured[0], captured[1])
                        else:
                            record.response(status, received, (perf_ns() - start) // 1000)
                    in_send = False
            except asyncio.CancelledError:
                if in_send:  # cut off at the end of the grace period: sent, never answered
                    record.failure(CUT_OFF, (perf_ns() - start) // 1000)
                raise
            finally:
                await _close_quietly(channel)

        workers = [asyncio.create_task(worker(n)) for n in range(stage.concurrency)]
        ramp = asyncio.create_task(self._ramp(stage, gate, stage_start)) if stage.is_ramp else None
        try:
            end = deadline if deadline != math.inf else None
            await self._finish(workers, end, stage.grace_s)
        finally:
            if ramp is not None:
                ramp.cancel()
            gate.open_all()

    async def _ramp(self, stage: StagePlan, gate: "_Gate", stage_start: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            elapsed = loop.time() - stage_start
            gate.set(ramp_value(stage.concurrency_start, stage.concurrency_end, stage.duration_s, elapsed))
            if stage.duration_s is not None and elapsed >= stage.duration_s:
                gate.open_all()  # wake waiting workers so they see the deadline and leave
                return
            await asyncio.sleep(0.05)

    # -- open model -----------------------------------------------------------------------------

    async def _run_open(self, stage: StagePlan, stats: list[RequestStats], state: _StageState) -> None:
        loop = asyncio.get_running_loop()
        flow = self.plan.flow
        timeline = ArrivalTimeline(stage.rate_start, stage.rate_end, stage.duration_s)
        bounds = [b for b in (stage.requests, timeline.total()) if b is not None]
        total = min(bounds) if bounds else math.inf
        control = self.control
        engine = self.engine
        idle: list[int] = []
        waiting: list[asyncio.Future | None] = [None] * stage.max_in_flight
        perf_ns = time.perf_counter_ns

        async def slot(number: int) -> None:
            channel = await engine.open_channel(number)
            flow_length = len(flow)
            record = stats[0]
            in_send = False
            intended = started_ns = 0
            try:
                while True:
                    future = loop.create_future()
                    waiting[number] = future
                    idle.append(number)
                    job = await future
                    if job is None:
                        return
                    seq, intended = job
                    request: RequestPlan = flow[seq % flow_length]
                    record = stats[request.index]
                    state.started += 1
                    in_send = True
                    started_ns = perf_ns()
                    try:
                        status, received = await channel.send(request, seq, number)
                    except TransportError as exc:
                        end = perf_ns()
                        record.timed_failure(exc.error_class, (end - intended) // 1000, (end - started_ns) // 1000,
                                             exc)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        end = perf_ns()
                        record.timed_failure("other", (end - intended) // 1000, (end - started_ns) // 1000, exc)
                    else:
                        end = perf_ns()
                        if request.checks:
                            captured = getattr(channel, "captured", None) or (None, None)
                            record.checked_response(status, received, (end - intended) // 1000, request,
                                                    captured[0], captured[1], (end - started_ns) // 1000)
                        else:
                            record.timed_response(status, received, (end - intended) // 1000,
                                                  (end - started_ns) // 1000)
                    in_send = False
            except asyncio.CancelledError:
                if in_send:
                    end = perf_ns()
                    record.timed_failure(CUT_OFF, (end - intended) // 1000, (end - started_ns) // 1000)
                raise
            finally:
                await _close_quietly(channel)

        slots = [asyncio.create_task(slot(n)) for n in range(stage.max_in_flight)]
        for attempt in range(200):  # let every slot register as idle before the first arrival
            if len(idle) >= stage.max_in_flight:
                break
            await asyncio.sleep(0 if attempt < 5 else 0.001)
        stage_start_ns = perf_ns()
        state.zero = stage_start_ns / 1e9  # perf_counter_ns and perf_counter share one clock
        seq = stage.seq_offset
        step = stage.seq_step
        flow_length = len(flow)
        late_ns = int(LATE_AFTER_S * 1e9)
        try:
            while seq < total and not control.stopping:
                due_ns = stage_start_ns + int(timeline.due(seq) * 1e9)
                now_ns = perf_ns()
                if due_ns > now_ns:
                    # timers fire with ~1 ms resolution: sleep most of the wait, then yield until due
                    wait_ns = due_ns - now_ns
                    await asyncio.sleep((wait_ns - _SPIN_NS) / 1e9 if wait_ns > _SPIN_NS + 500_000 else 0)
                    continue
                state.scheduled += 1
                if idle:
                    number = idle.pop()
                    future = waiting[number]
                    waiting[number] = None
                    future.set_result((seq, due_ns))
                    if now_ns - due_ns > late_ns:
                        state.late += 1
                else:
                    stats[flow[seq % flow_length].index].dropped += 1
                seq += step
        finally:
            for number in idle:
                future = waiting[number]
                if future is not None and not future.done():
                    future.set_result(None)
            idle.clear()
        end = loop.time()
        await self._finish(slots, end, stage.grace_s, stop_idle=(idle, waiting))

    # -- shared ---------------------------------------------------------------------------------

    async def _finish(self, tasks: list[asyncio.Task], end: float | None, grace_s: float,
                      stop_idle: tuple | None = None) -> None:
        """Wait for tasks; after ``end`` + grace (or a second signal) cut off what is still running."""
        loop = asyncio.get_running_loop()
        pending = set(tasks)
        stopped_at: float | None = None
        while pending:
            if stop_idle is not None:  # open model: slots that became idle after the dispatcher ended
                idle, waiting = stop_idle
                for number in idle:
                    future = waiting[number]
                    if future is not None and not future.done():
                        future.set_result(None)
                idle.clear()
            if self.control.stopping and stopped_at is None:
                stopped_at = loop.time()
            limit = min(x for x in (end, stopped_at, math.inf) if x is not None) + grace_s
            if self.control.hurry or loop.time() >= limit:
                break
            done, pending = await asyncio.wait(pending, timeout=min(0.05, max(0.0, limit - loop.time())))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


class _Gate:
    """How many closed-model workers may run now; waiting workers share one future."""

    __slots__ = ("allowed", "changed", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, allowed: int):
        self._loop = loop
        self.allowed = allowed
        self.changed: asyncio.Future = loop.create_future()

    def set(self, allowed: int) -> None:
        if allowed != self.allowed:
            self.allowed = allowed
            self._wake()

    def open_all(self) -> None:
        self.allowed = 1 << 62
        self._wake()

    def _wake(self) -> None:
        changed, self.changed = self.changed, self._loop.create_future()
        if not changed.done():
            changed.set_result(None)


async def _close_quietly(channel) -> None:
    try:
        await channel.aclose()
    except Exception:
        pass
