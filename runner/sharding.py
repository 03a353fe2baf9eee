"""Splitting a plan across worker processes so the totals stay exact.

Closed-model stages give each process an even share of the requests and of
the workers (shares differ by at most one and add up to the whole), with
sequence numbers in disjoint contiguous ranges. Open-model stages keep the
one global arrival timeline and give process ``k`` of ``n`` every ``n``-th
arrival starting at ``k``: together the processes send exactly the arrivals
the scenario asked for, at the times it asked for them.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .pacing import split_evenly
from .plan import Plan, StagePlan


def share(plan: Plan, part: int, parts: int) -> Plan:
    """The part of ``plan`` that process ``part`` (0-based) of ``parts`` runs."""
    if parts == 1:
        return plan
    return replace(plan, stages=tuple(_share_stage(stage, part, parts) for stage in plan.stages), workers=1)


def _share_stage(stage: StagePlan, part: int, parts: int) -> StagePlan:
    if stage.model == "open":
        return replace(stage, seq_offset=part, seq_step=parts,
                       max_in_flight=max(1, math.ceil(stage.max_in_flight / parts)))
    # only processes that get at least one worker may get requests, or some would never be sent
    active = min(parts, max(stage.concurrency_start, stage.concurrency_end))
    if part >= active:
        return replace(stage, requests=0 if stage.requests is not None else None,
                       concurrency_start=0, concurrency_end=0)  # no workers: the stage ends at once
    requests = None
    offset = 0
    if stage.requests is not None:
        requests = split_evenly(stage.requests, active, part)
        offset = sum(split_evenly(stage.requests, active, k) for k in range(part))
    return replace(
        stage,
        requests=requests,
        seq_offset=offset,
        concurrency_start=split_evenly(stage.concurrency_start, active, part),
        concurrency_end=split_evenly(stage.concurrency_end, active, part),
    )
