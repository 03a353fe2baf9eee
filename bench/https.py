"""``python bench/run.py https``: the same GET over TLS, runner next to wrk, keep-alive and one connection per request.

All rows load nginx's TLS listener (:class:`nginx.Nginx` with ``tls=True``:
one worker on CPU 0, TLS 1.2 and 1.3, a throwaway ECDSA certificate, no
session resumption) with GETs of ``/small`` at concurrency 100, each client
pinned to CPU 1, one after the other in the same run:

* ``wrk``: the reference, keep-alive (wrk does not verify certificates);
* ``hey``: keep-alive, only when hey is already installed (it does not verify either);
* ``runner-fast`` / ``runner-aiohttp``: keep-alive, verifying the
  certificate against it alone (``defaults: {tls: {ca: CERT}}``), so their
  handshakes are the ones a careful user would make;
* ``runner-fast-close``: ``keepalive: false``, a new connection and a full
  handshake for every request, so its requests/s is handshakes/s.

The goal figure is runner-fast's requests/s over wrk's (>= 0.8): the cost
of TLS in the fast engine once connections are open. The handshake row has
no wrk counterpart (wrk cannot be told to close connections); its figures
are TLS handshakes per second (``phases_ms.tls.count`` over the measured
duration) and the p50/p99 of each phase of a request, connect, tls, ttfb
and receive, from runner's own result. nginx's count is checked for every
row as in the table.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from clients import CLIENTS, Job, run_runner
from nginx import SMALL_BYTES, Nginx
from peers import Peer
from report import add_ratios, count_text, format_table
from table import checked_row

PATH = "/small"
CONCURRENCY = 100
#: The goal: runner-fast's https requests/s at least this share of wrk's.
RATIO_GOAL = 0.8
#: runner's timing phases of one request, in the order they happen.
PHASES = ("connect", "tls", "ttfb", "receive")
FAST = "runner-fast"
FAST_CLOSE = "runner-fast-close"


def _run_close(peer: Peer, job: Job):
    """runner-fast with ``keepalive: false`` next to the row's TLS defaults: a handshake per request."""
    return run_runner(peer, replace(job, runner_defaults={**(job.runner_defaults or {}), "keepalive": False}), "fast")


#: Client name -> (peer it needs, how to run it), in the order the rows run; wrk first (the ratio base).
#: The runner rows take the row's TLS settings from ``Job.runner_defaults``.
HTTPS_CLIENTS = {**{name: CLIENTS[name] for name in ("wrk", "hey", FAST, "runner-aiohttp")},
                 FAST_CLOSE: ("runner", _run_close)}


def measure_https(nginx: Nginx, peers: dict[str, Peer], workdir: Path, duration_s: float,
                  clients: list[str]) -> dict:
    """Each of ``clients`` (names of :data:`HTTPS_CLIENTS`) on ``nginx.https_url``; rows, ratio and handshakes."""
    tls = {"ca": str(nginx.ca_file)}
    rows = []
    for client in clients:
        job_dir = workdir / f"https-{client}"
        job_dir.mkdir()
        job = Job(nginx.https_url, PATH, CONCURRENCY, duration_s, job_dir, runner_defaults={"tls": tls})
        row = checked_row(nginx, client, peers, job, HTTPS_CLIENTS)
        row["keepalive"] = client != FAST_CLOSE
        rows.append(row)
    add_ratios(rows)
    for row in rows:
        if not row["keepalive"]:
            row["ratio_to_wrk"] = None  # a handshake per request against keep-alive: not the same job
    fast = _row(rows, FAST)
    ratio = fast["ratio_to_wrk"] if fast else None
    return {"path": PATH, "body_bytes": SMALL_BYTES, "concurrency": CONCURRENCY, "duration_s": duration_s,
            "rows": rows, "ratio": ratio, "goal_met": ratio >= RATIO_GOAL if ratio is not None else None,
            "handshakes": handshake_figures(_row(rows, FAST_CLOSE)),
            "keepalive_connections": _tls_count(fast)}


def _row(rows: list[dict], client: str) -> dict | None:
    return next((r for r in rows if r["client"] == client and r["status"] == "ok"), None)


def _phases(row: dict | None) -> dict:
    return ((row or {}).get("extra") or {}).get("phases_ms") or {}


def _tls_count(row: dict | None) -> int | None:
    """Connections the row opened (one TLS handshake each), or None without runner's phases."""
    return _phases(row).get("tls", {}).get("count")


def handshake_figures(row: dict | None) -> dict | None:
    """Handshakes/s of the ``keepalive: false`` row and how many there were per request; None without one."""
    count = _tls_count(row)
    if row is None or count is None:
        return None
    seconds = row["extra"].get("measured_duration_s") or row["duration_s"]
    return {"handshakes": count, "duration_s": seconds,
            "handshakes_per_s": round(count / seconds, 1) if seconds else None,
            "per_request": round(count / row["requests"], 3) if row["requests"] else None}


def format_https(section: dict) -> str:
    rows = section["rows"]
    lines = [f"https: nginx TLS listener on CPU 0 (TLS 1.2/1.3, ECDSA P-256, no session resumption), "
             f"GET {PATH} ({section['body_bytes']} bytes), c={section['concurrency']}, clients on CPU 1, "
             f"{section['duration_s']:g} s each",
             format_table(rows), ""]
    engines = ", ".join(f"{r['client']} ran on {r['extra'].get('engine', '?')}" for r in rows
                        if r["status"] == "ok" and r["client"].startswith("runner"))
    if engines:
        lines.append(f"engines: {engines}")
    ratio = section["ratio"]
    if ratio is not None:
        lines.append(f"runner-fast https / wrk https req/s: {ratio:.3f} "
                     f"(goal >= {RATIO_GOAL}: {'met' if section['goal_met'] else 'NOT met'})")
    else:
        lines.append("runner-fast https / wrk https req/s: no figure (see the rows above)")
    shakes = section["handshakes"]
    keep = _row(rows, FAST)
    if shakes is not None:
        kept = (f"; keep-alive: {keep['rps']:,.0f} req/s over {count_text(section['keepalive_connections'])} "
                f"handshakes" if keep else "")
        lines.append(f"keepalive: false: {shakes['handshakes_per_s']:,.0f} handshakes/s ({shakes['handshakes']:,} "
                     f"in {shakes['duration_s']:.2f} s, {shakes['per_request']} per request){kept}")
    phased = [r for r in rows if r["status"] == "ok" and _phases(r)]
    if phased:
        table = [["phases ms: p50 / p99 (count)", *PHASES]]
        for row in phased:
            phases = _phases(row)
            table.append([f"  {row['client']}", *(f"{p['p50']:.2f} / {p['p99']:.2f} ({p['count']:,})"
                                                   if (p := phases.get(name)) else "-" for name in PHASES)])
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
        lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    return "\n".join(lines)

