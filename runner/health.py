"""The load generator watching itself: event-loop lag and CPU.

A load test's numbers describe the server only while the generator keeps
up. The monitor sleeps a fixed tick and records how late it wakes: when the
loop is too busy to run timers on time it is also too busy to send on time
or to read responses promptly, and the report says so.
"""

from __future__ import annotations

import asyncio
import time

from .metrics.histogram import Histogram

#: Loop lag p99 above this (ms) marks the generator as saturated.
LAG_P99_LIMIT_MS = 50.0
#: An open-model stage achieving less than this share of its requested rate is saturated.
RATE_MET_RATIO = 0.95


class LoopLagMonitor:
    """Samples event-loop lag every ``tick_s`` into a histogram (µs)."""

    def __init__(self, tick_s: float = 0.05):
        self.tick_s = tick_s
        self.lag = Histogram()
        self.recent = Histogram()  # since the last take_recent(): the live view's per-interval verdict
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        tick = self.tick_s
        while True:
            before = time.perf_counter()
            await asyncio.sleep(tick)
            late = time.perf_counter() - before - tick
            late_us = int(late * 1e6) if late > 0 else 0
            self.lag.record(late_us)
            self.recent.record(late_us)

    def take_recent(self) -> str:
        """The verdict of the lag since the last call ("ok" or "saturated"), and start a new period."""
        recent, self.recent = self.recent, Histogram()
        if recent.total and recent.quantile(0.99) / 1000.0 > LAG_P99_LIMIT_MS:
            return "saturated"
        return "ok"

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def cpu_seconds() -> float:
    """CPU time (user + system) used by this process so far."""
    return time.process_time()
