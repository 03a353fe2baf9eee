"""The comparison table's rows: each client in turn on each (path, concurrency) against one nginx.

Used by the default mode (every client) and by ``goals`` (wrk and
runner-fast on ``/small`` at 100 and 1000).
"""

from __future__ import annotations

import time
from pathlib import Path

from checks import row_checks, snapshot
from clients import CLIENTS, Job, Unavailable
from machine import load_average
from nginx import Nginx
from peers import Peer

#: Pause between client runs so sockets in TIME_WAIT and CPU caches settle.
PAUSE_S = 1.0


def measure_row(client: str, peers: dict[str, Peer], job: Job, clients: dict = CLIENTS) -> dict:
    """One client on one row: its numbers, or why there are none. Never raises (except Ctrl-C).

    ``clients`` maps names to (peer, run) as :data:`clients.CLIENTS` does; a
    mode with rows of its own (``https``) passes its own map.
    """
    peer_name, run = clients[client]
    peer = peers.get(peer_name)
    row = {"client": client, "path": job.path, "concurrency": job.concurrency, "duration_s": job.duration_s,
           "loadavg_before": load_average()}
    if peer is None:
        return {**row, "status": "unavailable", "reason": f"peer {peer_name} was not looked for"}
    if not peer.ok:
        return {**row, "status": "unavailable", "reason": peer.unavailable}
    try:
        sample = run(peer, job)
    except Unavailable as exc:
        return {**row, "status": "unavailable", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one broken client must not stop the others
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    return {**row, "status": "ok", **sample.to_dict()}


def run_rows(nginx: Nginx, rows: list[tuple[str, int]], clients: list[str], duration_s: float,
             peers: dict[str, Peer], workdir: Path) -> list[dict]:
    """Every client on every row, with nginx's count and the CPU checks; results in table order."""
    results: list[dict] = []
    for path, concurrency in rows:
        for client in clients:
            job_dir = workdir / f"{client}{path.replace('/', '-')}-c{concurrency}"
            job_dir.mkdir()
            job = Job(nginx.url, path, concurrency, duration_s, job_dir)
            results.append(checked_row(nginx, client, peers, job))
    return results


def checked_row(nginx: Nginx, client: str, peers: dict[str, Peer], job: Job, clients: dict = CLIENTS) -> dict:
    """One row with its progress line, nginx's count and the CPU checks, then the pause before the next."""
    print(f"  {client:<15} c={job.concurrency:<5} {job.path:<7}", end=" ", flush=True)
    before = snapshot(nginx)
    result = measure_row(client, peers, job, clients)
    result.update(row_checks(result, before, snapshot(nginx)))
    print(progress_text(result), flush=True)
    time.sleep(PAUSE_S)
    return result


def progress_text(result: dict) -> str:
    if result["status"] != "ok":
        return f"{result['status']}: {result['reason'][:120]}"
    return f"{result['rps']:>10,.0f} req/s  {result['peak_rss_mb']:>7.1f} MB  errors={result['errors']}"
