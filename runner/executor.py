"""Runs a plan's stages on one engine with a pool of virtual users.

Each stage is run by its load model (:mod:`runner.models`): the closed model
starts ``concurrency`` users that iterate back to back; the open model hands
arrivals, due on a fixed timeline, to free users and counts the rest as
dropped. Users (:mod:`runner.vu`) are created once per process and kept
across stages, with their connections, variables and cookies; each is
advanced by its transport's callbacks, so the number of tasks depends on
nothing but the stage count, and the request path does no formatting or
logging.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from .engines.base import Engine
from .health import LoopLagMonitor
from .metrics.recorder import FlowStats, RequestStats
from .metrics.timeseries import Bucket, SeriesSampler
from .models import MODELS
from .plan import Plan, StagePlan
from .snapshots import Snapshot, take
from .vu import CUT_OFF, StageRun, VirtualUser

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
    flows: list[FlowStats] = field(default_factory=list)  # indexed like plan.flow_plans()
    data_used: dict[str, int] = field(default_factory=dict)  # data table -> rows handed out so far


@dataclass
class Progress:
    """A snapshot for progress lines: cheap to build once per interval."""

    stage: StagePlan
    completed: int
    failed: int
    elapsed_s: float


ProgressCallback = Callable[[Progress], None]


@dataclass
class Executor:
    """Runs a plan's stages, in order, on one engine."""

    plan: Plan
    engine: Engine
    control: RunControl = field(default_factory=RunControl)
    on_progress: ProgressCallback | None = None
    on_snapshot: Callable[[Snapshot], None] | None = None  # one Snapshot per interval tick and at a stage's end
    lag_monitor: LoopLagMonitor | None = None  # gives each snapshot the loop-lag verdict of its interval
    between_stages: Callable[[int], Awaitable[None]] | None = None  # awaited before stage i >= 1 (shards meet)

    def __post_init__(self) -> None:
        self.completed: list[StageOutcome] = []
        self.live: StageOutcome | None = None  # the running stage, for abort_on_fail's provisional results
        self._pool: list[VirtualUser] = []
        plan = self.plan
        self._cursors = [table.cursor(plan.process_index, plan.process_count, plan.seed) for table in plan.data]
        self._row_keys = [tuple(f"{table.name}.{column}" for column in table.columns) for table in plan.data]
        self._rng = random.Random(plan.seed * 1_000_003 + plan.process_index)

    async def run(self) -> list[StageOutcome]:
        try:
            for position, stage in enumerate(self.plan.stages):
                if position and self.between_stages is not None and not self.control.stopping:
                    await self.between_stages(position)
                if self.control.stopping:
                    break
                self.completed.append(await self.run_stage(stage))
        finally:
            for user in self._pool:
                if user.transport is not None:
                    user.transport.close()
        self.live = None
        return self.completed

    # -- what models use -------------------------------------------------------------------------

    def users(self, count: int) -> list[VirtualUser]:
        """The first ``count`` users of this process's pool, created on first use and kept."""
        pool = self._pool
        plan = self.plan
        while len(pool) < count:
            local = len(pool)
            pool.append(VirtualUser(local, local * plan.process_count + plan.process_index, plan,
                                    self._cursors, self._row_keys))
        return pool[:count]

    def attach(self, user: VirtualUser, run_state: StageRun) -> None:
        """Give ``user`` a transport of this engine (kept across stages)."""
        if user.transport is None:
            user.transport = self.engine.transport(user)

    @staticmethod
    def perf_zero() -> float:
        return time.perf_counter()

    async def finish(self, run_state: StageRun, users: list[VirtualUser], end: float | None,
                     grace_s: float) -> None:
        """Wait until the stage's users are done; after ``end`` + grace (or a second signal) cut off the rest."""
        loop = run_state.loop
        stopped_at: float | None = None
        finished = run_state.finished
        while not finished.done():
            if self.control.stopping and stopped_at is None:
                stopped_at = loop.time()
            limit = min(x for x in (end, stopped_at, math.inf) if x is not None) + grace_s
            if self.control.hurry or loop.time() >= limit:
                break
            await asyncio.wait([finished], timeout=min(0.05, max(0.0, limit - loop.time())))
        if not finished.done():
            for user in users:
                user.cut_off()

    # -- one stage --------------------------------------------------------------------------------

    async def run_stage(self, stage: StagePlan) -> StageOutcome:
        loop = asyncio.get_running_loop()
        run_state = StageRun(stage, self.plan, loop, self.control, self._rng)
        sampler = SeriesSampler()
        started_wall, started = time.time(), time.perf_counter()
        self.live = StageOutcome(stage, run_state.stats, started_wall, 0.0, sampler.buckets,
                                 flows=run_state.flows)
        ticker = asyncio.create_task(self._tick(stage, run_state, sampler, started))
        try:
            await MODELS[stage.model].run(self, stage, run_state)
        finally:
            ticker.cancel()
        # A stage is timed from its time zero: an open stage connects its users before it
        # (runner.models.open), and that setup is no part of the stage's rate.
        zero = run_state.zero or started
        duration = time.perf_counter() - zero
        started_wall += zero - started
        stats = run_state.stats
        sampler.sample(stats, run_state.started, end_s=duration)  # the last, partial interval
        if self.on_snapshot is not None:
            self.on_snapshot(take(self.plan.process_index, stage.index, stage.name, duration, sampler.buckets[-1],
                                  stats, run_state.started, run_state.scheduled, run_state.late, final=True))
        if stage.model == "closed":
            for part in stats:
                part.adopt_latency_as_service()
        return StageOutcome(stage, stats, started_wall, duration, sampler.buckets, run_state.late,
                            run_state.scheduled, self.control.stopping, run_state.flows, self._data_used())

    def _data_used(self) -> dict[str, int]:
        return {table.name: cursor.used for table, cursor in zip(self.plan.data, self._cursors)}

    async def _tick(self, stage: StagePlan, run_state: StageRun, sampler: SeriesSampler, started: float) -> None:
        interval = self.plan.interval_s
        stats = run_state.stats
        while run_state.zero is None:  # the open model starts its timeline once every user is ready
            await asyncio.sleep(0.001)
        next_tick = run_state.zero + interval
        while True:
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
            next_tick += interval
            sampler.sample(stats, run_state.started)
            if self.on_snapshot is not None:
                verdict = self.lag_monitor.take_recent() if self.lag_monitor is not None else "ok"
                self.on_snapshot(take(self.plan.process_index, stage.index, stage.name,
                                      time.perf_counter() - run_state.zero, sampler.buckets[-1], stats,
                                      run_state.started, run_state.scheduled, run_state.late, verdict=verdict))
            if self.live is not None:
                self.live.duration_s = time.perf_counter() - run_state.zero
                self.live.scheduled = run_state.scheduled
            if self.on_progress is not None:
                completed = sum(s.ok + s.failed for s in stats)
                self.on_progress(Progress(stage, completed, sum(s.failed for s in stats),
                                          time.perf_counter() - started))


__all__ = ["CUT_OFF", "Executor", "Progress", "RunControl", "StageOutcome"]
