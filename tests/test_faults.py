"""Faults, through the real Executor on both engines, against real loopback servers.

Every fault kind of the built-in target (``/fault/<kind>``, see
:mod:`runner.target.faults`) plus the ones only a raw socket can commit (a
dead port, a listener whose backlog is full) is run on the fast and the
aiohttp engine, and each test asserts the error class, its count,
``requests == ok + failed`` and, where the server can tell, that it saw
exactly the requests the client counted. What each fault is reported as:

=====================  =================================================
fault                  error class (both engines)
=====================  =================================================
dead port              connect_refused
full listen backlog    connect_timeout (connect_timeout_s, or the total
                       timeout while still connecting)
reset                  reset
hang                   read_timeout, after the total timeout
slow-headers           read_timeout, after read_timeout_s of silence
slow-body              read_timeout, after the total timeout
malformed-status       protocol_error
malformed-headers      protocol_error
short-body             closed_early (the framing was valid; the peer left)
bad-chunked            protocol_error (the framing itself is invalid)
huge + a size cap      body_too_large
status-burst           no error: HTTP 5xx responses, counted as failed
close                  no error: every response arrives
=====================  =================================================
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import uvloop

from runner.compile import compile_scenario
from runner.engines import select_engine
from runner.loader import load_scenario
from runner.metrics.recorder import RequestStats
from runner.target.process import BuiltinTarget
from runner.target.server import TargetConfig, make_html_body

from .conftest import run_plan
from .test_engines_differential import RawServer, answer_each

ENGINES = ("fast", "aiohttp")
REPO = Path(__file__).resolve().parent.parent

SCENARIO = """\
version: 1
name: faults
target: {target}
engine: {engine}
defaults:
  timeout: {timeout}
{defaults}flow:
  - method: {method}
    path: "{path}"
stages:
  - requests: {requests}
    concurrency: {concurrency}
"""


@pytest.fixture(scope="module")
def target():
    with BuiltinTarget(TargetConfig(seed=11)) as running:
        yield running


def build_plan(tmp_path: Path, target: str, engine: str, path: str, *, requests: int = 20, concurrency: int = 4,
               timeout: float = 5.0, method: str = "GET", defaults: dict | None = None, **request_fields):
    """A plan from a real YAML file; RequestPlan fields the YAML does not expose are replaced."""
    lines = "".join(f"  {key}: {value}\n" for key, value in (defaults or {}).items())
    file = tmp_path / f"{engine}.yaml"
    file.write_text(SCENARIO.format(target=target, engine=engine, timeout=timeout, defaults=lines, method=method,
                                    path=path, requests=requests, concurrency=concurrency))
    plan = compile_scenario(load_scenario(file), file)
    if request_fields:
        flow = tuple(dataclasses.replace(request, **request_fields) for request in plan.flow)
        plan = dataclasses.replace(plan, flow=flow)
    return plan


def execute(plan, url: str) -> tuple[RequestStats, float]:
    """Run ``plan`` through the Executor; return the totals and the stage's duration."""
    assert select_engine(plan, url)[0].name == plan.engine
    return run_plan(plan, url)


def run_fault(tmp_path, target: BuiltinTarget, engine: str, path: str, **options) -> tuple[RequestStats, float]:
    """Run on the built-in target; the server must have seen exactly the requests the client counted."""
    target.reset()
    plan = build_plan(tmp_path, target.url, engine, path, **options)
    stats, duration = execute(plan, target.url)
    assert target.stats() == stats.requests
    return stats, duration


def errors_only(stats: RequestStats) -> tuple:
    return stats.requests, stats.ok, stats.failed, stats.bytes, dict(stats.status_codes), dict(stats.errors)


# -- no connection ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_dead_target_is_connect_refused(tmp_path, engine):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    stats, _ = execute(build_plan(tmp_path, url, engine, "/", requests=40, concurrency=4), url)
    assert errors_only(stats) == (40, 0, 40, 0, {}, {"connect_refused": 40})


