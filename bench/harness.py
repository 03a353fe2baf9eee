"""What every nginx-based mode does around its measurements: peers, limits, load, the JSON file.

The table, ``open``, ``flow``, ``servers`` and ``goals`` modes all need the
same preparation (raise the open-file limit, find or install the peers they
use, note how busy the machine is) and end the same way (one JSON document
with the machine, the load before and after, the peer versions and the
elapsed time). Keeping it here lets each mode module hold only its own
measurement.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from machine import load_snapshot, load_warning, machine_info
from nginx import raise_open_files
from peers import Peer, find_peers
from report import write_json

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


@dataclass
class Context:
    peers: dict[str, Peer]
    open_files: int
    load_before: dict
    warning: str
    started: float = field(default_factory=time.time)


def print_peers(peers: dict[str, Peer]) -> None:
    print("peers:")
    for peer in peers.values():
        state = f"UNAVAILABLE: {peer.unavailable}" if not peer.ok else peer.version or "(version unknown)"
        installed = " [installed now]" if peer.installed_now else ""
        print(f"  {peer.name:<11} {state}{installed}")


def prepare(args: argparse.Namespace, needs: set[str] | None = None) -> Context | None:
    """Raise limits, find ``needs`` (all peers when None), warn on a busy machine; None without nginx."""
    open_files = raise_open_files()
    peers = find_peers(install=not args.no_install, only=needs)
    print_peers(peers)
    if "nginx" in peers and not peers["nginx"].ok:
        print(f"error: no nginx, so no target: {peers['nginx'].unavailable}", file=sys.stderr)
        return None
    load_before = load_snapshot()
    warning = load_warning(load_before)
    if warning:
        print(f"WARNING: {warning}")
    return Context(peers, open_files, load_before, warning)


def finish(context: Context, out: Path, document: dict) -> None:
    """Add machine, load, peers and elapsed time to ``document`` and write it to ``out``."""
    load_after = load_snapshot()
    after_warning = load_warning(load_after)
    full = {
        **document,
        "machine": {**machine_info(), "open_files_limit": context.open_files},
        "load": {"before": context.load_before, "after": load_after,
                 "warning": context.warning or after_warning},
        "peers": {name: peer.to_dict() for name, peer in context.peers.items()},
        "elapsed_s": round(time.time() - context.started, 1),
    }
    write_json(out, full)
    print(f"\nwrote {out}")
    if after_warning and not context.warning:
        print(f"WARNING: {after_warning}")


def default_out(mode: str) -> Path:
    return RESULTS_DIR / f"{mode}.json"
