"""Benchmark harness: runner against wrk, hey, Locust and a seed-style script, on one nginx.

    python bench/run.py [--quick] [--out bench/results/latest.json]
    python bench/run.py million [--quick] [--out bench/results/million.json]

The first form starts nginx (one worker, CPU 0) and runs every client (CPU 1)
against it for each row, then prints a table with each client's requests/s
relative to wrk's in the same row; wrk is the reference because it is the
fastest well-known C client, so the ratio says how much of the machine's
loopback capacity a client reaches. The second form times runner's own
1M-request scenario (see :mod:`million`). See bench/README.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from checks import row_checks, snapshot
from clients import CLIENTS, Job, Unavailable
from machine import load_average, load_snapshot, load_warning, machine_info
from nginx import Nginx, raise_open_files
from peers import Peer, find_peers
from report import add_ratios, format_table, write_json

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "latest.json"

#: (path, concurrency) rows of the full table, and of --quick.
FULL_ROWS = [("/small", 100), ("/small", 1000), ("/large", 100)]
QUICK_ROWS = [("/small", 100), ("/small", 1000)]
FULL_DURATION_S = 10.0
QUICK_DURATION_S = 3.0
#: Pause between client runs so sockets in TIME_WAIT and CPU caches settle.
PAUSE_S = 1.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="runner benchmark harness (see bench/README.md)")
    parser.add_argument("mode", nargs="?", choices=("table", "million"), default="table",
                        help="table (default): clients vs nginx; million: time scenarios/million.yaml")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_DURATION_S:g} s per run and fewer rows (million: 100k/10k requests)")
    parser.add_argument("--out", type=Path, help=f"result JSON (default {DEFAULT_OUT.relative_to(BENCH_DIR.parent)}, "
                                                 "million mode: bench/results/million.json)")
    parser.add_argument("--duration", type=float, help="seconds per client run (overrides --quick's)")
    parser.add_argument("--clients", help=f"comma-separated subset of: {','.join(CLIENTS)}")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get/pip install missing peers")
    args = parser.parse_args(argv)
    if args.clients:
        unknown = set(args.clients.split(",")) - set(CLIENTS)
        if unknown:
            parser.error(f"unknown clients {sorted(unknown)}; choose from {','.join(CLIENTS)}")
    return args


def _sigterm_as_interrupt(*_args) -> None:
    """SIGTERM takes the same way out as Ctrl-C, so nginx and running clients are stopped."""
    raise KeyboardInterrupt


def print_peers(peers: dict[str, Peer]) -> None:
    print("peers:")
    for peer in peers.values():
        state = f"UNAVAILABLE: {peer.unavailable}" if not peer.ok else peer.version or "(version unknown)"
        installed = " [installed now]" if peer.installed_now else ""
        print(f"  {peer.name:<11} {state}{installed}")


def measure_row(client: str, peers: dict[str, Peer], job: Job) -> dict:
    """One client on one row: its numbers, or why there are none. Never raises (except Ctrl-C)."""
    peer_name, run = CLIENTS[client]
    peer = peers[peer_name]
    row = {"client": client, "path": job.path, "concurrency": job.concurrency, "duration_s": job.duration_s,
           "loadavg_before": load_average()}
    if not peer.ok:
        return {**row, "status": "unavailable", "reason": peer.unavailable}
    try:
        sample = run(peer, job)
    except Unavailable as exc:
        return {**row, "status": "unavailable", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one broken client must not stop the others
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    return {**row, "status": "ok", **sample.to_dict()}


def run_table(rows: list[tuple[str, int]], clients: list[str], duration_s: float,
              peers: dict[str, Peer]) -> tuple[list[dict], dict]:
    results: list[dict] = []
    with Nginx(peers["nginx"].command[0]) as nginx, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        print(f"nginx target: {nginx.url} (1 worker, CPU 0); clients on CPU 1; {duration_s:g} s per run")
        for path, concurrency in rows:
            for client in clients:
                workdir = Path(tmp) / f"{client}{path.replace('/', '-')}-c{concurrency}"
                workdir.mkdir()
                job = Job(nginx.url, path, concurrency, duration_s, workdir)
                print(f"  {client:<15} c={concurrency:<5} {path:<7}", end=" ", flush=True)
                before = snapshot(nginx)
                result = measure_row(client, peers, job)
                result.update(row_checks(result, before, snapshot(nginx)))
                print(_progress_text(result), flush=True)
                results.append(result)
                time.sleep(PAUSE_S)
        target = {"server": "nginx", "version": peers["nginx"].version, "url": nginx.url,
                  "worker_processes": 1, "cpu": 0}
    add_ratios(results)
    return results, target


def _progress_text(result: dict) -> str:
    if result["status"] != "ok":
        return f"{result['status']}: {result['reason'][:120]}"
    return f"{result['rps']:>10,.0f} req/s  {result['peak_rss_mb']:>7.1f} MB  errors={result['errors']}"


def table_mode(args: argparse.Namespace) -> int:
    duration = args.duration or (QUICK_DURATION_S if args.quick else FULL_DURATION_S)
    rows = QUICK_ROWS if args.quick else FULL_ROWS
    clients = args.clients.split(",") if args.clients else list(CLIENTS)
    out = args.out or DEFAULT_OUT
    nofile = raise_open_files()
    peers = find_peers(install=not args.no_install)
    print_peers(peers)
    if not peers["nginx"].ok:
        print(f"error: no nginx, so no target: {peers['nginx'].unavailable}", file=sys.stderr)
        return 1
    load_before = load_snapshot()
    warning = load_warning(load_before)
    if warning:
        print(f"WARNING: {warning}")
    started = time.time()
    results, target = run_table(rows, clients, duration, peers)
    load_after = load_snapshot()
    print()
    print(format_table(results))
    document = {
        "mode": "table", "quick": args.quick, "duration_s": duration, "rows": rows,
        "machine": {**machine_info(), "open_files_limit": nofile},
        "load": {"before": load_before, "after": load_after, "warning": warning or load_warning(load_after)},
        "target": target, "client_cpu": 1,
        "peers": {name: peer.to_dict() for name, peer in peers.items()},
        "elapsed_s": round(time.time() - started, 1),
        "results": results,
    }
    write_json(out, document)
    print(f"\nwrote {out}")
    if document["load"]["warning"] and not warning:
        print(f"WARNING: {document['load']['warning']}")
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (`cmd &`)
    try:
        if args.mode == "million":
            from million import million_mode
            return million_mode(args)
        return table_mode(args)
    except KeyboardInterrupt:
        print("\ninterrupted; nginx and running clients were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
