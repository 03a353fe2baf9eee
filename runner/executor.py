"""The closed-model executor: stages in order, ``concurrency`` workers each.

Workers pull sequence numbers from one shared counter until the stage's
request count or deadline is reached, so a stage sends exactly ``requests``
requests with exactly ``concurrency`` tasks, and memory depends on the
concurrency, never on the number of requests. The loop body does no
formatting, logging or allocation beyond what the engine needs.
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
from .plan import Plan, StagePlan


@dataclass
class RunControl:
    """Shared stop switch: set by signal handlers, read by workers between requests."""

    stopping: bool = False
    signal_name: str | None = None


@dataclass
class StageOutcome:
    """What one stage measured; ``stats`` is indexed like the plan's flow."""

    plan: StagePlan
    stats: list[RequestStats]
    started_at: float  # wall clock (epoch seconds) for reports only
    duration_s: float
    interrupted: bool = False


@dataclass
class Progress:
    """A snapshot for progress lines: cheap to build once per second."""

    stage: StagePlan
    completed: int
    failed: int
    elapsed_s: float


ProgressCallback = Callable[[Progress], None]


@dataclass
class Executor:
    """Runs a plan's stages on one engine and returns their outcomes."""

    plan: Plan
    engine: Engine
    control: RunControl = field(default_factory=RunControl)
    on_progress: ProgressCallback | None = None
    progress_interval_s: float = 1.0

    async def run(self) -> list[StageOutcome]:
        outcomes = []
        for stage in self.plan.stages:
            if self.control.stopping:
                break
            outcomes.append(await self.run_stage(stage))
        return outcomes

    async def run_stage(self, stage: StagePlan) -> StageOutcome:
        loop = asyncio.get_running_loop()
        flow = self.plan.flow
        stats = [RequestStats() for _ in flow]
        counter = itertools.count()
        limit = stage.requests if stage.requests is not None else math.inf
        started_wall = time.time()
        started = time.perf_counter()
        deadline = loop.time() + stage.duration_s if stage.duration_s is not None else math.inf
        control = self.control
        engine = self.engine

        async def worker(number: int) -> None:
            channel = await engine.open_channel(number)
            perf_ns = time.perf_counter_ns
            now = loop.time
            flow_length = len(flow)
            position = 0
            try:
                while not control.stopping:
                    seq = next(counter)
                    if seq >= limit or now() >= deadline:
                        break
                    request = flow[position]
                    position += 1
                    if position == flow_length:
                        position = 0
                    record = stats[request.index]
                    start = perf_ns()
                    try:
                        status, received = await channel.send(request, seq, number)
                    except TransportError as exc:
                        record.failure(exc.error_class, (perf_ns() - start) // 1000)
                    except (asyncio.CancelledError, KeyboardInterrupt):
                        raise
                    except Exception:  # an engine bug must not kill the run: count it
                        record.failure("other", (perf_ns() - start) // 1000)
                    else:
                        record.response(status, received, (perf_ns() - start) // 1000)
            finally:
                await channel.aclose()

        workers = [asyncio.create_task(worker(n)) for n in range(stage.concurrency)]
        reporter = asyncio.create_task(self._report_progress(stage, stats, started)) if self.on_progress else None
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            if reporter is not None:
                reporter.cancel()
        return StageOutcome(stage, stats, started_wall, time.perf_counter() - started, control.stopping)

    async def _report_progress(self, stage: StagePlan, stats: list[RequestStats], started: float) -> None:
        assert self.on_progress is not None
        while True:
            await asyncio.sleep(self.progress_interval_s)
            completed = sum(s.ok + s.failed for s in stats)
            failed = sum(s.failed for s in stats)
            self.on_progress(Progress(stage, completed, failed, time.perf_counter() - started))
