"""Checks around each row: did the client count right, and who else used the CPUs?

Two things can make a row's requests/s wrong without any client noticing:

* a client that miscounts. nginx's own counter (stub_status) is read
  before and after each run. nginx counts every request it parsed,
  including those still in flight when the client stopped and the seed
  script's probe, so it may exceed the client's count; a client claiming
  *more* than nginx served is miscounting.
* a machine that is not ours alone. /proc/stat gives each CPU's busy time
  over the run; subtracting nginx's CPU time (CPU 0) and the client's
  (CPU 1) leaves what other processes took. nginx near 100 % of its CPU
  means the row measured nginx, not the client.

A third check flags a client whose process took far longer than the run
it was asked for (a slow start or a hang at exit), which also spreads the
CPU figures over a longer interval.

The figures cover the whole client process, start-up included, so they are
approximate; they flag skewed rows, they do not correct them.

The server is nginx, or the built-in target (:mod:`builtin`) in the
``servers`` mode; both offer ``served()``, ``cpu_seconds()``, a ``label``
and say whether their status request counts itself
(``status_counts_itself``: nginx's stub_status does, runner's
``/__runner/stats`` does not).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from machine import busy_seconds, cpu_jiffies

#: Share of one CPU taken by other processes above which a row gets a note.
OTHERS_NOTE_PCT = 15.0
#: nginx CPU share above which the row is noted as server-bound.
NGINX_BOUND_PCT = 90.0


@dataclass
class Snapshot:
    served: int | None
    jiffies: list[tuple[int, int]]
    nginx_cpu_s: float | None  # the server's CPU time (nginx's, or the built-in target's)
    at: float
    server: str = "nginx"
    status_self: int = 1  # requests the server counts for reading its own count


def snapshot(server) -> Snapshot:
    """Count, CPU times and clock now, for a server with ``served()`` and ``cpu_seconds()`` (nginx, target)."""
    return Snapshot(server.served(), cpu_jiffies(), server.cpu_seconds(), time.perf_counter(),
                    server.label, 1 if server.status_counts_itself else 0)


def count_check(result: dict, before: Snapshot, after: Snapshot) -> dict:
    if before.served is None or after.served is None:
        return {}
    served = after.served - before.served - after.status_self  # minus the second status request itself
    check = {"server_requests": served}
    claimed = result.get("requests")
    if claimed is not None and claimed > served:
        check["count_warning"] = f"client counted {claimed}, {after.server} served {served}"
    return check


def cpu_check(result: dict, before: Snapshot, after: Snapshot) -> dict:
    interval = after.at - before.at
    busy = busy_seconds(before.jiffies, after.jiffies)
    if interval <= 0 or len(busy) < 2:
        return {}
    check: dict = {"cpu_busy_pct": [round(100 * b / interval, 1) for b in busy]}
    notes = []
    if before.nginx_cpu_s is not None and after.nginx_cpu_s is not None:
        server_s = after.nginx_cpu_s - before.nginx_cpu_s
        key = f"{after.server}_cpu_pct"
        check[key] = round(100 * server_s / interval, 1)
        check["others_cpu0_pct"] = round(max(0.0, 100 * (busy[0] - server_s) / interval), 1)
        if check[key] >= NGINX_BOUND_PCT:
            notes.append(f"{after.server} at {check[key]:.0f}% CPU")
    client_s = result.get("client_cpu_s")
    if client_s is not None:
        check["client_cpu_pct"] = round(100 * client_s / interval, 1)
        check["others_cpu1_pct"] = round(max(0.0, 100 * (busy[1] - client_s) / interval), 1)
    others = max(check.get("others_cpu0_pct", 0.0), check.get("others_cpu1_pct", 0.0))
    if others >= OTHERS_NOTE_PCT:
        notes.append(f"others used {check.get('others_cpu0_pct', 0):.0f}%/{check.get('others_cpu1_pct', 0):.0f}% "
                     f"of CPU0/CPU1")
    if notes:
        check["cpu_note"] = "; ".join(notes)
    return check


def wall_check(result: dict) -> dict:
    """A client that takes far longer than its run (slow start-up, a hang at exit) is worth a note."""
    wall, planned = result.get("wall_s"), result.get("duration_s")
    if wall is not None and planned and wall > 2 * planned + 5:
        return {"wall_note": f"took {wall:.0f} s for a {planned:g} s run"}
    return {}


def row_checks(result: dict, before: Snapshot, after: Snapshot) -> dict:
    """Extra fields for an ok row: nginx's count, CPU shares and any warnings."""
    if result["status"] != "ok":
        return {}
    return {**count_check(result, before, after), **cpu_check(result, before, after), **wall_check(result)}
