"""The compiled plan: plain, immutable data the executor and engines run.

A plan is what a validated scenario means once every decision that does not
depend on the individual request has been made: URLs split into constant
pieces, headers as tuples, timeouts as seconds. Nothing here imports Pydantic,
so the per-request path never touches validation code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

#: Renders a request path from (sequence number in stage, worker number).
PathRenderer = Callable[[int, int], str]


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """One request of the flow, ready to send many times."""

    index: int  # position in the flow; metrics are kept per index
    name: str
    method: str
    path_template: str  # as written, for reports and engines that want it
    render_path: PathRenderer
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout_s: float
    is_static: bool  # True when the path has no per-request fields


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One closed-model stage: ``concurrency`` workers, bounded by count and/or time."""

    index: int
    name: str
    concurrency: int
    requests: int | None  # total requests of the stage, or None when only time-bound
    duration_s: float | None


@dataclass(frozen=True, slots=True)
class BuiltinTargetPlan:
    """How to start the built-in target server (see :mod:`runner.target`)."""

    body_size: int
    delay_min_s: float
    delay_max_s: float
    seed: int


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a run needs, decided once before the first request."""

    scenario_name: str
    source: str
    target_url: str | None  # None means: start the built-in target and use its URL
    builtin: BuiltinTargetPlan
    engine: str
    flow: tuple[RequestPlan, ...]
    stages: tuple[StagePlan, ...]
    outputs: tuple[tuple[str, str], ...]  # (reporter name, path)

    @property
    def max_concurrency(self) -> int:
        return max(stage.concurrency for stage in self.stages)

    def with_target(self, url: str) -> "Plan":
        """The same plan aimed at a concrete base URL (used once the built-in target is up)."""
        from dataclasses import replace
        return replace(self, target_url=url.rstrip("/"))
