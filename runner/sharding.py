"""Splitting a plan across worker processes so the totals stay exact.

Closed-model stages give each process an even share of the requests and of
the workers (shares differ by at most one and add up to the whole), with
sequence numbers in disjoint contiguous ranges. Open-model stages keep the
one global arrival timeline and give process ``k`` of ``n`` every ``n``-th
arrival starting at ``k``: together the processes send exactly the arrivals
the scenario asked for, at the times it asked for them.
"""

from __future__ import annotations

from dataclasses import replace

from .plan import Plan


def share(plan: Plan, part: int, parts: int) -> Plan:
    """The part of ``plan`` that process ``part`` (0-based) of ``parts`` runs."""
    if parts == 1:
        return plan
    from .models import MODELS

    stages = tuple(replace(stage, **MODELS[stage.model].share(stage, part, parts)) for stage in plan.stages)
    return replace(plan, stages=stages, workers=1, process_index=part, process_count=parts)
