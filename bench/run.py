"""Benchmark harness: runner against wrk, hey, Locust and a seed-style script, on one nginx.

    python bench/run.py [--quick] [--out bench/results/latest.json]
    python bench/run.py million [--quick] [--out bench/results/million.json]
    python bench/run.py open [--rate 40000] [--duration 5] [--max-in-flight 2000]
    python bench/run.py flow [--quick] [--duration 10]
    python bench/run.py servers [--quick] [--duration 10] [--rounds 3]
    python bench/run.py https [--quick] [--duration 10]
    python bench/run.py goals [--quick]

The first form starts nginx (one worker, CPU 0) and runs every client (CPU 1)
against it for each row, then prints a table with each client's requests/s
relative to wrk's in the same row; wrk is the reference because it is the
fastest well-known C client, so the ratio says how much of the machine's
loopback capacity a client reaches. ``million`` times runner's own
1M-request scenario next to wrk on the built-in target (see :mod:`million`);
``open`` runs the open model on one client core, ``flow`` a two-step flow
with a capture next to a static GET, ``servers`` the built-in target against
nginx, ``https`` runner next to wrk on nginx's TLS listener (see :mod:`modes`);
``goals`` takes all of these in one run and prints each number with its
goal. See bench/README.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

import open_model
from clients import CLIENTS
from harness import finish, prepare
from nginx import Nginx
from report import add_ratios, format_table
from table import run_rows

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "latest.json"
MODES = ("table", "million", "open", "flow", "servers", "https", "goals")

#: (path, concurrency) rows of the full table, and of --quick.
FULL_ROWS = [("/small", 100), ("/small", 1000), ("/large", 100)]
QUICK_ROWS = [("/small", 100), ("/small", 1000)]
FULL_DURATION_S = 10.0
QUICK_DURATION_S = 3.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="runner benchmark harness (see bench/README.md)")
    parser.add_argument("mode", nargs="?", choices=MODES, default="table",
                        help="table (default): clients vs nginx; million: scenarios/million.yaml vs wrk; "
                             "open: open model on one core; flow: two-step flow vs static GET; "
                             "servers: built-in target vs nginx; https: TLS, runner vs wrk, keep-alive and not; "
                             "goals: all of them, one summary")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_DURATION_S:g} s per run and fewer rows (million: 100k/10k requests; "
                             f"open: {open_model.QUICK_DURATION_S:g} s; servers: 1 round)")
    parser.add_argument("--out", type=Path, help=f"result JSON (default {DEFAULT_OUT.relative_to(BENCH_DIR.parent)}, "
                                                 "other modes: bench/results/<mode>.json)")
    parser.add_argument("--duration", type=float,
                        help="seconds per run (overrides --quick's; open: the open stage's duration, default "
                             f"{open_model.FULL_DURATION_S:g}; million: wrk's run)")
    parser.add_argument("--clients", help=f"table mode: comma-separated subset of: {','.join(CLIENTS)}")
    parser.add_argument("--rate", type=int, default=open_model.DEFAULT_RATE,
                        help=f"open/goals: arrivals per second (default {open_model.DEFAULT_RATE})")
    parser.add_argument("--max-in-flight", type=int, default=open_model.DEFAULT_MAX_IN_FLIGHT,
                        help=f"open/goals: most requests in flight (default {open_model.DEFAULT_MAX_IN_FLIGHT})")
    parser.add_argument("--rounds", type=int, help="servers/goals: alternating rounds (default 3, --quick 1)")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get/pip install missing peers")
    args = parser.parse_args(argv)
    if args.clients:
        unknown = set(args.clients.split(",")) - set(CLIENTS)
        if unknown:
            parser.error(f"unknown clients {sorted(unknown)}; choose from {','.join(CLIENTS)}")
    for name in ("rate", "max_in_flight", "rounds", "duration"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def _sigterm_as_interrupt(*_args) -> None:
    """SIGTERM takes the same way out as Ctrl-C, so nginx and running clients are stopped."""
    raise KeyboardInterrupt


def table_mode(args: argparse.Namespace) -> int:
    duration = args.duration or (QUICK_DURATION_S if args.quick else FULL_DURATION_S)
    rows = QUICK_ROWS if args.quick else FULL_ROWS
    clients = args.clients.split(",") if args.clients else list(CLIENTS)
    context = prepare(args)
    if context is None:
        return 1
    with Nginx(context.peers["nginx"].command[0]) as nginx, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        print(f"nginx target: {nginx.url} (1 worker, CPU 0); clients on CPU 1; {duration:g} s per run")
        results = run_rows(nginx, rows, clients, duration, context.peers, Path(tmp))
        target = {"server": "nginx", "version": context.peers["nginx"].version, "url": nginx.url,
                  "worker_processes": 1, "cpu": 0}
    add_ratios(results)
    print()
    print(format_table(results))
    finish(context, args.out or DEFAULT_OUT, {
        "mode": "table", "quick": args.quick, "duration_s": duration, "rows": rows,
        "target": target, "client_cpu": 1, "results": results,
    })
    return 0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (`cmd &`)
    try:
        if args.mode == "million":
            from million import million_mode
            return million_mode(args)
        if args.mode in ("open", "flow", "servers", "https", "goals"):
            import modes
            return getattr(modes, f"{args.mode}_mode")(args)
        return table_mode(args)
    except KeyboardInterrupt:
        print("\ninterrupted; nginx and running clients were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
