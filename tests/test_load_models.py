"""Open and closed models, ramps, saturation, time series and multi-process merging.

Every run goes to a real loopback server; the expected values are derived in
the tests from the arrival formula, not copied from a previous run.
"""

import asyncio
import math
import time
from collections import Counter

import orjson
import pytest
from aiohttp import web

from runner.cli import main
from runner.compile import compile_scenario
from runner.executor import RunControl
from runner.launch import _run_processes
from runner.loader import load_scenario
from runner.pacing import ArrivalTimeline
from runner.result import build_result

from .conftest import ThreadedServer, write_scenario


def run(tmp_path, text: str, *extra: str) -> dict:
    scenario = write_scenario(tmp_path, text)
    out = tmp_path / "result.json"
    code = main(["run", str(scenario), "--quiet", "--out", f"json={out}", *extra])
    assert code == 0
    return orjson.loads(out.read_bytes())


def assert_series_sums_to_totals(stage: dict) -> None:
    series = stage["timeseries"]
    for key in ("ok", "failed", "dropped"):
        assert sum(b[key] for b in series) == stage[key], key
    assert sum(b["sent"] for b in series) == stage["requests"]
    assert series[-1]["in_flight"] == 0


def test_open_model_constant_rate_is_accurate(tmp_path, builtin_target):
    builtin_target.reset()
    data = run(tmp_path, f"""\
version: 1
name: open-2000
target: {builtin_target.url}
flow: [{{path: "/o/{{seq}}"}}]
stages: [{{name: open, rate: 2000/s, duration: 10s, max_in_flight: 500}}]
""")
    stage = data["stages"][0]
    assert stage["model"] == "open"
    assert stage["requests"] == pytest.approx(20_000, rel=0.01)
    assert stage["rate"]["achieved"] == pytest.approx(2000, rel=0.01)
    assert stage["rate"]["scheduled"] == 20_000  # the timeline asked for exactly R * D arrivals
    assert stage["dropped"] == 0 and stage["rate"]["met"]
    assert builtin_target.stats() == stage["requests"]
    assert_series_sums_to_totals(stage)
    assert data["generator"]["verdict"] == "ok"


def test_ramping_rate_follows_its_line(tmp_path, builtin_target):
    start, end, duration = 200.0, 1000.0, 5.0
    data = run(tmp_path, f"""\
version: 1
name: ramp
target: {builtin_target.url}
flow: [{{path: /r}}]
stages: [{{name: ramp, rate: {{from: {start:g}/s, to: {end:g}/s}}, duration: {duration:g}s}}]
""")
    stage = data["stages"][0]
    timeline = ArrivalTimeline(start, end, duration)
    assert stage["rate"]["scheduled"] == timeline.total() == 3000  # 200*5 + 800*5/2
    for second, bucket in enumerate(stage["timeseries"][: int(duration)]):
        expected = timeline.expected_by(second + 1) - timeline.expected_by(second)
        assert bucket["sent"] == pytest.approx(expected, rel=0.05), (second, bucket, expected)
    assert_series_sums_to_totals(stage)


def stalling_app(stall_at_s: float, stall_s: float) -> web.Application:
    """Answers at once, except that it freezes for ``stall_s`` once, ``stall_at_s`` after its first request."""
    state = {"first": None, "until": None}

    async def handle(request):
        now = time.monotonic()
        if state["first"] is None:
            state["first"] = now
        if state["until"] is None and now - state["first"] >= stall_at_s:
            state["until"] = now + stall_s
        if state["until"] is not None and now < state["until"]:
            await asyncio.sleep(state["until"] - now)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_open_model_shows_a_stall_that_the_closed_model_hides(tmp_path):
    rate, seconds, stall_at, stall = 100, 6, 2.0, 1.0
    # Analytic latencies: arrival i is due at i/rate; those due during the stall wait for its end.
    expected = [max(0.0, stall_at + stall - i / rate) if stall_at <= i / rate < stall_at + stall else 0.0
                for i in range(rate * seconds)]
    analytic_p99_ms = nearest_rank(expected, 0.99) * 1000  # 0.94 s: the 94th of 100 stalled arrivals
    with ThreadedServer(stalling_app(stall_at, stall)) as server:
        open_run = run(tmp_path, f"""\
version: 1
name: stall-open
target: {server.url}
flow: [{{path: /}}]
stages: [{{rate: {rate}/s, duration: {seconds}s, max_in_flight: 300}}]
""")
    stage = open_run["stages"][0]
    assert stage["requests"] == rate * seconds and stage["dropped"] == 0
    assert stage["latency_ms"]["p99"] == pytest.approx(analytic_p99_ms, rel=0.05)
    assert stage["latency_ms"]["max"] == pytest.approx(1000, rel=0.05)
    assert stage["latency_ms"]["p50"] < 50

    with ThreadedServer(stalling_app(stall_at, stall)) as server:
        closed_run = run(tmp_path, f"""\
version: 1
name: stall-closed
target: {server.url}
flow: [{{path: /}}]
stages: [{{concurrency: 1, duration: {seconds}s}}]
""")
    closed = closed_run["stages"][0]
    # one worker waits out the stall with a single request: the stall barely touches the percentiles
    assert closed["requests"] > rate * seconds
    assert closed["latency_ms"]["max"] == pytest.approx(1000, rel=0.1)
    assert closed["latency_ms"]["p99"] < analytic_p99_ms / 10


