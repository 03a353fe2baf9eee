"""The open model: arrivals on a fixed timeline, each running one flow iteration on a free user.

The timeline (:mod:`runner.pacing`) is computed before the stage starts;
an arrival that finds every one of the ``max_in_flight`` users busy is
counted as dropped, never delayed. The first request of an iteration is
measured from the arrival's due time, so a stalled server shows up in the
latency of every arrival it delayed (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

from ..pacing import ArrivalTimeline
from ..plan import StagePlan

if TYPE_CHECKING:
    from ..describe import StageOutline

#: A send this much later than its due time counts as late (it is still measured from the due time).
LATE_AFTER_S = 0.010
#: The last stretch before an arrival is due is waited by yielding to the loop, not by a timer.
_SPIN_NS = 1_000_000
#: Arrivals sent back to back at most before the loop reads answers again (when behind the timeline).
_BURST = 32
#: Users connecting ahead of an open stage at once (bounded, so a slow target is not flooded with SYNs).
_CONNECT_BATCH = 200


async def run(executor, stage: StagePlan, run_state) -> None:
    users = executor.users(stage.max_in_flight)
    for user in users:
        executor.attach(user, run_state)
        user.run = run_state
        user.stopped = False
    run_state.active = len(users)
    idle = run_state.idle
    idle.extend(reversed(users))  # pop() hands out user 0 first
    timeline = ArrivalTimeline(stage.rate_start, stage.rate_end, stage.duration_s)
    bounds = [b for b in (stage.requests, timeline.total()) if b is not None]
    total = min(bounds) if bounds else math.inf
    control = run_state.control
    flows = executor.plan.flow_plans()
    cycle = run_state.flow_cycle
    cycle_length = len(cycle)
    flow_stats = run_state.flows
    stats = run_state.stats
    perf_ns = time.perf_counter_ns
    late_ns = int(LATE_AFTER_S * 1e9)
    await _connect_ahead(users, executor.plan)
    start_ns = perf_ns()
    run_state.zero = start_ns / 1e9  # perf_counter_ns and perf_counter share one clock
    seq = stage.seq_offset
    step = stage.seq_step
    arrival = 0
    burst = 0
    try:
        while seq < total and not control.stopping:
            due_ns = start_ns + int(timeline.due(seq) * 1e9)
            now_ns = perf_ns()
            if due_ns > now_ns:
                # timers fire with ~1 ms resolution: sleep most of the wait, then yield until due
                wait_ns = due_ns - now_ns
                await asyncio.sleep((wait_ns - _SPIN_NS) / 1e9 if wait_ns > _SPIN_NS + 500_000 else 0)
                burst = 0
                continue
            if burst >= _BURST:
                # behind the timeline: answers must still be read, or every user stays busy and
                # arrivals are dropped for want of users rather than of the server's speed
                await asyncio.sleep(0)
                burst = 0
                now_ns = perf_ns()
            burst += 1
            run_state.scheduled += 1
            flow = flows[cycle[arrival % cycle_length]]
            arrival += 1
            if idle:
                user = idle.pop()
                user.flow = flow
                if now_ns - due_ns > late_ns:
                    run_state.late += 1
                user.begin(due_ns)
            else:
                stats[flow.first_request].dropped += 1
                flow_stats[flow.index].dropped += 1
            seq += step
    finally:
        run_state.dispatching = False
        if len(idle) >= run_state.active and not run_state.finished.done():
            run_state.finished.set_result(None)
    end = run_state.loop.time()
    await executor.finish(run_state, users, end, stage.grace_s)


async def _connect_ahead(users: list, plan) -> None:
    """Connect every user before the timeline's time zero, a batch at a time.

    Users that connect on their first arrival pull in more users while they
    wait, each connecting too: at a high rate that cascade makes the first
    arrivals late and can saturate the generator. Connected ahead, the
    timeline measures requests, not connection setup (connect failures are
    still met, counted and classified by the requests themselves).
    """
    timeout_s = min((r.connect_timeout_s for r in plan.flow), default=10.0)
    for start in range(0, len(users), _CONNECT_BATCH):
        batch = users[start:start + _CONNECT_BATCH]
        await asyncio.gather(*(user.transport.prepare(timeout_s) for user in batch))


def share(stage: StagePlan, part: int, parts: int) -> dict:
    """Process ``part`` of ``parts`` takes every ``parts``-th arrival of the one global timeline."""
    return dict(seq_offset=part, seq_step=parts, max_in_flight=max(1, math.ceil(stage.max_in_flight / parts)))


def describe(stage: StagePlan, process_stages: list[StagePlan]) -> StageOutline:
    """For the dry run: arrivals follow the timeline, so their count and the time the last is due are exact."""
    from ..describe import ProcessShare, StageOutline, arrival_count, rate_samples

    timeline = ArrivalTimeline(stage.rate_start, stage.rate_end, stage.duration_s)
    arrivals = arrival_count(stage)
    window_s = stage.duration_s if arrivals == timeline.total() else timeline.due(arrivals)
    processes = tuple(ProcessShare(len(range(part.seq_offset, arrivals, part.seq_step)), part.max_in_flight)
                      for part in process_stages)
    return StageOutline(
        name=stage.name, model="open", load=_open_load(stage), requests=arrivals, requests_capped=False,
        duration_s=window_s, grace_s=stage.grace_s, connections=sum(p.connections for p in processes),
        processes=processes, rate_samples=rate_samples(timeline, window_s),
    )


def _open_load(stage: StagePlan) -> str:
    from ..describe import rate_text

    if stage.rate_start == stage.rate_end:
        return f"{rate_text(stage.rate_start)}, at most {stage.max_in_flight:,} in flight"
    return f"{rate_text(stage.rate_start)} -> {rate_text(stage.rate_end)}, at most {stage.max_in_flight:,} in flight"
