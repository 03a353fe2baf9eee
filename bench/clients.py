"""How to run each client for one row, and how to read its numbers.

Every client gets the same job: keep-alive GETs of one path at a fixed
concurrency for about D seconds, pinned to CPU 1 (nginx is on CPU 0), run
under :mod:`rsswrap` so its peak RSS is measured the same way for all.
Each function returns a :class:`Sample` or raises :class:`Unavailable`
(the client cannot run this row: not installed, engine not built yet) or
another exception (it ran but broke: the row is marked as an error).

Where a client reports its own peak RSS (runner's ``generator.peak_rss_mb``,
the seed script's getrusage) that figure is used, because it is the
generator process alone; the wrapper's figure is kept alongside.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peers import Peer
from rsswrap import Measured, measure

CLIENT_CPU = "1"
BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent


@dataclass(frozen=True)
class Job:
    base_url: str  # nginx, e.g. http://127.0.0.1:40123
    path: str  # /small or /large
    concurrency: int
    duration_s: float
    workdir: Path  # a temp dir for this job's files
    #: runner only: the scenario's ``defaults`` block (the https rows: ``tls``, ``keepalive``); None: none.
    runner_defaults: dict | None = None

    @property
    def url(self) -> str:
        return self.base_url + self.path

    @property
    def timeout_s(self) -> float:
        """Hard bound on one client run: generous, but a hung client cannot stall the harness."""
        return 3 * self.duration_s + 60


@dataclass
class Sample:
    rps: float
    peak_rss_mb: float
    requests: int | None = None
    errors: int | None = None  # failed requests (non-2xx, socket errors), when the client says
    p50_ms: float | None = None
    p99_ms: float | None = None
    wall_s: float | None = None
    wrapper_rss_mb: float | None = None  # rsswrap's figure, also when the client reports its own
    client_cpu_s: float | None = None  # CPU time the client used (user + system)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Unavailable(Exception):
    """This client cannot run this row (the reason is the message)."""


def pinned(command: list[str]) -> list[str]:
    return ["taskset", "-c", CLIENT_CPU, *command]


def _checked(measured: Measured, what: str) -> Measured:
    if measured.returncode != 0:
        tail = (measured.stderr or measured.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{what} exited {measured.returncode}: {' | '.join(tail)}")
    return measured


# --- wrk ---------------------------------------------------------------------------------------

_WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_latency_ms(text: str, percent: str) -> float | None:
    match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    return float(match.group(1)) * _WRK_UNITS_MS[match.group(2)] if match else None


def parse_wrk(text: str) -> dict:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not rps:
        raise ValueError(f"no 'Requests/sec' in wrk output: {text.strip()[-300:]}")
    total = re.search(r"^\s*(\d+) requests in", text, re.M)
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return {"rps": float(rps.group(1)), "requests": int(total.group(1)) if total else None,
            "errors": errors, "p50_ms": _wrk_latency_ms(text, "50"), "p99_ms": _wrk_latency_ms(text, "99")}


def run_wrk(peer: Peer, job: Job) -> Sample:
    duration = f"{max(1, round(job.duration_s))}s"
    command = [*peer.command, "-t1", f"-c{job.concurrency}", f"-d{duration}", "--latency", job.url]
    measured = _checked(measure(pinned(command), job.timeout_s), "wrk")
    parsed = parse_wrk(measured.stdout)
    return Sample(peak_rss_mb=measured.peak_rss_mb, wall_s=measured.wall_s,
                  wrapper_rss_mb=measured.peak_rss_mb, client_cpu_s=measured.cpu_s, **parsed)


# --- hey ---------------------------------------------------------------------------------------

def parse_hey(text: str) -> dict:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        raise ValueError(f"no 'Requests/sec' in hey output: {text.strip()[-300:]}")
    codes = {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    error_block = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    transport_errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", error_block, re.M))

    def latency(percent: str) -> float | None:
        match = re.search(rf"^\s*{percent}%+ in ([\d.]+) secs", text, re.M)
        return float(match.group(1)) * 1000.0 if match else None

    return {"rps": float(rps.group(1)), "requests": sum(codes.values()) + transport_errors,
            "errors": transport_errors + sum(n for code, n in codes.items() if code >= 400),
            "p50_ms": latency("50"), "p99_ms": latency("99")}


def run_hey(peer: Peer, job: Job) -> Sample:
    duration = f"{max(1, round(job.duration_s))}s"
    command = [*peer.command, "-z", duration, "-c", str(job.concurrency), job.url]
    measured = _checked(measure(pinned(command), job.timeout_s), "hey")
    parsed = parse_hey(measured.stdout)
    return Sample(peak_rss_mb=measured.peak_rss_mb, wall_s=measured.wall_s,
                  wrapper_rss_mb=measured.peak_rss_mb, client_cpu_s=measured.cpu_s, **parsed)


# --- Locust ------------------------------------------------------------------------------------

LOCUSTFILE = textwrap.dedent('''\
    """Written by bench/clients.py: one FastHttpUser per connection, no think time."""
    from locust import FastHttpUser, constant, task


    class Bench(FastHttpUser):
        wait_time = constant(0)

        @task
        def get(self):
            self.client.get({path!r})
''')


def parse_locust_csv(stats_csv: Path) -> dict:
    with stats_csv.open(newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    row = rows.get("Aggregated")
    if row is None:
        raise ValueError(f"no Aggregated row in {stats_csv.name}")

    def number(key: str) -> float | None:
        value = row.get(key, "")
        return float(value) if value not in ("", "N/A") else None

    return {"rps": number("Requests/s") or 0.0, "requests": int(number("Request Count") or 0),
            "errors": int(number("Failure Count") or 0), "p50_ms": number("50%"), "p99_ms": number("99%")}


def run_locust(peer: Peer, job: Job) -> Sample:
    locustfile = job.workdir / "locustfile.py"
    locustfile.write_text(LOCUSTFILE.format(path=job.path))
    prefix = job.workdir / "locust"
    seconds = max(1, round(job.duration_s))
    command = [*peer.command, "-f", str(locustfile), "--headless", "--host", job.base_url,
               "-u", str(job.concurrency), "-r", str(job.concurrency), "-t", f"{seconds}s",
               "--csv", str(prefix), "--only-summary", "--exit-code-on-error", "0",
               "--loglevel", "WARNING"]
    measured = _checked(measure(pinned(command), job.timeout_s, cwd=str(job.workdir)), "locust")
    parsed = parse_locust_csv(Path(f"{prefix}_stats.csv"))
    return Sample(peak_rss_mb=measured.peak_rss_mb, wall_s=measured.wall_s,
                  wrapper_rss_mb=measured.peak_rss_mb, client_cpu_s=measured.cpu_s, **parsed)


# --- the seed-style script -----------------------------------------------------------------------

def run_seed_style(peer: Peer, job: Job) -> Sample:
    command = [sys.executable, str(BENCH_DIR / "seed_style.py"), job.url,
               "-c", str(job.concurrency), "-d", str(job.duration_s)]
    measured = _checked(measure(pinned(command), job.timeout_s), "seed_style.py")
    report = json.loads(measured.stdout)
    return Sample(rps=report["rps"], peak_rss_mb=report["peak_rss_mb"], requests=report["requests"],
                  errors=report["failed"], wall_s=measured.wall_s, wrapper_rss_mb=measured.peak_rss_mb,
                  client_cpu_s=measured.cpu_s,
                  extra={"probe": report["probe"], "event_loop": report["event_loop"]})


# --- runner ------------------------------------------------------------------------------------

RUNNER_SCENARIO = textwrap.dedent("""\
    # Written by bench/clients.py for one benchmark row.
    version: 1
    name: bench-{engine}-c{concurrency}{slug}
    target: {base_url}
    engine: {engine}
    flow:
      - name: get
        path: {path}
    stages:
      - name: measure
        duration: {seconds}s
        concurrency: {concurrency}
