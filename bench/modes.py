"""The ``open``, ``flow``, ``servers``, ``https`` and ``goals`` modes: the order of things around each measurement.

Each of the first four starts the pinned nginx, runs its measurement (see
:mod:`open_model`, :mod:`flow`, :mod:`servers`, :mod:`https`), prints its
lines and writes ``bench/results/<mode>.json``. ``goals`` takes every number
the virtual-user issue asks for in one run, on one nginx: the table's static
rows (wrk and runner-fast, ``/small`` at c=100 and c=1000), the open model,
the flow next to the static GET, the built-in target against nginx, the
https issue's pair (wrk and runner-fast on nginx's TLS listener) with the
handshake row, and then, with nginx stopped, the 1M scenario next to wrk on
the built-in target (the aiohttp 1M run is left out there). It ends with
one summary table: each number, its goal and whether it is met.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import flow as flow_rows
import https as https_rows
import million
import open_model
import servers
from harness import Context, default_out, finish, prepare
from nginx import Nginx
from report import add_ratios, count_text, format_goals, format_table
from table import run_rows

FULL_DURATION_S = 10.0
QUICK_DURATION_S = 3.0
#: The goals mode's static rows: the table's /small rows, wrk against runner-fast.
GOAL_ROWS = [("/small", 100), ("/small", 1000)]
#: The issue's goals for runner-fast / wrk on the static GET, by concurrency.
STATIC_GOALS = {100: 0.9, 1000: 0.8}
GOAL_CLIENTS = ["wrk", "runner-fast"]


def closed_duration(args: argparse.Namespace) -> float:
    return args.duration or (QUICK_DURATION_S if args.quick else FULL_DURATION_S)


def open_duration(args: argparse.Namespace) -> float:
    return args.duration or (open_model.QUICK_DURATION_S if args.quick else open_model.FULL_DURATION_S)


def rounds(args: argparse.Namespace) -> int:
    return args.rounds or (servers.QUICK_ROUNDS if args.quick else servers.DEFAULT_ROUNDS)


def _nginx(context: Context, tls: bool = False) -> Nginx:
    """The pinned nginx; with ``tls`` also its TLS listener, if the openssl peer is there to make its certificate."""
    openssl = context.peers.get("openssl")
    usable = tls and openssl is not None and openssl.ok
    return Nginx(context.peers["nginx"].command[0], tls=usable, openssl=openssl.command[0] if usable else None)


def _banner(nginx: Nginx) -> None:
    print(f"nginx target: {nginx.url} (1 worker, CPU 0); clients on CPU 1")


def _target_info(context: Context, nginx: Nginx) -> dict:
    return {"server": "nginx", "version": context.peers["nginx"].version, "url": nginx.url,
            "worker_processes": 1, "cpu": 0}


# --- open ----------------------------------------------------------------------------------------

def _open(args: argparse.Namespace, nginx: Nginx, workdir: Path) -> dict:
    duration = open_duration(args)
    print(f"  runner-fast open model: {args.rate:,}/s for {duration:g} s, max_in_flight {args.max_in_flight:,} ...",
          flush=True)
    row = open_model.measure_open(nginx, workdir, args.rate, duration, args.max_in_flight)
    print(f"    achieved {row['achieved_rate']:,.0f}/s, dropped {row['dropped']:,}, verdict {row['verdict']}"
          if row["status"] == "ok" else f"    {row['status']}: {row['reason'][:150]}", flush=True)
    return row


def open_mode(args: argparse.Namespace) -> int:
    context = prepare(args, {"nginx", "runner"})
    if context is None:
        return 1
    with _nginx(context) as nginx, tempfile.TemporaryDirectory(prefix="bench-open-") as tmp:
        _banner(nginx)
        row = _open(args, nginx, Path(tmp))
        target = _target_info(context, nginx)
    print()
    print(open_model.format_open(row))
    finish(context, args.out or default_out("open"),
           {"mode": "open", "quick": args.quick, "target": target, "client_cpu": 1, "result": row})
    return 0 if row["status"] == "ok" else 1


# --- flow ----------------------------------------------------------------------------------------

def _flow(args: argparse.Namespace, nginx: Nginx, workdir: Path) -> dict:
    duration = closed_duration(args)
    print(f"  runner-fast static /small c={flow_rows.CONCURRENCY} ...", end=" ", flush=True)
    static = flow_rows.measure_static(nginx, workdir, duration)
    print(_rate_text(static), flush=True)
    print(f"  runner-fast flow /token.json -> /small c={flow_rows.CONCURRENCY} ...", end=" ", flush=True)
    flow = flow_rows.measure_flow(nginx, workdir, duration)
    print(_rate_text(flow), flush=True)
    ratio = flow_rows.flow_ratio(static, flow)
    return {"static": static, "flow": flow, "ratio": ratio,
            "goal_met": ratio >= flow_rows.RATIO_GOAL if ratio is not None else None}


def _rate_text(row: dict) -> str:
    return f"{row['rps']:,.0f} req/s" if row["status"] == "ok" else f"{row['status']}: {row['reason'][:150]}"


def flow_mode(args: argparse.Namespace) -> int:
    context = prepare(args, {"nginx", "runner"})
    if context is None:
        return 1
    with _nginx(context) as nginx, tempfile.TemporaryDirectory(prefix="bench-flow-") as tmp:
        _banner(nginx)
        section = _flow(args, nginx, Path(tmp))
        target = _target_info(context, nginx)
    print()
    print(flow_rows.format_flow(section["static"], section["flow"], section["ratio"]))
    finish(context, args.out or default_out("flow"),
           {"mode": "flow", "quick": args.quick, "target": target, "client_cpu": 1, **section})
    return 0 if section["ratio"] is not None else 1


# --- servers -------------------------------------------------------------------------------------

def _servers(args: argparse.Namespace, context: Context, nginx: Nginx, workdir: Path) -> dict:
    return servers.measure_servers(nginx, context.peers["wrk"], workdir, closed_duration(args), rounds(args))


def servers_mode(args: argparse.Namespace) -> int:
    context = prepare(args, {"nginx", "wrk", "runner"})
    if context is None:
        return 1
    with _nginx(context) as nginx, tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp:
        _banner(nginx)
        section = _servers(args, context, nginx, Path(tmp))
        target = _target_info(context, nginx)
    print()
    print(servers.format_servers(section))
    finish(context, args.out or default_out("servers"),
           {"mode": "servers", "quick": args.quick, "nginx": target, "client_cpu": 1, **section})
    return 0 if section.get("ratio") is not None else 1


# --- https ---------------------------------------------------------------------------------------

#: The https mode's rows, in order; hey only when it is installed already (optional here).
HTTPS_CLIENTS = ["wrk", "hey", https_rows.FAST, "runner-aiohttp", https_rows.FAST_CLOSE]
#: The goals mode's https rows: the goal pair and the handshake row.
GOAL_HTTPS_CLIENTS = ["wrk", https_rows.FAST, https_rows.FAST_CLOSE]


def _https(args: argparse.Namespace, context: Context, nginx: Nginx, workdir: Path, clients: list[str]) -> dict:
    return https_rows.measure_https(nginx, context.peers, workdir, closed_duration(args), clients)


def _https_target(context: Context, nginx: Nginx) -> dict:
    return {**_target_info(context, nginx), "https_url": nginx.https_url, "tls_protocols": ["TLSv1.2", "TLSv1.3"],
            "certificate": "self-signed ECDSA P-256, made at start-up", "session_resumption": False}


def https_mode(args: argparse.Namespace) -> int:
    has_hey = shutil.which("hey") is not None
    context = prepare(args, {"nginx", "wrk", "runner", "openssl"} | ({"hey"} if has_hey else set()))
    if context is None:
        return 1
    if not context.peers["openssl"].ok:
        print(f"error: no openssl to make the certificate: {context.peers['openssl'].unavailable}", file=sys.stderr)
        return 1
    clients = [c for c in HTTPS_CLIENTS if c != "hey" or has_hey]
    if not has_hey:
        print("hey is not installed: its https row is skipped (optional here)")
    with _nginx(context, tls=True) as nginx, tempfile.TemporaryDirectory(prefix="bench-https-") as tmp:
        print(f"nginx target: {nginx.https_url} (TLS; plain {nginx.url} for its count), 1 worker on CPU 0; "
              f"clients on CPU 1, {closed_duration(args):g} s per row")
        section = _https(args, context, nginx, Path(tmp), clients)
        target = _https_target(context, nginx)
    print()
    print(https_rows.format_https(section))
    finish(context, args.out or default_out("https"),
           {"mode": "https", "quick": args.quick, "target": target, "client_cpu": 1, **section})
    return 0 if section["ratio"] is not None else 1


# --- goals ---------------------------------------------------------------------------------------

def goals_mode(args: argparse.Namespace) -> int:
    context = prepare(args, {"nginx", "wrk", "runner", "openssl"})
    if context is None:
        return 1
    duration = closed_duration(args)
    with _nginx(context, tls=True) as nginx, tempfile.TemporaryDirectory(prefix="bench-goals-") as tmp:
        _banner(nginx)
        workdir = Path(tmp)
        for name in ("table", "open", "flow", "servers", "https"):
            (workdir / name).mkdir()
        print(f"1. static GET, closed model, {duration:g} s per run")
        table = run_rows(nginx, GOAL_ROWS, GOAL_CLIENTS, duration, context.peers, workdir / "table")
        add_ratios(table)
        print("2. open model")
        opened = _open(args, nginx, workdir / "open")
        print(f"3. two-step flow vs static, {duration:g} s each")
        flowed = _flow(args, nginx, workdir / "flow")
        print(f"5. built-in target vs nginx under wrk, {rounds(args)} round(s) of {duration:g} s each")
        served = _servers(args, context, nginx, workdir / "servers")
        secured = None
        if nginx.tls:
            print(f"6. https: wrk and runner-fast on nginx's TLS listener, keep-alive and not, {duration:g} s each")
            secured = _https(args, context, nginx, workdir / "https", GOAL_HTTPS_CLIENTS)
        else:
            print(f"6. https: skipped, no openssl to make a certificate ({context.peers['openssl'].unavailable})")
        target = _https_target(context, nginx) if nginx.tls else _target_info(context, nginx)
    print(f"4. {million.SCENARIO} vs wrk on the built-in target (nginx stopped; nothing pinned)")
    millioned = million.measure_million(args.quick, context.peers["wrk"], duration, aiohttp=False)

    print()
    print(format_table(table))
    print()
    print(open_model.format_open(opened))
    print()
    print(flow_rows.format_flow(flowed["static"], flowed["flow"], flowed["ratio"]))
    print()
    print(servers.format_servers(served))
    print()
    print(million.format_million(millioned))
    if secured is not None:
        print()
        print(https_rows.format_https(secured))
    goals = summarize_goals(table, opened, flowed, served, millioned, secured)
    print()
    print(format_goals(goals))
    finish(context, args.out or default_out("goals"), {
        "mode": "goals", "quick": args.quick, "duration_s": duration, "target": target, "client_cpu": 1,
        "goals": goals, "table": table, "open": opened, "flow": flowed, "servers": served, "million": millioned,
        "https": secured,
    })
    return 0


def summarize_goals(table: list[dict], opened: dict, flowed: dict, served: dict, millioned: dict,
                    secured: dict | None) -> list[dict]:
    """One entry per number of the issue: what, the measured figure, the goal, met (None: no goal/no figure)."""
    goals = []
    for path, concurrency in GOAL_ROWS:
        row = next((r for r in table if r["client"] == "runner-fast" and r["path"] == path
                    and r["concurrency"] == concurrency), None)
        wrk = next((r for r in table if r["client"] == "wrk" and r["path"] == path
                    and r["concurrency"] == concurrency), None)
        ratio = row.get("ratio_to_wrk") if row else None
        measured = (f"{row['rps']:,.0f} / {wrk['rps']:,.0f} = {ratio:.3f}" if ratio is not None
                    else "no figure")
        goal = STATIC_GOALS.get(concurrency)
        goals.append({"item": 1, "what": f"runner-fast / wrk req/s, GET {path} c={concurrency}",
                      "measured": measured, "value": ratio, "goal": f">= {goal}" if goal else None,
                      "met": (ratio >= goal) if goal and ratio is not None else None})

    if opened["status"] == "ok":
        value = opened["achieved_over_requested"]
        goals.append({"item": 2, "what": f"open {opened['requested_rate']:,}/s: achieved / requested",
                      "measured": f"{opened['achieved_rate']:,.0f}/s = {value:.4f}", "value": value,
                      "goal": f">= {open_model.RATE_GOAL}", "met": opened["rate_goal_met"]})
        goals.append({"item": 2, "what": "open: dropped, verdict, loop lag p99",
                      "measured": f"{opened['dropped']:,}, {opened['verdict']}, {opened['loop_lag_p99_ms']:.1f} ms",
                      "value": opened["dropped"], "goal": "0, ok", "met": opened["dropped"] == 0
                      and opened["verdict"] == "ok"})
        goals.append({"item": 2, "what": "open: nginx count == report's requests",
                      "measured": f"{count_text(opened.get('server_requests'))} vs {opened['requests']:,}",
                      "value": opened["nginx_count_equals_report"], "goal": "equal",
                      "met": opened["nginx_count_equals_report"]})
    else:
        goals.append({"item": 2, "what": "open model", "measured": opened["status"], "value": None,
                      "goal": f">= {open_model.RATE_GOAL}", "met": None})

    ratio = flowed["ratio"]
    goals.append({"item": 3, "what": f"flow / static req/s, c={flow_rows.CONCURRENCY}",
                  "measured": (f"{flowed['flow']['rps']:,.0f} / {flowed['static']['rps']:,.0f} = {ratio:.3f}"
                               if ratio is not None else "no figure"),
                  "value": ratio, "goal": f">= {flow_rows.RATIO_GOAL}", "met": flowed["goal_met"]})

    versus = millioned["vs_wrk"]
    big = runs_label(millioned)
    goals.append({"item": 4, "what": f"runner wall / wrk time, {big} requests c=1000",
                  "measured": (f"{versus['runner_wall_s']:.2f} s / {versus['wrk_time_s']:.2f} s = "
                               f"{versus['runner_over_wrk']:.3f}" if versus else "no figure"),
                  "value": versus.get("runner_over_wrk"), "goal": f"<= {million.WALL_GOAL}",
                  "met": versus.get("goal_met")})
    runs = millioned["runs"]
    growth = millioned["rss_big_over_small"]
    goals.append({"item": 4, "what": f"peak RSS {big} / {runs[1]['label'].split()[0]} requests",
                  "measured": (f"{runs[0]['peak_rss_mb']:.1f} / {runs[1]['peak_rss_mb']:.1f} MB = {growth:.2f}"
                               if growth is not None else "no figure"),
                  "value": growth, "goal": f"<= {million.RSS_GOAL}", "met": millioned["rss_goal_met"]})

    ratio = served.get("ratio")
    goals.append({"item": 5, "what": "built-in target / nginx req/s, wrk c=100",
                  "measured": (f"{served['target_rps_mean']:,.0f} / {served['nginx_rps_mean']:,.0f} = {ratio:.3f}"
                               if ratio is not None else "no figure"),
                  "value": ratio, "goal": f">= {servers.RATIO_GOAL}", "met": served.get("goal_met")})

    secured = secured or {"ratio": None, "rows": [], "goal_met": None, "handshakes": None}
    ratio = secured["ratio"]
    rows = {r["client"]: r for r in secured["rows"]}
    what = f"https: runner-fast / wrk req/s, GET {https_rows.PATH} c={https_rows.CONCURRENCY}"
    goals.append({"item": 6, "what": what,
                  "measured": (f"{rows[https_rows.FAST]['rps']:,.0f} / {rows['wrk']['rps']:,.0f} = {ratio:.3f}"
                               if ratio is not None else "no figure"),
                  "value": ratio, "goal": f">= {https_rows.RATIO_GOAL}", "met": secured["goal_met"]})
    shakes = secured["handshakes"]
    goals.append({"item": 6, "what": "https keepalive: false: TLS handshakes/s (runner-fast)",
                  "measured": f"{shakes['handshakes_per_s']:,.0f}/s" if shakes else "no figure",
                  "value": shakes["handshakes_per_s"] if shakes else None, "goal": None, "met": None})
    return goals


def runs_label(millioned: dict) -> str:
    """The big run's request count as printed ("1,000,000"; "100,000" with --quick)."""
    return millioned["runs"][0]["label"].split()[0]
