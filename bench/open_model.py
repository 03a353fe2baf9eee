"""``python bench/run.py open``: the open model on one client core against the pinned nginx.

runner (``engine: fast``, pinned to CPU 1 like every client) runs one open
stage, ``rate: R/s, duration: Ds, max_in_flight: M`` (default 40,000/s for
5 s with 2,000 in flight), GETting nginx's ``/small``. The question is
whether one Python process can keep that arrival timeline:

* achieved / requested rate (runner's ``stages[0].rate``; goal >= 0.99);
* arrivals dropped because every in-flight slot was busy;
* runner's own generator verdict (``ok`` or ``saturated``, with reasons)
  and event-loop lag p99;
* whether nginx's own count (stub_status, read before and after) equals the
  requests runner reports.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from checks import row_checks, snapshot
from clients import Unavailable, run_runner_file, runner_sample
from nginx import Nginx
from report import count_text

DEFAULT_RATE = 40_000
DEFAULT_MAX_IN_FLIGHT = 2_000
FULL_DURATION_S = 5.0
QUICK_DURATION_S = 2.0
#: The goal: achieved arrivals per second at least this share of the requested rate.
RATE_GOAL = 0.99

OPEN_SCENARIO = textwrap.dedent("""\
    # Written by bench/open_model.py: the open model against nginx's /small.
    version: 1
    name: bench-open-{rate}
    target: {base_url}
    engine: fast
    flow:
      - name: get
        path: /small
    stages:
      - name: open
        rate: {rate}/s
        duration: {seconds}s
        max_in_flight: {max_in_flight}
""")


def measure_open(nginx: Nginx, workdir: Path, rate: int, duration_s: float, max_in_flight: int) -> dict:
    """One open-model run against ``nginx``; a row dict with status ok / unavailable / error."""
    row = {"client": "runner-fast", "model": "open", "path": "/small", "requested_rate": rate,
           "duration_s": duration_s, "max_in_flight": max_in_flight}
    scenario = workdir / "runner-open.yaml"
    scenario.write_text(OPEN_SCENARIO.format(rate=rate, base_url=nginx.url, seconds=f"{duration_s:g}",
                                             max_in_flight=max_in_flight))
    before = snapshot(nginx)
    try:
        result, measured = run_runner_file(scenario, nginx.url, 3 * duration_s + 60, "runner (open model)")
    except Unavailable as exc:
        return {**row, "status": "unavailable", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the other modes of a goals run go on
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    after = snapshot(nginx)
    sample = runner_sample(result, measured)
    stage = result["stages"][0]
    rate_block = stage.get("rate", {})
    generator = result["generator"]
    achieved = rate_block.get("achieved", 0.0)
    row.update(status="ok", **sample.to_dict())
    row.update({
        "engine": result["engine"]["name"],
        "achieved_rate": achieved,
        "achieved_over_requested": round(achieved / rate, 4) if rate else None,
        "scheduled": rate_block.get("scheduled"),
        "late_sends": rate_block.get("late_sends"),
        "rate_met_by_runner": rate_block.get("met"),
        "dropped": result["totals"]["dropped"],
        "verdict": generator.get("verdict"),
        "verdict_reasons": generator.get("reasons", []),
        "loop_lag_p99_ms": generator.get("loop_lag_p99_ms"),
        "status_codes": result["totals"]["status_codes"],
        "error_kinds": result["totals"]["errors"],
    })
    row.update(row_checks(row, before, after))
    served = row.get("server_requests")
    row["nginx_count_equals_report"] = served == row["requests"] if served is not None else None
    row["rate_goal_met"] = row["achieved_over_requested"] is not None and row["achieved_over_requested"] >= RATE_GOAL
    return row


def format_open(row: dict) -> str:
    if row["status"] != "ok":
        return f"open model {row['requested_rate']:,}/s: {row['status']}: {row['reason'][:200]}"
    equal = {True: "yes", False: "NO", None: "unknown"}[row["nginx_count_equals_report"]]
    lines = [
        f"open model, runner-fast on CPU 1, nginx /small on CPU 0: "
        f"rate {row['requested_rate']:,}/s for {row['duration_s']:g} s, max_in_flight {row['max_in_flight']:,}",
        f"  achieved          {row['achieved_rate']:>12,.1f}/s = {row['achieved_over_requested']:.4f} of requested "
        f"(goal >= {RATE_GOAL}: {'met' if row['rate_goal_met'] else 'NOT met'})",
        f"  dropped           {row['dropped']:>12,}   late sends {row['late_sends']:,}   "
        f"scheduled {row['scheduled']:,}",
        f"  generator verdict {row['verdict']:>12}   loop lag p99 {row['loop_lag_p99_ms']:.1f} ms"
        + (f"   ({'; '.join(row['verdict_reasons'])[:200]})" if row["verdict_reasons"] else ""),
        f"  requests          {row['requests']:>12,}   nginx served {count_text(row.get('server_requests'))}   "
        f"equal: {equal}   errors {row['errors']}",
        f"  latency p50/p99   {row['p50_ms']:.2f} / {row['p99_ms']:.2f} ms   peak RSS {row['peak_rss_mb']:.1f} MB",
    ]
    notes = "; ".join(n for n in (row.get("count_warning", ""), row.get("cpu_note", ""), row.get("wall_note", "")) if n)
    if notes:
        lines.append(f"  notes: {notes}")
    return "\n".join(lines)