def test_asking_for_more_than_possible_is_reported_as_saturated(tmp_path, builtin_target):
    data = run(tmp_path, f"""\
version: 1
name: too-much
target: {builtin_target.url}
flow: [{{path: "/?delay=0.05"}}]
stages: [{{rate: 5000/s, duration: 2s, max_in_flight: 20}}]
""")
    stage = data["stages"][0]
    assert stage["dropped"] > 0
    assert stage["rate"]["scheduled"] == stage["requests"] + stage["dropped"] == 10_000
    assert not stage["rate"]["met"]
    assert data["generator"]["verdict"] == "saturated"
    assert any("dropped" in reason for reason in data["generator"]["reasons"])
    assert_series_sums_to_totals(stage)


def test_closed_concurrency_ramp(tmp_path, builtin_target):
    data = run(tmp_path, f"""\
version: 1
name: closed-ramp
target: {builtin_target.url}
flow: [{{path: "/?delay=0.01"}}]
interval: 500ms
stages: [{{concurrency: {{from: 1, to: 20}}, duration: 3s}}]
""")
    stage = data["stages"][0]
    series = stage["timeseries"]
    # ~10 ms per request: throughput grows with the worker count
    assert series[-2]["rps"] > 5 * series[0]["rps"]
    assert 2.9 < stage["duration_s"] < 3.5
    assert_series_sums_to_totals(stage)


def added_buckets(histograms: list[dict]) -> dict[str, int]:
    """Bucket counts of several encoded histograms added by hand (not with Histogram.merge)."""
    total: Counter = Counter()
    for histogram in histograms:
        total.update(histogram["buckets"])
    return dict(total)


def test_two_processes_send_exact_totals_and_merge_histograms_exactly(tmp_path, counting_server):
    closed_requests, rate, seconds = 4001, 1000, 2
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: two-processes
target: {counting_server.url}
workers: 2
flow: [{{name: a, path: "/a/{{seq}}"}}, {{name: b, path: "/b/{{seq}}"}}]
stages:
  - {{name: closed, requests: {closed_requests}, concurrency: 7}}
  - {{name: open, rate: {rate}/s, duration: {seconds}s}}
""")
    plan = compile_scenario(load_scenario(scenario), scenario)
    reports = _run_processes(plan, counting_server.url, RunControl())
    assert len(reports) == 2
    result = build_result(plan, counting_server.url, reports, RunControl()).to_dict()
    closed, opened = result["stages"]

    # The server's own counts: every sequence number of each stage arrived exactly once,
    # so the two processes' shares were disjoint and complete.
    assert closed["requests"] == closed_requests
    assert opened["rate"]["scheduled"] == rate * seconds and opened["dropped"] == 0
    # an arrival runs one iteration of the flow: both of its requests
    assert opened["requests"] == 2 * rate * seconds and opened["by_flow"][0]["iterations"] == rate * seconds
    seen = Counter(int(path.split("/")[2]) for path, n in counting_server.counter.items()
                   if path != "__all__" for _ in range(n))
    assert seen == Counter(range(closed_requests)) + Counter(range(2 * rate * seconds))
    by_name = {block["name"]: block["requests"] for block in result["by_request"]}
    assert by_name == {name: sum(n for path, n in counting_server.counter.items() if path.startswith(f"/{name}/"))
                       for name in ("a", "b")}

    # Histograms: the merged buckets are the per-process buckets added by hand.
    for index, stage in enumerate((closed, opened)):
        parts = [part.latency.to_dict() for report in reports for part in report.outcomes[index].stats]
        assert sum(part["total"] for part in parts) == stage["requests"]
        merged = stage["latency_histogram"]
        assert merged["buckets"] == added_buckets(parts)
        assert merged["total"] == stage["requests"] and merged["sum"] == sum(part["sum"] for part in parts)
        assert merged["max"] == max(part["max"] for part in parts)
        assert merged["min"] == min(part["min"] for part in parts if part["total"])
    whole_run = result["totals"]["latency_histogram"]
    assert whole_run["buckets"] == added_buckets([closed["latency_histogram"], opened["latency_histogram"]])
    assert whole_run["total"] == counting_server.counter["__all__"]
    assert result["generator"]["processes"] == 2


def test_workers_setting_through_the_cli(tmp_path, builtin_target):
    data = run(tmp_path, f"""\
version: 1
name: cli-workers
target: {builtin_target.url}
flow: [{{path: /}}]
stages: [{{requests: 3001, concurrency: 10}}]
""", "--set", "workers=2")
    assert data["totals"]["requests"] == 3001
    assert data["generator"]["processes"] == 2 and len(data["generator"]["per_process"]) == 2
    assert_series_sums_to_totals(data["stages"][0])


def test_every_stage_starts_together_in_every_worker_process(tmp_path):
    """One process ends the first stage 0.6 s before the other; it waits, so the open timelines still line up."""
    from runner.compile import compile_scenario
    from runner.launch import execute
    from runner.loader import load_scenario

    from .conftest import STAGES_MEET, assert_stages_met, slow_first_stage_server, write_scenario

    with slow_first_stage_server() as (server, arrivals):
        path = write_scenario(tmp_path, STAGES_MEET.format(target=server.url, workers=2))
        result = execute(compile_scenario(load_scenario(path), path)).to_dict()
    assert_stages_met(result, arrivals)
