"""The closed model: a fixed (or ramping) number of virtual users, each waiting for its answers.

Users run flow iterations back to back and take one ticket per request from
the stage (:meth:`runner.vu.StageRun.take`) until ``requests`` or ``duration``
is used up. A ramp ``{from, to}`` lets users numbered below the ramp's
current value run; the others wait at an iteration boundary.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from ..pacing import ramp_value, split_evenly
from ..plan import StagePlan

if TYPE_CHECKING:
    from ..describe import StageOutline


async def run(executor, stage: StagePlan, run_state) -> None:
    loop = run_state.loop
    started = loop.time()
    if stage.duration_s is not None:
        run_state.deadline = started + stage.duration_s
        run_state.timed = True
    run_state.zero = executor.perf_zero()
    users = executor.users(stage.concurrency)
    if stage.is_ramp:
        run_state.allowed = stage.concurrency_start
    ramp = asyncio.create_task(_ramp(stage, run_state, started)) if stage.is_ramp else None
    try:
        run_state.active = len(users)  # all counted first: a user that stops at once must not end the stage
        for user in users:
            executor.attach(user, run_state)
        for user in users:
            user.start(run_state)
        if not users and not run_state.finished.done():
            run_state.finished.set_result(None)
        end = run_state.deadline if run_state.deadline != math.inf else None
        await executor.finish(run_state, users, end, stage.grace_s)
    finally:
        if ramp is not None:
            ramp.cancel()


async def _ramp(stage: StagePlan, run_state, started: float) -> None:
    loop = run_state.loop
    while True:
        elapsed = loop.time() - started
        run_state.set_allowed(ramp_value(stage.concurrency_start, stage.concurrency_end, stage.duration_s, elapsed))
        if stage.duration_s is not None and elapsed >= stage.duration_s:
            run_state.set_allowed(1 << 62)  # wake waiting users so they see the deadline and stop
            return
        await asyncio.sleep(0.05)


def share(stage: StagePlan, part: int, parts: int) -> dict:
    """Process ``part`` of ``parts``: an even share of requests and users, numbered apart."""
    active = min(parts, max(stage.concurrency_start, stage.concurrency_end))
    if part >= active:  # no users here: the stage ends at once in this process
        return dict(requests=0 if stage.requests is not None else None, concurrency_start=0, concurrency_end=0)
    requests = None
    offset, step = part, active  # no request count: processes number their requests apart by striding
    if stage.requests is not None:
        requests = split_evenly(stage.requests, active, part)
        offset, step = sum(split_evenly(stage.requests, active, k) for k in range(part)), 1
    return dict(requests=requests, seq_offset=offset, seq_step=step,
                concurrency_start=split_evenly(stage.concurrency_start, active, part),
                concurrency_end=split_evenly(stage.concurrency_end, active, part))


def describe(stage: StagePlan, process_stages: list[StagePlan]) -> StageOutline:
    """For the dry run: users send back to back, so the count is exact when given, the duration when given."""
    from ..describe import ProcessShare, StageOutline

    processes = tuple(ProcessShare(part.requests, max(part.concurrency_start, part.concurrency_end))
                      for part in process_stages)
    return StageOutline(
        name=stage.name, model="closed", load=_closed_load(stage), requests=stage.requests,
        requests_capped=stage.requests is not None and stage.duration_s is not None,
        duration_s=stage.duration_s, grace_s=stage.grace_s, connections=stage.concurrency,
        processes=processes, rate_samples=(),
    )


def _closed_load(stage: StagePlan) -> str:
    if stage.concurrency_start == stage.concurrency_end:
        return f"{stage.concurrency_end:,} workers"
    return f"{stage.concurrency_start:,} -> {stage.concurrency_end:,} workers"
