"""When things should happen: pure functions of time, no clocks, no sleeping.

The open model's arrivals follow a timeline fixed before the stage starts:
with a rate ramping linearly from ``r0`` to ``r1`` over ``D`` seconds the
expected number of arrivals by time ``t`` is

    N(t) = r0·t + (r1 − r0)·t² / (2·D)

and arrival ``i`` (0-based) is due at the ``t`` where ``N(t) = i``:
``t = i / r0`` for a constant rate, otherwise
``t = (−r0 + sqrt(r0² + 2·a·i)) / a`` with ``a = (r1 − r0) / D``.
Because send times come from this formula and not from "sleep after the
previous send", lateness never accumulates, and latency can be measured from
the time a request was *due* (no coordinated omission).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ArrivalTimeline:
    """Arrival times of an open-model stage (rates in arrivals per second)."""

    rate_start: float
    rate_end: float
    duration_s: float | None

    @property
    def _slope(self) -> float:
        if self.duration_s is None or self.rate_start == self.rate_end:
            return 0.0
        return (self.rate_end - self.rate_start) / self.duration_s

    def due(self, index: int) -> float:
        """Seconds after the stage start at which arrival ``index`` is due."""
        slope = self._slope
        if slope == 0.0:
            return index / self.rate_start
        r0 = self.rate_start
        return (math.sqrt(max(r0 * r0 + 2.0 * slope * index, 0.0)) - r0) / slope

    def expected_by(self, t: float) -> float:
        """N(t): arrivals expected in [0, t)."""
        return self.rate_start * t + self._slope * t * t / 2.0

    def total(self) -> int | None:
        """Arrivals due strictly before the end of the duration, or None when unbounded in time."""
        if self.duration_s is None:
            return None
        return max(0, math.ceil(self.expected_by(self.duration_s) - 1e-9))

    def rate_at(self, t: float) -> float:
        return self.rate_start + self._slope * t


def ramp_value(start: int, end: int, duration_s: float | None, elapsed_s: float) -> int:
    """Linear ramp from ``start`` to ``end`` over ``duration_s``, rounded to a whole number."""
    if duration_s is None or duration_s <= 0 or start == end:
        return end
    fraction = min(max(elapsed_s / duration_s, 0.0), 1.0)
    return round(start + (end - start) * fraction)


def split_evenly(total: int, parts: int, part: int) -> int:
    """The ``part``-th of ``parts`` shares of ``total``: shares differ by at most one and sum to ``total``."""
    return total // parts + (1 if part < total % parts else 0)