@pytest.fixture
def full_backlog():
    """A port whose listen queue is full: new connections are neither accepted nor refused.

    Linux drops a SYN when the accept queue is full, so the client's connect
    just waits. Where the kernel answers with RST instead
    (tcp_abort_on_overflow), the test is skipped: it then is connect_refused.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.05)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        outcome = "connected"
    except TimeoutError:
        outcome = None
    except OSError as exc:
        outcome = repr(exc)
    finally:
        probe.close()
    try:
        if outcome is not None:
            pytest.skip(f"a full listen backlog does not stall connects here ({outcome})")
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_connect_timeout_on_a_full_backlog(tmp_path, engine, full_backlog):
    plan = build_plan(tmp_path, full_backlog, engine, "/", requests=4, concurrency=2, timeout=5.0,
                      defaults={"connect_timeout": "300ms"})
    stats, duration = execute(plan, full_backlog)
    assert errors_only(stats) == (4, 0, 4, 0, {}, {"connect_timeout": 4})
    assert 0.29e6 <= stats.latency.min_us <= stats.latency.max_us < 0.6e6
    assert duration < 1.5


@pytest.mark.parametrize("engine", ENGINES)
def test_total_timeout_while_connecting_is_connect_timeout(tmp_path, engine, full_backlog):
    # The total timeout (300 ms) strikes before the connect timeout (10 s): still connect_timeout.
    plan = build_plan(tmp_path, full_backlog, engine, "/", requests=4, concurrency=2, timeout=0.3)
    stats, _ = execute(plan, full_backlog)
    assert errors_only(stats) == (4, 0, 4, 0, {}, {"connect_timeout": 4})
    assert stats.latency.max_us < 0.6e6


# -- the built-in target's faults ------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_reset(tmp_path, target, engine):
    stats, _ = run_fault(tmp_path, target, engine, "/fault/reset/{seq}", method="POST", requests=40, concurrency=4)
    assert errors_only(stats) == (40, 0, 40, 0, {}, {"reset": 40})


@pytest.mark.parametrize("engine", ENGINES)
def test_reset_of_an_idempotent_request(tmp_path, target, engine):
    # The client's counts agree; what the server sees does not: aiohttp (3.14)
    # retries an idempotent request once after any reset or disconnect, even on
    # a new connection, where the fast engine retries only a request that found
    # a reused keep-alive connection closed (RFC 9112 9.3.1). Every connection
    # here is new, so the fast engine sends each GET once.
    target.reset()
    plan = build_plan(tmp_path, target.url, engine, "/fault/reset/{seq}", requests=40, concurrency=4)
    stats, _ = execute(plan, target.url)
    assert errors_only(stats) == (40, 0, 40, 0, {}, {"reset": 40})
    assert target.stats() == {"fast": 40, "aiohttp": 80}[engine]


@pytest.mark.parametrize("engine", ENGINES)
def test_hung_server_costs_at_most_the_timeout(tmp_path, target, engine):
    started = time.perf_counter()
    stats, duration = run_fault(tmp_path, target, engine, "/fault/hang", requests=8, concurrency=8, timeout=0.4)
    wall = time.perf_counter() - started
    assert errors_only(stats) == (8, 0, 8, 0, {}, {"read_timeout": 8})
    assert 0.39e6 <= stats.latency.min_us <= stats.latency.max_us < 0.7e6
    assert duration < 0.8
    assert wall < 2.0  # plan building and engine start-up included


@pytest.mark.parametrize("engine", ENGINES)
def test_read_timeout_on_slow_headers(tmp_path, target, engine):
    # The status line comes at once, then one byte every 0.6 s: the 200 ms read
    # timeout strikes long before the 5 s total one.
    stats, duration = run_fault(tmp_path, target, engine, "/fault/slow-headers?interval=0.6", requests=6,
                                concurrency=3, timeout=5.0, defaults={"read_timeout": "200ms"})
    assert errors_only(stats) == (6, 0, 6, 0, {}, {"read_timeout": 6})
    assert 0.19e6 <= stats.latency.min_us <= stats.latency.max_us < 0.5e6
    assert duration < 1.5


@pytest.mark.parametrize("engine", ENGINES)
def test_slow_headers_within_the_read_timeout_complete(tmp_path, target, engine):
    # ~100 header bytes, one per 5 ms: never silent for the 300 ms read timeout.
    stats, _ = run_fault(tmp_path, target, engine, "/fault/slow-headers?interval=0.005", requests=2,
                         concurrency=2, timeout=5.0, defaults={"read_timeout": "300ms"})
    assert errors_only(stats) == (2, 2, 0, 4, {200: 2}, {})


@pytest.mark.parametrize("engine", ENGINES)
def test_total_timeout_on_slow_body(tmp_path, target, engine):
    # A byte every 0.1 s never leaves the connection silent for the 0.3 s read
    # timeout, but 100 bytes take 10 s: the 0.5 s total timeout ends it.
    stats, duration = run_fault(tmp_path, target, engine, "/fault/slow-body?interval=0.1&size=100", requests=4,
                                concurrency=4, timeout=0.5, defaults={"read_timeout": "300ms"})
    assert errors_only(stats) == (4, 0, 4, 0, {}, {"read_timeout": 4})
    assert 0.49e6 <= stats.latency.min_us <= stats.latency.max_us < 0.8e6
    assert duration < 1.2


@pytest.mark.parametrize("engine", ENGINES)
def test_body_too_large(tmp_path, target, engine):
    stats, _ = run_fault(tmp_path, target, engine, "/fault/huge?size=8388608", requests=8, concurrency=2,
                         defaults={"max_response_size": "1MiB"})
    assert errors_only(stats) == (8, 0, 8, 0, {}, {"body_too_large": 8})
    # At the cap exactly is not too large; the cap applies to chunked bodies too.
    stats, _ = run_fault(tmp_path, target, engine, "/x?size=1048576", requests=4, concurrency=2,
                         defaults={"max_response_size": "1MiB"})
    assert errors_only(stats) == (4, 4, 0, 4 * 1048576, {200: 4}, {})
    stats, _ = run_fault(tmp_path, target, engine, "/x?size=1048577&chunked=1", requests=4, concurrency=2,
                         defaults={"max_response_size": "1MiB"})
    assert errors_only(stats) == (4, 0, 4, 0, {}, {"body_too_large": 4})


@pytest.mark.parametrize("engine", ENGINES)
def test_5xx_burst_counts_as_failed_with_status_codes(tmp_path, target, engine):
    stats, _ = run_fault(tmp_path, target, engine, "/fault/status-burst?n=3&window=10", requests=100,
                         concurrency=4)
    assert errors_only(stats) == (100, 70, 30, 100 * 1024, {503: 30, 200: 70}, {})
    stats, _ = run_fault(tmp_path, target, engine, "/fault/status-burst?n=2&window=5&status=500", requests=12,
                         concurrency=3)
    assert stats.status_codes == {500: 6, 200: 6} and stats.failed == 6


def test_5xx_probability_is_seeded(tmp_path, target):
    codes = []
    for engine in ENGINES + ENGINES:
        stats, _ = run_fault(tmp_path, target, engine, "/fault/status-burst?p=0.25", requests=200, concurrency=4)
        assert stats.requests == 200 and set(stats.status_codes) <= {200, 503}
        codes.append(dict(stats.status_codes))
    # The server's seeded RNG restarts with every reset: the same answers whatever the engine.
    assert codes[0] == codes[1] == codes[2] == codes[3]
    assert 20 <= codes[0][503] <= 80


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["malformed-status", "malformed-headers", "bad-chunked"])
def test_broken_responses_are_protocol_errors(tmp_path, target, engine, kind):
    stats, _ = run_fault(tmp_path, target, engine, f"/fault/{kind}", requests=20, concurrency=4)
    assert errors_only(stats) == (20, 0, 20, 0, {}, {"protocol_error": 20})


@pytest.mark.parametrize("engine", ENGINES)
def test_short_body_is_closed_early(tmp_path, target, engine):
    stats, _ = run_fault(tmp_path, target, engine, "/fault/short-body?size=5000", requests=20, concurrency=4)
    assert errors_only(stats) == (20, 0, 20, 0, {}, {"closed_early": 20})


@pytest.mark.parametrize("engine", ENGINES)
def test_close_without_notice_loses_nothing(tmp_path, target, engine):
    # The next request may find the connection closed: it is retried on a new
    # one, and the server (which read nothing after closing) counts each once.
    stats, _ = run_fault(tmp_path, target, engine, "/fault/close", requests=60, concurrency=3)
    assert errors_only(stats) == (60, 60, 0, 60 * 1024, {200: 60}, {})


@pytest.mark.parametrize("engine", ENGINES)
def test_unknown_fault_is_a_400(tmp_path, target, engine):
    stats, _ = run_fault(tmp_path, target, engine, "/fault/melt", requests=4, concurrency=2)
    assert stats.status_codes == {400: 4} and stats.failed == 4


# -- a huge body is counted, not kept ----------------------------------------------------------

_HUGE_CHILD = textwrap.dedent("""
    import asyncio, json, resource, sys
    from pathlib import Path
    import uvloop
    from runner.compile import compile_scenario
    from runner.engines import select_engine
    from runner.executor import Executor
    from runner.loader import load_scenario
    from runner.metrics.recorder import RequestStats

    url, engine, folder = sys.argv[1:4]

    def run(path, requests):
        file = Path(folder) / f"{engine}-{requests}.yaml"
        file.write_text(f"version: 1\\nname: huge\\ntarget: {url}\\nengine: {engine}\\n"
                        f"flow:\\n  - path: {path}\\nstages:\\n  - requests: {requests}\\n    concurrency: 2\\n")
        plan = compile_scenario(load_scenario(file), file)
        engine_class, _ = select_engine(plan, url)
        async def main():
            instance = engine_class(plan, url)
            try:
                return await Executor(plan, instance).run()
            finally:
                await instance.aclose()
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            outcomes = runner.run(main())
        return RequestStats.merged([s for o in outcomes for s in o.stats])

    run("/fault/huge?size=1000000", 2)  # warm up: imports, loop, buffers
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = run("/fault/huge", 4)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"requests": stats.requests, "ok": stats.ok, "bytes": stats.bytes,
                      "errors": dict(stats.errors), "before_kib": before, "after_kib": after}))