""")

#: Exit codes after which the engine itself is the problem (usage/scenario error, internal error).
_ENGINE_REFUSED = {2, 70}


def run_runner_file(scenario: Path, target_url: str | None, timeout_s: float, what: str,
                    pin: bool = True) -> tuple[dict, Measured]:
    """``runner run SCENARIO [--target URL]`` under rsswrap (on CPU 1 when ``pin``); its JSON result.

    The result goes next to the scenario (same name, ``.json``). A run that
    refuses the scenario or crashes (exit 2 or 70, or no JSON) raises
    :class:`Unavailable`; another non-zero exit raises RuntimeError.
    """
    result_json = scenario.with_suffix(".json")
    command = [sys.executable, "-m", "runner", "run", str(scenario), "--out", f"json={result_json}", "--quiet"]
    if target_url is not None:
        command += ["--target", target_url]
    measured = measure(pinned(command) if pin else command, timeout_s, cwd=str(REPO_DIR))
    if measured.returncode in _ENGINE_REFUSED or not result_json.exists():
        tail = (measured.stderr or measured.stdout).strip().splitlines()[-2:]
        raise Unavailable(f"{what}: exit {measured.returncode}: {' | '.join(tail)[-300:]}")
    result = json.loads(result_json.read_text())
    if measured.returncode != 0 and not (measured.stderr or measured.stdout).strip():
        # --quiet leaves nothing on stderr when every request failed (exit 3): say why from the result.
        totals = result.get("totals", {})
        samples = totals.get("error_samples") or {}
        kinds = sorted(totals.get("errors") or {}, key=lambda kind: -totals["errors"][kind])  # commonest first
        sample = next(((kind, samples[kind][0]) for kind in kinds if samples.get(kind)), None)
        if sample is not None:
            raise RuntimeError(f"{what} exited {measured.returncode}: {sample[0]}: {sample[1][:240]}")
    _checked(measured, what)
    return result, measured


def runner_sample(result: dict, measured: Measured) -> Sample:
    """The table's figures from a runner JSON result and its rsswrap measurement."""
    totals = result["totals"]
    return Sample(rps=totals["rps"], peak_rss_mb=result["generator"]["peak_rss_mb"],
                  requests=totals["requests"], errors=totals["failed"],
                  p50_ms=totals["latency_ms"]["p50"], p99_ms=totals["latency_ms"]["p99"],
                  wall_s=measured.wall_s, wrapper_rss_mb=measured.peak_rss_mb, client_cpu_s=measured.cpu_s,
                  extra={"engine": result["engine"]["name"], "engine_reason": result["engine"]["reason"],
                         "measured_duration_s": totals.get("duration_s"), "phases_ms": totals.get("phases_ms"),
                         "cpu_s": result["generator"].get("cpu_s"),
                         "event_loop": result["generator"].get("event_loop"),
                         "verdict": result["generator"].get("verdict"),
                         "loop_lag_p99_ms": result["generator"].get("loop_lag_p99_ms")})


