"""Interval updates for reporters that listen to a running test (``interval(update)``).

The live view on stderr is :mod:`runner.liveview`. Reporters keep their own
small contract, ``{"stage", "completed", "failed", "elapsed_s"}`` once per
interval (see :class:`runner.reporters.base.IntervalListener`), and this feed makes
it from interval snapshots, so a listener hears the whole run (every process
or shard added up) and not only the process it happens to run in.
"""

from __future__ import annotations

import threading
from typing import Any

from .snapshots import LiveRun, Snapshot


class IntervalFeed:
    """Turns snapshots into one update per interval tick (and one per stage end) for every listener.

    Several sources report each tick; the first snapshot of a new tick of a
    stage sends the update, with the newest figures of every source added
    up, so listeners hear each tick once whatever the number of processes.
    """

    def __init__(self, listeners: list[Any]) -> None:
        self.listeners = list(listeners)
        self._run = LiveRun()
        self._ticks: dict[int, int] = {}  # stage -> interval index of its last update
        self._lock = threading.Lock()

    def snapshot(self, snap: Snapshot) -> None:
        with self._lock:
            self._run.add(snap)
            if not snap.final and snap.interval.index <= self._ticks.get(snap.stage, -1):
                return
            self._ticks[snap.stage] = max(snap.interval.index, self._ticks.get(snap.stage, -1))
            sources = self._run.sources(snap.stage)
            update = {"stage": snap.stage_name,
                      "completed": sum(s.requests for s in sources),
                      "failed": sum(s.failed for s in sources),
                      "elapsed_s": round(max(s.elapsed_s for s in sources), 3)}
        for listener in self.listeners:
            try:
                listener.interval(dict(update))
            except Exception:  # a plugin's bug must not stop the load test
                pass