""")


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for the server's peak RSS")
def test_huge_body_is_streamed_and_counted_without_memory_growth(tmp_path):
    huge = 64 * 1024 * 1024
    with BuiltinTarget() as target:
        server_pid = target._process.pid
        for engine in ENGINES:
            target.reset()
            server_before = _peak_rss_kib(server_pid)
            done = subprocess.run([sys.executable, "-c", _HUGE_CHILD, target.url, engine, str(tmp_path)],
                                  capture_output=True, text=True, timeout=60, cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
            assert done.returncode == 0, done.stderr
            result = json.loads(done.stdout.strip().splitlines()[-1])
            assert (result["requests"], result["ok"], result["bytes"], result["errors"]) == (4, 4, 4 * huge, {})
            assert target.stats() == 2 + 4
            client_growth_mb = (result["after_kib"] - result["before_kib"]) / 1024
            server_growth_mb = (_peak_rss_kib(server_pid) - server_before) / 1024
            assert client_growth_mb < 20, f"{engine}: client peak RSS grew {client_growth_mb:.1f} MB"
            assert server_growth_mb < 20, f"server peak RSS grew {server_growth_mb:.1f} MB"


# -- captures --------------------------------------------------------------------------------


def send_once(plan, url: str, *, requests: int = 1) -> list:
    """Send the plan's first request ``requests`` times on one channel; return [(result, captured)]."""
    engine_class, _ = select_engine(plan, url)

    async def main():
        engine = engine_class(plan, url)
        channel = await engine.open_channel(0)
        results = []
        try:
            for seq in range(requests):
                try:
                    result = await channel.send(plan.flow[0], seq, 0)
                except Exception as exc:  # noqa: BLE001 - the class is what is compared
                    result = getattr(exc, "error_class", repr(exc))
                results.append((result, channel.captured))
        finally:
            await channel.aclose()
            await engine.aclose()
        return results

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