def run_runner(peer: Peer, job: Job, engine: str) -> Sample:
    """runner with ``engine: fast`` or ``engine: aiohttp``; a refused or crashing engine is 'unavailable'."""
    scenario = job.workdir / f"runner-{engine}.yaml"
    text = RUNNER_SCENARIO.format(
        engine=engine, concurrency=job.concurrency, slug=job.path.replace("/", "-"),
        base_url=job.base_url, path=job.path, seconds=f"{job.duration_s:g}")
    if job.runner_defaults:
        text += f"defaults: {json.dumps(job.runner_defaults)}\n"  # JSON is YAML; paths stay quoted
    scenario.write_text(text)
    result, measured = run_runner_file(scenario, job.base_url, job.timeout_s, f"engine {engine}")
    if result["engine"]["name"] != engine:
        raise Unavailable(f"asked for engine {engine}, runner used {result['engine']['name']} "
                          f"({result['engine'].get('reason') or 'no reason given'})")
    return runner_sample(result, measured)


#: Client name -> (peer it needs, how to run it). Order is the table's order; wrk first (the ratio base).
CLIENTS = {
    "wrk": ("wrk", run_wrk),
    "hey": ("hey", run_hey),
    "locust": ("locust", run_locust),
    "seed-style": ("seed-style", run_seed_style),
    "runner-fast": ("runner", lambda peer, job: run_runner(peer, job, "fast")),
    "runner-aiohttp": ("runner", lambda peer, job: run_runner(peer, job, "aiohttp")),
}
