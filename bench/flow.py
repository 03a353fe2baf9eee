"""``python bench/run.py flow``: a two-step flow with a capture next to a static GET, same nginx, same run.

Both rows are runner (``engine: fast``) on CPU 1, closed model, concurrency
100 for D seconds, against the pinned nginx:

* ``static``: GET ``/small`` (the table's runner-fast row);
* ``flow``: each iteration GETs ``/token.json`` (``{"token":"abc123"}``),
  captures ``$.token``, then GETs ``/small`` with ``Authorization: Bearer
  {token}``. Both steps loop (neither is ``once``), so every second request
  parses a JSON body and every other one renders a header template.

The ratio flow / static of requests per second (all HTTP requests, both
steps counted) is what virtual users with captures cost against plain
GETs; the goal is >= 0.75. nginx's own count is checked for both rows, and
the flow row reports its iterations, failed iterations (a failed capture
fails the iteration) and per-step requests.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from checks import row_checks, snapshot
from clients import Job, Unavailable, run_runner, run_runner_file, runner_sample
from nginx import TOKEN, Nginx
from report import count_text

CONCURRENCY = 100
#: The goal: the flow's requests/s at least this share of the static GET's.
RATIO_GOAL = 0.75

FLOW_SCENARIO = textwrap.dedent("""\
    # Written by bench/flow.py: capture a token from JSON, send it back as a header.
    version: 1
    name: bench-flow-c{concurrency}
    target: {base_url}
    engine: fast
    flows:
      - name: token-then-small
        steps:
          - name: token
            path: /token.json
            capture:
              token: {{json: $.token}}
          - name: small
            path: /small
            headers: {{Authorization: "Bearer {{token}}"}}
    stages:
      - name: measure
        duration: {seconds}s
        concurrency: {concurrency}
""")


def _guarded(row: dict, measure) -> dict:
    try:
        return {**row, "status": "ok", **measure()}
    except Unavailable as exc:
        return {**row, "status": "unavailable", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the other rows go on
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}


def measure_static(nginx: Nginx, workdir: Path, duration_s: float) -> dict:
    job = Job(nginx.url, "/small", CONCURRENCY, duration_s, workdir)
    row = {"client": "runner-fast", "row": "static", "path": "/small", "concurrency": CONCURRENCY,
           "duration_s": duration_s}
    before = snapshot(nginx)
    row = _guarded(row, lambda: run_runner(None, job, "fast").to_dict())
    row.update(row_checks(row, before, snapshot(nginx)))
    return row


def measure_flow(nginx: Nginx, workdir: Path, duration_s: float) -> dict:
    scenario = workdir / "runner-flow.yaml"
    scenario.write_text(FLOW_SCENARIO.format(concurrency=CONCURRENCY, base_url=nginx.url, seconds=f"{duration_s:g}"))
    row = {"client": "runner-fast", "row": "flow", "path": "/token.json + /small", "concurrency": CONCURRENCY,
           "duration_s": duration_s}

    def run() -> dict:
        result, measured = run_runner_file(scenario, nginx.url, 3 * duration_s + 60, "runner (flow)")
        if result["engine"]["name"] != "fast":
            raise Unavailable(f"asked for engine fast, runner used {result['engine']['name']}")
        flow = result["by_flow"][0] if result.get("by_flow") else {}
        return {**runner_sample(result, measured).to_dict(),
                "iterations": flow.get("iterations"), "iterations_failed": flow.get("iterations_failed"),
                "iterations_per_s": flow.get("iterations_per_s"),
                "skipped": result["totals"].get("skipped"),
                "by_step": {r["name"]: {"requests": r["requests"], "failed": r["failed"], "rps": r["rps"],
                                        "status_codes": r["status_codes"], "errors": r["errors"]}
                            for r in result["by_request"]},
                "error_kinds": result["totals"]["errors"]}

    before = snapshot(nginx)
    row = _guarded(row, run)
    row.update(row_checks(row, before, snapshot(nginx)))
    return row


def flow_ratio(static: dict, flow: dict) -> float | None:
    if static["status"] == flow["status"] == "ok" and static["rps"]:
        return round(flow["rps"] / static["rps"], 3)
    return None


def format_flow(static: dict, flow: dict, ratio: float | None) -> str:
    lines = [f"two-step flow vs static GET, runner-fast on CPU 1, nginx on CPU 0, c={CONCURRENCY}, "
             f"{static['duration_s']:g} s each (token {TOKEN!r} captured from /token.json)"]
    for row in (static, flow):
        if row["status"] != "ok":
            lines.append(f"  {row['row']:<7} {row['status']}: {row['reason'][:200]}")
            continue
        text = (f"  {row['row']:<7} {row['rps']:>10,.0f} req/s  requests {row['requests']:,}  "
                f"nginx served {count_text(row.get('server_requests'))}  errors {row['errors']}  "
                f"p99 {row['p99_ms']:.2f} ms  peak RSS {row['peak_rss_mb']:.1f} MB")
        if row["row"] == "flow":
            text += (f"\n          {row['iterations_per_s']:>10,.0f} iterations/s  "
                     f"failed iterations {row['iterations_failed']}  skipped {row['skipped']}")
        notes = "; ".join(n for n in (row.get("count_warning", ""), row.get("cpu_note", ""),
                                      row.get("wall_note", "")) if n)
        if notes:
            text += f"\n          notes: {notes}"
        lines.append(text)
    if ratio is not None:
        lines.append(f"  flow / static req/s: {ratio:.3f} (goal >= {RATIO_GOAL}: "
                     f"{'met' if ratio >= RATIO_GOAL else 'NOT met'})")
    return "\n".join(lines)
