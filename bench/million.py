"""``python bench/run.py million``: the 1M-request scenario, timed end to end.

Runs ``runner run scenarios/million.yaml`` (1,000,000 GETs, concurrency 1000,
built-in target) with the default engine and again with
``--set engine=aiohttp``, then a 100k run with the default engine. Wall
time is measured here, around the whole command (start-up, the built-in
target and report writing included), next to runner's own rps and
``generator.peak_rss_mb``. The 100k run is there for memory: runner keeps
histograms, not per-request records, so 1M should need about the same RSS
as 100k; the ratio shows whether it does.

``--quick`` scales the counts down tenfold (100k and 10k) as a smoke test.
Nothing is pinned here: runner and its built-in target share both CPUs, as
they would for a user running the scenario.
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

from machine import load_snapshot, load_warning, machine_info
from report import write_json

REPO_DIR = Path(__file__).resolve().parent.parent
SCENARIO = "scenarios/million.yaml"
DEFAULT_OUT = REPO_DIR / "bench" / "results" / "million.json"
#: Time bound for one run: 1M requests even at a slow 2,000 req/s take ~500 s.
RUN_TIMEOUT_S = 1200


def planned_runs(quick: bool) -> list[tuple[str, int, list[str]]]:
    """(label, requests, extra --set overrides) for each run, in order."""
    big, small = (100_000, 10_000) if quick else (1_000_000, 100_000)
    return [
        (f"{big:,} default engine", big, []),
        (f"{big:,} engine=aiohttp", big, ["engine=aiohttp"]),
        (f"{small:,} default engine", small, []),
    ]


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
    big, small = rows[0], rows[2]
    if big["status"] == small["status"] == "ok" and small["peak_rss_mb"]:
        return round(big["peak_rss_mb"] / small["peak_rss_mb"], 2)
    return None


def million_mode(args: argparse.Namespace) -> int:
    out = args.out or DEFAULT_OUT
    load_before = load_snapshot()
    warning = load_warning(load_before)
    if warning:
        print(f"WARNING: {warning}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-million-") as tmp:
        for index, (label, requests, overrides) in enumerate(planned_runs(args.quick)):
            print(f"  {label} ...", end=" ", flush=True)
            row = {"label": label, **run_once(requests, overrides, Path(tmp) / f"run{index}.json")}
            print(f"{row['wall_s']} s" if row["status"] == "ok" else f"error: {row['reason'][-120:]}", flush=True)
            rows.append(row)
    growth = rss_growth(rows)
    print()
    print(format_rows(rows))
    if growth is not None:
        print(f"peak RSS {rows[0]['label']} / {rows[2]['label']}: {growth}x")
    write_json(out, {"mode": "million", "quick": args.quick, "scenario": SCENARIO,
                     "machine": machine_info(), "load": {"before": load_before, "after": load_snapshot(),
                                                         "warning": warning},
                     "runs": rows, "rss_big_over_small": growth})
    print(f"\nwrote {out}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1
