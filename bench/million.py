"""``python bench/run.py million``: the 1M-request scenario, timed end to end, next to wrk.

Runs ``runner run scenarios/million.yaml`` (1,000,000 GETs, concurrency 1000,
built-in target) with the default engine and again with
``--set engine=aiohttp``, then a 100k run with the default engine. Wall
time is measured here, around the whole command (start-up, the built-in
target and report writing included), next to runner's own rps and
``generator.peak_rss_mb``. The 100k run is there for memory: runner keeps
histograms, not per-request records, so 1M should need about the same RSS
as 100k; the ratio shows whether it does (goal <= 1.1).

Then the reference: the same built-in target (``runner serve --body-size
1024``, started here the way runner starts its own, unpinned) loaded by
``wrk -t1 -c1000 -dDs`` with the scenario's requests (``/page/1``,
``/page/2``, ... from a small Lua script, so the target parses each one as
it does runner's). 1,000,000 / wrk's requests/s is "wrk's time for 1M";
runner's 1M wall time over that is the headline ratio (goal <= 1.15). wrk's
figure leaves out start-up, runner's does not.

``--quick`` scales the counts down tenfold (100k and 10k, and wrk's time
for 100k) as a smoke test. Nothing is pinned here: runner and its built-in
target share both CPUs, as they would for a user running the scenario, and
wrk and its target share them the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builtin import BuiltinServer
from clients import parse_wrk
from machine import load_snapshot, load_warning, machine_info
from peers import Peer, find_peers
from report import write_json
from rsswrap import measure

REPO_DIR = Path(__file__).resolve().parent.parent
SCENARIO = "scenarios/million.yaml"
DEFAULT_OUT = REPO_DIR / "bench" / "results" / "million.json"
#: Time bound for one run: 1M requests even at a slow 2,000 req/s take ~500 s.
RUN_TIMEOUT_S = 1200
#: scenarios/million.yaml's built-in target: ``body_size: 1KiB``, concurrency 1000.
BODY_BYTES = 1024
CONCURRENCY = 1000
#: Seconds of wrk against the built-in target (--duration overrides).
WRK_DURATION_S = 10.0
WRK_QUICK_DURATION_S = 3.0
#: Goals: runner's 1M wall time at most this multiple of wrk's time for 1M; RSS 1M / 100k at most this.
WALL_GOAL = 1.15
RSS_GOAL = 1.1

#: wrk's requests, like the scenario's /page/{seq}: one counter per wrk thread (-t1: one).
WRK_SEQ_SCRIPT = """\
-- Written by bench/million.py: GET /page/1, /page/2, ... like scenarios/million.yaml.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/page/" .. n)
end
"""


def planned_runs(quick: bool, aiohttp: bool = True) -> list[tuple[str, int, list[str]]]:
    """(label, requests, extra --set overrides) for each run, in order: big, small, then big on aiohttp."""
    big, small = (100_000, 10_000) if quick else (1_000_000, 100_000)
    runs = [
        (f"{big:,} default engine", big, []),
        (f"{small:,} default engine", small, []),
    ]
    if aiohttp:
        runs.append((f"{big:,} engine=aiohttp", big, ["engine=aiohttp"]))
    return runs


def run_once(requests: int, overrides: list[str], out_json: Path) -> dict:
    """One ``runner run``, bounded in time; returns wall time plus the figures from its JSON."""
    sets = [f"stages.0.requests={requests}", *overrides]
    command = [sys.executable, "-m", "runner", "run", SCENARIO, "--out", f"json={out_json}", "--quiet"]
    for item in sets:
        command += ["--set", item]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _out, err = process.communicate(timeout=RUN_TIMEOUT_S)
    except BaseException:  # timeout or Ctrl-C: stop runner and its built-in target
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    wall = time.perf_counter() - started
    row = {"command": " ".join(command[1:]), "returncode": process.returncode, "wall_s": round(wall, 2)}
    if process.returncode != 0 or not out_json.exists():
        return {**row, "status": "error", "reason": err.strip()[-500:]}
    result = json.loads(out_json.read_text())
    totals = result["totals"]
    return {**row, "status": "ok", "engine": result["engine"]["name"], "requests": totals["requests"],
            "ok": totals["ok"], "failed": totals["failed"], "rps": totals["rps"],
            "duration_s": totals["duration_s"], "p50_ms": totals["latency_ms"]["p50"],
            "p99_ms": totals["latency_ms"]["p99"], "peak_rss_mb": result["generator"]["peak_rss_mb"],
            "cpu_s": result["generator"].get("cpu_s")}


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'run':<26} {'engine':<8} {'wall s':>8} {'req/s':>9} {'peak RSS MB':>11} {'failed':>7}"]
    for r in rows:
        if r["status"] == "ok":
            lines.append(f"{r['label']:<26} {r['engine']:<8} {r['wall_s']:>8.1f} {r['rps']:>9,.0f} "
                         f"{r['peak_rss_mb']:>11.1f} {r['failed']:>7}")
        else:
            lines.append(f"{r['label']:<26} error (exit {r['returncode']}): {r['reason'][-150:]}")
    return "\n".join(lines)


def rss_growth(rows: list[dict]) -> float | None:
    """Peak RSS of the big default-engine run over the small one: ~1.0 means memory does not grow."""
    big, small = rows[0], rows[1]
    if big["status"] == small["status"] == "ok" and small["peak_rss_mb"]:
        return round(big["peak_rss_mb"] / small["peak_rss_mb"], 2)
    return None


def wrk_on_builtin(wrk: Peer, duration_s: float, workdir: Path) -> dict:
    """wrk -t1 -c1000 for ``duration_s`` on a fresh built-in target (unpinned, like runner's own)."""
    row = {"client": "wrk", "concurrency": CONCURRENCY, "duration_s": duration_s, "body_bytes": BODY_BYTES,
           "paths": "/page/1, /page/2, ... (Lua request())", "pinned": False}
    if not wrk.ok:
        return {**row, "status": "unavailable", "reason": wrk.unavailable}
    script = workdir / "seq.lua"
    script.write_text(WRK_SEQ_SCRIPT)
    seconds = max(1, round(duration_s))
    with BuiltinServer(body_size=BODY_BYTES) as target:
        command = [*wrk.command, "-t1", f"-c{CONCURRENCY}", f"-d{seconds}s", "--latency", "-s", str(script),
                   target.url]
        row["command"] = " ".join(command)
        row["target_command"] = " ".join(target.command)
        before = target.served()
        measured = measure(command, 3 * seconds + 60)
        after = target.served()
    if measured.returncode != 0:
        tail = " | ".join((measured.stderr or measured.stdout).strip().splitlines()[-3:])
        return {**row, "status": "error", "reason": f"wrk exited {measured.returncode}: {tail}"}
    parsed = parse_wrk(measured.stdout)
    served = after - before if before is not None and after is not None else None
    return {**row, "status": "ok", **parsed, "server_requests": served, "wall_s": measured.wall_s,
            "peak_rss_mb": measured.peak_rss_mb}


def compare_with_wrk(rows: list[dict], wrk_row: dict) -> dict:
    """runner's big-run wall time over wrk's time for the same number of requests."""
    big = rows[0]
    if big["status"] != "ok" or wrk_row["status"] != "ok" or not wrk_row["rps"]:
        return {}
    wrk_time = big["requests"] / wrk_row["rps"]
    ratio = big["wall_s"] / wrk_time
    return {"requests": big["requests"], "runner_wall_s": big["wall_s"], "wrk_rps": wrk_row["rps"],
            "wrk_time_s": round(wrk_time, 2), "runner_over_wrk": round(ratio, 3), "goal_met": ratio <= WALL_GOAL}


def measure_million(quick: bool, wrk: Peer, wrk_duration_s: float, aiohttp: bool = True) -> dict:
    """The runs of :func:`planned_runs`, then wrk on the built-in target; the mode's JSON document."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-million-") as tmp:
        for index, (label, requests, overrides) in enumerate(planned_runs(quick, aiohttp)):
            print(f"  runner run {SCENARIO}: {label} ...", end=" ", flush=True)
            row = {"label": label, **run_once(requests, overrides, Path(tmp) / f"run{index}.json")}
            print(f"{row['wall_s']} s" if row["status"] == "ok" else f"error: {row['reason'][-120:]}", flush=True)
            rows.append(row)
        print(f"  wrk -t1 -c{CONCURRENCY} -d{max(1, round(wrk_duration_s))}s on the built-in target ...",
              end=" ", flush=True)
        try:
            wrk_row = wrk_on_builtin(wrk, wrk_duration_s, Path(tmp))
        except Exception as exc:  # noqa: BLE001 - a broken target or a wrk timeout is reported, not raised
            wrk_row = {"client": "wrk", "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        print(f"{wrk_row['rps']:,.0f} req/s" if wrk_row["status"] == "ok" else
              f"{wrk_row['status']}: {wrk_row['reason'][-120:]}", flush=True)
    growth = rss_growth(rows)
    return {"mode": "million", "quick": quick, "scenario": SCENARIO, "runs": rows,
            "rss_big_over_small": growth, "rss_goal_met": growth <= RSS_GOAL if growth is not None else None,
            "wrk": wrk_row, "vs_wrk": compare_with_wrk(rows, wrk_row)}


def format_million(document: dict) -> str:
    rows = document["runs"]
    lines = [format_rows(rows)]
    growth = document["rss_big_over_small"]
    if growth is not None:
        lines.append(f"peak RSS {rows[0]['label']} / {rows[1]['label']}: {growth}x "
                     f"(goal <= {RSS_GOAL}: {'met' if document['rss_goal_met'] else 'NOT met'})")
    wrk_row, versus = document["wrk"], document["vs_wrk"]
    if wrk_row["status"] != "ok":
        lines.append(f"wrk on the built-in target: {wrk_row['status']}: {wrk_row['reason'][-200:]}")
    else:
        lines.append(f"wrk -t1 -c{CONCURRENCY} on the built-in target: {wrk_row['rps']:,.0f} req/s, "
                     f"{wrk_row['errors']} errors, the target counted {wrk_row.get('server_requests') or 0:,} requests")
    if versus:
        lines.append(f"runner {versus['requests']:,} requests: {versus['runner_wall_s']:.2f} s wall; "
                     f"wrk's time for {versus['requests']:,}: {versus['wrk_time_s']:.2f} s; "
                     f"runner / wrk: {versus['runner_over_wrk']:.3f} "
                     f"(goal <= {WALL_GOAL}: {'met' if versus['goal_met'] else 'NOT met'})")
    return "\n".join(lines)


def million_mode(args: argparse.Namespace) -> int:
    out = args.out or DEFAULT_OUT
    load_before = load_snapshot()
    warning = load_warning(load_before)
    if warning:
        print(f"WARNING: {warning}")
    wrk = find_peers(install=not args.no_install, only={"wrk"})["wrk"]
    duration = args.duration or (WRK_QUICK_DURATION_S if args.quick else WRK_DURATION_S)
    document = measure_million(args.quick, wrk, duration)
    print()
    print(format_million(document))
    write_json(out, {**document, "machine": machine_info(), "wrk_version": wrk.version,
                     "load": {"before": load_before, "after": load_snapshot(), "warning": warning}})
    print(f"\nwrote {out}")
    return 0 if all(r["status"] == "ok" for r in document["runs"]) and document["wrk"]["status"] == "ok" else 1
