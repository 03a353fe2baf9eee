"""``python bench/run.py servers``: runner's built-in target against nginx, both loaded by wrk.

Is the built-in target fast enough to be the thing a benchmark measures
against? Both servers run at once, each pinned to CPU 0 (nginx: one worker;
the target: ``runner serve --body-size 138``, one process), both with
keep-alive, both answering a 138-byte body on ``/small``. wrk (``-t1 -c100
-dDs``, pinned to CPU 1) loads one of them at a time; the rounds alternate
which goes first (nginx then target, target then nginx, ...), so a drift in
machine load does not favour one side. Only the server being loaded is
busy; the other sits idle in epoll.

Reported: each round's requests/s of both, each round's ratio target /
nginx, and the ratio of the means (goal >= 1.0). Each row carries the
server's own request count and CPU share (see :mod:`checks`).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from builtin import BuiltinServer
from checks import row_checks, snapshot
from clients import Job, Unavailable, run_wrk
from nginx import SMALL_BYTES
from peers import Peer

CONCURRENCY = 100
DEFAULT_ROUNDS = 3
QUICK_ROUNDS = 1
#: The goal: the built-in target serves at least as many requests/s as nginx.
RATIO_GOAL = 1.0
PAUSE_S = 1.0


def measure_wrk_on(server, wrk: Peer, workdir: Path, duration_s: float) -> dict:
    """wrk -t1 -c100 on ``server``'s /small; a row with wrk's figures and the server-side checks."""
    row = {"client": "wrk", "server": server.label, "path": "/small", "concurrency": CONCURRENCY,
           "duration_s": duration_s}
    job = Job(server.url, "/small", CONCURRENCY, duration_s, workdir)
    before = snapshot(server)
    try:
        row.update(status="ok", **run_wrk(wrk, job).to_dict())
    except Unavailable as exc:
        row.update(status="unavailable", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    row.update(row_checks(row, before, snapshot(server)))
    return row


def measure_servers(nginx, wrk: Peer, workdir: Path, duration_s: float, rounds: int) -> dict:
    """``rounds`` alternating rounds of wrk on nginx and on the built-in target (started here, CPU 0)."""
    section: dict = {"concurrency": CONCURRENCY, "duration_s": duration_s, "rounds": [], "body_bytes": SMALL_BYTES}
    if not wrk.ok:
        return {**section, "status": "unavailable", "reason": f"wrk: {wrk.unavailable}"}
    target = BuiltinServer(body_size=SMALL_BYTES, cpu="0")
    try:
        target.start()
    except BaseException as exc:  # Ctrl-C stops the server and goes on up; any other failure is reported
        target.stop()
        if not isinstance(exc, Exception):
            raise
        return {**section, "status": "error", "reason": f"built-in target: {exc}"}
    try:
        section["target_command"] = " ".join(target.command)
        servers = {"nginx": nginx, "target": target}
        for index in range(rounds):
            order = ("nginx", "target") if index % 2 == 0 else ("target", "nginx")
            entry = {"round": index + 1, "order": list(order)}
            for name in order:
                print(f"  round {index + 1}: wrk c={CONCURRENCY} on {name:<6}", end=" ", flush=True)
                entry[name] = row = measure_wrk_on(servers[name], wrk, workdir, duration_s)
                print(f"{row['rps']:>10,.0f} req/s" if row["status"] == "ok" else
                      f"{row['status']}: {row['reason'][:120]}", flush=True)
                time.sleep(PAUSE_S)
            if entry["nginx"]["status"] == entry["target"]["status"] == "ok" and entry["nginx"]["rps"]:
                entry["ratio"] = round(entry["target"]["rps"] / entry["nginx"]["rps"], 3)
            section["rounds"].append(entry)
    finally:
        target.stop()
    return {**section, "status": "ok", **summarize(section["rounds"])}


def summarize(rounds: list[dict]) -> dict:
    nginx = [r["nginx"]["rps"] for r in rounds if r["nginx"]["status"] == "ok"]
    target = [r["target"]["rps"] for r in rounds if r["target"]["status"] == "ok"]
    ratios = [r["ratio"] for r in rounds if "ratio" in r]
    summary: dict = {"nginx_rps_mean": round(statistics.fmean(nginx), 1) if nginx else None,
                     "target_rps_mean": round(statistics.fmean(target), 1) if target else None,
                     "round_ratios": ratios}
    if nginx and target:
        summary["ratio"] = round(summary["target_rps_mean"] / summary["nginx_rps_mean"], 3)
        summary["goal_met"] = summary["ratio"] >= RATIO_GOAL
    return summary


def format_servers(section: dict) -> str:
    if section["status"] != "ok":
        return f"built-in target vs nginx: {section['status']}: {section['reason'][:200]}"
    lines = [f"built-in target vs nginx, wrk -t1 -c{CONCURRENCY} on CPU 1, each server on CPU 0, "
             f"{section['body_bytes']}-byte body, {section['duration_s']:g} s per run",
             f"  {'round':<6} {'nginx req/s':>12} {'target req/s':>13} {'target/nginx':>13}  notes"]
    for entry in section["rounds"]:
        cells = []
        for name in ("nginx", "target"):
            row = entry[name]
            cells.append(f"{row['rps']:,.0f}" if row["status"] == "ok" else row["status"])
        notes = "; ".join(f"{name}: {note}" for name in ("nginx", "target")
                          for note in (entry[name].get("count_warning"), entry[name].get("cpu_note"),
                                       f"{entry[name]['errors']} errors" if entry[name].get("errors") else None)
                          if note)
        ratio = f"{entry['ratio']:.3f}" if "ratio" in entry else "-"
        lines.append(f"  {entry['round']:<6} {cells[0]:>12} {cells[1]:>13} {ratio:>13}  {notes}")
    if section.get("ratio") is not None:
        lines.append(f"  mean   {section['nginx_rps_mean']:>12,.0f} {section['target_rps_mean']:>13,.0f} "
                     f"{section['ratio']:>13.3f}  (goal >= {RATIO_GOAL}: "
                     f"{'met' if section['goal_met'] else 'NOT met'})")
    return "\n".join(lines)