@pytest.mark.parametrize("engine", ENGINES)
def test_captures_headers_and_a_truncated_body_prefix(tmp_path, target, engine):
    plan = build_plan(tmp_path, target.url, engine, "/cap?size=5000", capture_headers=True, capture_body=100)
    [(result, (headers, body))] = send_once(plan, target.url)
    assert result == (200, 5000)  # the whole body is still counted
    assert body == make_html_body(5000)[:100]
    assert headers["content-length"] == "5000"
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["server"] == "runner-target" and "date" in headers
    assert all(name == name.lower() for name in headers)

    plan = build_plan(tmp_path, target.url, engine, "/cap?size=3000&chunked=1", capture_body=1 << 20)
    [(result, (headers, body))] = send_once(plan, target.url)
    assert result == (200, 3000) and headers == {} and body == make_html_body(3000)


@pytest.mark.parametrize("engine", ENGINES)
def test_capture_of_repeated_headers_and_failures(tmp_path, engine):
    response = (b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Mixed-Case: Yes \r\nset-cookie: b=2\r\n"
                b"Content-Length: 11\r\n\r\nhello world")
    with RawServer(answer_each(response)) as server:
        plan = build_plan(tmp_path, server.url, engine, "/", capture_headers=True, capture_body=5)
        results = send_once(plan, server.url, requests=2)
    for result, (headers, body) in results:
        assert result == (200, 11) and body == b"hello"
        assert headers == {"set-cookie": "a=1\nb=2", "x-mixed-case": "Yes", "content-length": "11"}

    # A failed send leaves nothing captured; a plan without captures never captures.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    plan = build_plan(tmp_path, dead, engine, "/", capture_headers=True, capture_body=5)
    assert send_once(plan, dead) == [("connect_refused", None)]


@pytest.mark.parametrize("engine", ENGINES)
def test_no_capture_unless_asked(tmp_path, target, engine):
    plan = build_plan(tmp_path, target.url, engine, "/plain")
    assert send_once(plan, target.url, requests=2) == [((200, 1024), None)] * 2
    plan = build_plan(tmp_path, target.url, engine, "/capped", defaults={"max_response_size": "2KiB"})
    assert send_once(plan, target.url) == [((200, 1024), None)]


@pytest.mark.parametrize("engine", ENGINES)
def test_head_request_captures_headers(tmp_path, target, engine):
    plan = build_plan(tmp_path, target.url, engine, "/h?size=777", method="HEAD", capture_headers=True,
                      capture_body=10)
    [(result, (headers, body))] = send_once(plan, target.url)
    assert result == (200, 0) and body == b"" and headers["content-length"] == "777"


# -- the server with faults in flight ---------------------------------------------------------


def test_server_stops_cleanly_with_faults_in_flight():
    with BuiltinTarget() as server:
        clients = []
        for path in ("/fault/hang", "/fault/slow-body?size=1000", "/fault/slow-headers", "/fault/huge"):
            client = socket.create_connection((server.host, server.port), timeout=5)
            client.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            clients.append(client)  # never read: the huge body fills the buffers and waits
        deadline = time.monotonic() + 5
        while server.stats() < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.stats() == 4
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 3
        assert server.stderr_text() == ""
        for client in clients:
            client.close()


# -- a target with a fault mix ---------------------------------------------------------------


def test_fault_mix_on_ordinary_paths(tmp_path):
    config = TargetConfig(seed=5, faults=(("status-burst", 0.2), ("malformed-status", 0.1)))
    with BuiltinTarget(config) as mixed:
        results = []
        for engine in ENGINES:
            mixed.reset()
            plan = build_plan(tmp_path, mixed.url, engine, "/page/{seq}", requests=300, concurrency=1)
            stats, _ = execute(plan, mixed.url)
            assert mixed.stats() == 300
            results.append(errors_only(stats))
    # One worker: the same arrival order, so the same seeded draws on both engines.
    assert results[0] == results[1]
    requests, ok, failed, _, codes, errors = results[0]
    assert requests == 300 and set(errors) == {"protocol_error"} and set(codes) == {200, 503}
    assert 30 <= codes[503] <= 90 and 10 <= errors["protocol_error"] <= 50


def test_fault_mix_is_validated():
    with pytest.raises(ValueError, match="unknown fault 'melt'"):
        TargetConfig(faults=(("melt", 0.1),))
    with pytest.raises(ValueError, match="add up to 1.5"):
        TargetConfig(faults=(("reset", 0.5), ("hang", 1.0)))
