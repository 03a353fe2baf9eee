"""Checks and thresholds make a scenario a CI gate: exit 0 or 1 with a readable verdict."""

import time

import orjson
import pytest
from aiohttp import web

from runner.cli import main

from .conftest import ThreadedServer, write_scenario


def mixed_app() -> web.Application:
    """/mix/N answers by N % 4: 500; JSON {"ok": true, "id": N}; text with X-Kind; 404."""

    async def handle(request):
        n = int(request.match_info["n"])
        kind = n % 4
        if kind == 0:
            return web.Response(status=500, text="boom")
        if kind == 1:
            return web.json_response({"ok": True, "id": n})
        if kind == 2:
            return web.Response(text="hello world", headers={"X-Kind": "text"})
        return web.Response(status=404, text="nope")

    app = web.Application()
    app.router.add_get("/mix/{n}", handle)
    return app


def run(tmp_path, text, *extra):
    scenario = write_scenario(tmp_path, text)
    out = tmp_path / "result.json"
    code = main(["run", str(scenario), "--out", f"json={out}", *extra])
    return code, orjson.loads(out.read_bytes())


@pytest.mark.parametrize("engine", ["fast", "aiohttp"])
def test_each_check_kind_is_counted(tmp_path, engine):
    with ThreadedServer(mixed_app()) as server:
        code, data = run(tmp_path, f"""\
version: 1
name: checks
target: {server.url}
engine: {engine}
flow:
  - name: mix
    path: /mix/{{seq}}
    checks:
      status: [200, 404]
      headers: {{x-kind: {{equals: text}}}}
      body: {{contains: hello}}
      json: {{"$.ok": {{equals: true}}}}
      max_size: 64
      max_duration: 5s
stages: [{{requests: 400, concurrency: 8}}]
""", "--quiet")
    assert code == 0  # no thresholds: checks alone do not fail the run
    checks = {row["name"]: (row["passes"], row["fails"]) for row in data["checks"]}
    assert checks["status in [200, 404]"] == (300, 100)          # kinds 1, 2, 3 pass; 500s fail
    assert checks["header x-kind equals 'text'"] == (100, 300)   # only kind 2 sets it
    assert checks["body contains 'hello'"] == (100, 300)
    assert checks["json $.ok equals True"] == (100, 300)         # only kind 1 is JSON with ok: true
    assert checks["size <= 64 B"] == (400, 0)
    assert checks["duration <= 5000 ms"] == (400, 0)
    totals = data["totals"]
    assert totals["requests"] == 400 and totals["ok"] == 0 and totals["failed"] == 400  # no response passes all
    assert totals["status_codes"] == {"200": 200, "404": 100, "500": 100}


def test_a_status_check_replaces_the_default_rule(tmp_path, builtin_target):
    code, data = run(tmp_path, f"""\
version: 1
name: expected-404
target: {builtin_target.url}
flow: [{{path: "/?status=404", checks: {{status: 404}}}}]
stages: [{{requests: 50, concurrency: 5}}]
thresholds: [error_rate == 0%]
""", "--quiet")
    assert code == 0
    assert data["totals"]["ok"] == 50 and data["passed"]


PASSING = """\
version: 1
name: gate
target: {url}
flow: [{{name: page, path: "/page/{{seq}}", checks: {{status: 2xx}}}}]
stages: [{{name: steady, requests: 500, concurrency: 5}}]
thresholds:
  - p95 < 2s
  - error_rate < 1%
  - request:page check_rate >= 99%
  - stage:steady requests == 500
"""


def test_passing_and_failing_gates_exit_0_and_1_with_a_verdict_table(tmp_path, builtin_target, capsys):
    code, data = run(tmp_path, PASSING.format(url=builtin_target.url))
    out = capsys.readouterr().out
    assert code == 0 and data["passed"]
    assert [t["passed"] for t in data["thresholds"]] == [True, True, True, True]
    assert "PASS  p95 < 2s" in out and "result: PASS" in out
    assert data["thresholds"][0]["source"].endswith("scenario.yaml:7")

    failing = PASSING.format(url=builtin_target.url).replace("p95 < 2s", "p95 < 1us").replace(
        "/page/{seq}", "/page/{seq}?status=503")
    code, data = run(tmp_path, failing)
    out = capsys.readouterr().out
    assert code == 1 and not data["passed"]
    outcome = {t["expression"]: t for t in data["thresholds"]}
    assert not outcome["p95 < 1us"]["passed"] and outcome["p95 < 1us"]["actual"] > 0.001
    assert outcome["error_rate < 1%"]["actual"] == 1.0
    assert outcome["request:page check_rate >= 99%"]["actual"] == 0.0
    assert outcome["stage:steady requests == 500"]["passed"]
    assert "FAIL  p95 < 1us" in out and "result: FAIL" in out


def test_a_threshold_without_data_fails(tmp_path, builtin_target):
    code, data = run(tmp_path, f"""\
version: 1
name: no-data
target: {builtin_target.url}
flow: [{{path: /}}]
stages: [{{requests: 10, concurrency: 1}}]
thresholds: [check_rate > 99%]
""", "--quiet")
    assert code == 1
    assert data["thresholds"][0]["reason"].startswith("no data")


def test_unknown_threshold_target_is_a_load_error(tmp_path, capsys):
    path = write_scenario(tmp_path, """\
version: 1
name: typo
target: builtin
flow: [{name: page, path: /}]
stages: [{name: steady, requests: 10, concurrency: 1}]
thresholds:
  - p95 < 1s
  - stage:stedy p95 < 1s
  - request:pgae p95 < 1s
  - p96 < 1s
""")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:8:" in err and "no stage named 'stedy' (did you mean 'steady'?)" in err
    assert f"{path}:9:" in err and "no request named 'pgae'" in err
    assert f"{path}:10:" in err and "unknown metric 'p96'" in err


def slow_after_app(after_s: float, delay_s: float) -> web.Application:
    state = {"first": None}

    async def handle(request):
        now = time.monotonic()
        state["first"] = state["first"] or now
        if now - state["first"] >= after_s:
            await asyncio_sleep(delay_s)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


async def asyncio_sleep(seconds):
    import asyncio
    await asyncio.sleep(seconds)


def test_windowed_threshold_fails_only_when_breached_long_enough(tmp_path):
    with ThreadedServer(slow_after_app(1.0, 0.05)) as server:
        code, data = run(tmp_path, f"""\
version: 1
name: window
target: {server.url}
interval: 250ms
flow: [{{path: /}}]
stages: [{{rate: 100/s, duration: 3s}}]
thresholds:
  - p99 < 20ms for 1s
  - p99 < 20ms for 5s
""", "--quiet")
    first, second = data["thresholds"]
    assert not first["passed"] and first["reason"].startswith("breached for 1s from t=1.")
    assert first["actual"] >= 50
    assert second["passed"]  # breached for about 2 s only
    assert code == 1


def test_abort_on_fail_stops_early_and_still_writes_the_report(tmp_path, builtin_target):
    started = time.monotonic()
    code, data = run(tmp_path, f"""\
version: 1
name: abort
target: {builtin_target.url}
flow: [{{path: "/?status=500"}}]
stages: [{{name: long, rate: 50/s, duration: 30s}}]
thresholds: [error_rate < 10%]
abort_on_fail: {{delay: 1}}
""", "--quiet")
    assert time.monotonic() - started < 10
    assert code == 1
    assert data["aborted"]["reason"].startswith("threshold failed: error_rate < 10%")
    assert 1.0 <= data["aborted"]["at_s"] < 5
    assert not data["passed"] and not data["interrupted"]
    assert 0 < data["totals"]["requests"] < 500


# --- no data fails for every metric, and rate windows judge a partial interval on its real length ---------------


def test_count_and_rate_thresholds_fail_on_a_request_that_never_ran(tmp_path, builtin_target):
    """One request per flow pass: 'never' gets nothing, so zero rps or zero drops prove nothing about it."""
    code, data = run(tmp_path, f"""\
version: 1
name: never-ran
target: {builtin_target.url}
flow: [{{name: first, path: /}}, {{name: never, path: /}}]
stages: [{{requests: 1, concurrency: 1}}]
thresholds:
  - request:never dropped == 0
  - request:never rps < 5000
  - request:never requests < 5
  - request:first dropped == 0
""", "--quiet")
    assert code == 1
    *never, first = data["thresholds"]
    assert [t["passed"] for t in never] == [False, False, False]
    assert all(t["actual"] is None and t["reason"].startswith("no data") for t in never)
    assert first["passed"] and first["actual"] == 0  # a request that ran: zero drops is a real measurement


def test_a_run_stopped_before_its_first_request_fails_every_threshold_with_no_data(tmp_path, builtin_target):
    """A stop that lands before anything was sent leaves a result with nothing in it; no rule may pass on it."""
    from runner.compile import compile_scenario
    from runner.executor import RunControl
    from runner.launch import execute
    from runner.loader import load_scenario

    scenario = write_scenario(tmp_path, f"""\
version: 1
name: stopped
target: {builtin_target.url}
flow: [{{path: /}}]
stages: [{{name: steady, rate: 100/s, duration: 1s}}]
thresholds: [dropped == 0, rps < 5000, requests < 5, "rps < 5000 for 1s", p95 < 1s]
""")
    control = RunControl()
    control.stopping = True
    data = execute(compile_scenario(load_scenario(scenario), scenario), control=control).to_dict()
    assert data["totals"]["requests"] == 0 and data["stages"] == []
    assert [t["passed"] for t in data["thresholds"]] == [False] * 5
    assert {t["reason"] for t in data["thresholds"]} == {"no data: no request completed and no arrival was scheduled"}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stages_partial_last_interval_is_judged_on_the_time_it_covered(tmp_path, builtin_target, workers):
    """2.5 s at 200/s with 1 s intervals: the last interval holds ~100 requests over ~0.5 s, i.e. 200/s, not 100/s.

    With two processes the partial buckets of both are merged and must keep the time they covered.
    """
    code, data = run(tmp_path, f"""\
version: 1
name: partial
target: {builtin_target.url}
interval: 1s
workers: {workers}
flow: [{{path: /}}]
stages: [{{name: steady, rate: 200/s, duration: 2500ms}}]
thresholds: ["rps > 150 for 1s", "stage:steady rps > 150 for 1s"]
""", "--quiet")
    assert [t["passed"] for t in data["thresholds"]] == [True, True], data["thresholds"]
    assert code == 0
    *full, last = data["stages"][0]["timeseries"]
    assert [bucket["span_s"] for bucket in full] == [1.0, 1.0]
    assert 0.4 < last["span_s"] < 0.9 and last["ok"] > 50
    assert last["rps"] == pytest.approx(last["ok"] / last["span_s"], rel=1e-3)


# --- flow:NAME thresholds: iterations, their duration, and the flow's requests; skipped steps everywhere ---------

FLOW_GATE = """\
version: 1
name: flow-gate
target: builtin
flows:
  - name: browse
    weight: 3
    steps:
      - {{name: home, path: /}}
      - {{think: 50ms}}
      - {{name: page, path: "/page/{{seq}}"}}
  - name: broken                        # /items without a token: 401, the capture fails, 'second' is skipped
    steps:
      - {{name: first, path: /items, capture: {{token: {{json: $.token}}}}}}
      - {{name: second, path: "/page/{{token}}"}}
stages: [{{name: steady, concurrency: 4, duration: 1s}}]
thresholds:
{thresholds}"""


def flow_block(data: dict, name: str) -> dict:
    return next(block for block in data["by_flow"] if block["name"] == name)


def test_flow_thresholds_that_hold_pass_and_measure_the_flow_block(tmp_path):
    """Four users, three of them browse (think 50 ms between two pages), one loops on a failing capture."""
    rules = [
        "flow:browse iterations >= 5",
        "flow:browse iterations_failed == 0",
        "flow:browse iteration_error_rate == 0%",
        "flow:browse p50 >= 50ms",            # the iteration duration: think time included
        "flow:browse error_rate == 0",
        "flow:browse requests >= 10",
        "flow:browse iterations_per_s > 5/s",
        "flow:browse skipped == 0",
        "flow:broken iteration_error_rate == 100%",
        "flow:broken error_rate > 99%",
        "flow:broken skipped >= 1",
    ]
    code, data = run(tmp_path, FLOW_GATE.format(thresholds="".join(f"  - {r}\n" for r in rules)), "--quiet")
    assert [t["passed"] for t in data["thresholds"]] == [True] * len(rules), data["thresholds"]
    assert code == 0 and data["passed"]
    outcome = {t["expression"]: t for t in data["thresholds"]}
    browse, broken = flow_block(data, "browse"), flow_block(data, "broken")
    assert outcome["flow:browse iterations >= 5"]["actual"] == browse["iterations"]
    assert outcome["flow:browse requests >= 10"]["actual"] == browse["requests"]
    assert outcome["flow:browse iterations_per_s > 5/s"]["actual"] == browse["iterations_per_s"]
    assert outcome["flow:broken skipped >= 1"]["actual"] == broken["skipped"] == broken["iterations"]
    p50 = outcome["flow:browse p50 >= 50ms"]
    assert p50["actual"] == browse["iteration_duration_ms"]["p50"] and p50["unit"] == "ms"
    home = next(block for block in data["by_request"] if block["name"] == "home")
    assert home["latency_ms"]["p50"] < 50 <= p50["actual"]  # not a request latency
    assert p50["scope"] == "flow" and p50["target"] == "browse"
    assert p50["source"].endswith("scenario.yaml:20")


def test_flow_thresholds_that_are_broken_fail_with_the_measured_value(tmp_path, capsys):
    rules = [
        "flow:browse iterations_failed > 0",
        "flow:browse p95 < 50ms",
        "flow:broken iteration_error_rate < 50%",
        "flow:broken error_rate == 0",
        "flow:browse iterations < 2",
        "flow:browse p50 >= 50ms",            # the one that holds
    ]
    code, data = run(tmp_path, FLOW_GATE.format(thresholds="".join(f"  - {r}\n" for r in rules)))
    out = capsys.readouterr().out
    assert code == 1 and not data["passed"]
    assert [t["passed"] for t in data["thresholds"]] == [False] * 5 + [True]
    outcome = {t["expression"]: t for t in data["thresholds"]}
    assert outcome["flow:browse iterations_failed > 0"]["actual"] == 0
    assert outcome["flow:browse p95 < 50ms"]["actual"] >= 50
    assert outcome["flow:broken iteration_error_rate < 50%"]["actual"] == 1.0
    assert outcome["flow:broken error_rate == 0"]["actual"] == 1.0
    assert all(t["reason"] is None for t in data["thresholds"])  # measured, not "no data"
    assert "FAIL  flow:browse p95 < 50ms" in out and "result: FAIL" in out


def test_a_plain_flow_is_the_flow_named_default(tmp_path, builtin_target):
    code, data = run(tmp_path, f"""\
version: 1
name: default-flow
target: {builtin_target.url}
flow: [{{path: /}}]
stages: [{{requests: 50, concurrency: 2}}]
thresholds: [flow:default iterations == 50, flow:default requests == 50, flow:default p99 < 10s]
""", "--quiet")
    assert [t["actual"] for t in data["thresholds"]][:2] == [50, 50]
    assert code == 0 and data["passed"]


def test_a_flow_without_data_fails_and_iteration_metrics_need_an_iteration(tmp_path):
    """One user, one request: it runs the weight-3 flow's 'once' step and never starts an iteration.

    The weight-1 flow gets no user at all: every threshold on it is "no data",
    even the counts that would read as a harmless zero. The first flow sent a
    request, so its counts are real zeros, but it has no iteration duration.
    """
    code, data = run(tmp_path, """\
version: 1
name: no-iteration
target: builtin
flows:
  - name: shopper
    weight: 3
    once: [{name: hello, path: /}]
    steps: [{name: page, path: /page/x}]
  - name: rare
    steps: [{name: never, path: /}]
stages: [{requests: 1, concurrency: 1}]
thresholds:
  - flow:rare iterations == 0
  - flow:rare dropped == 0
  - flow:rare skipped == 0
  - flow:shopper p95 < 1s
  - flow:shopper iteration_error_rate == 0
  - flow:shopper iterations == 0
  - flow:shopper requests == 1
  - flow:shopper error_rate == 0
""", "--quiet")
    assert code == 1
    outcomes = data["thresholds"]
    assert [t["passed"] for t in outcomes] == [False] * 5 + [True] * 3
    assert {t["reason"] for t in outcomes[:3]} == {
        "no data: the flow ran no iteration, sent no request and dropped no arrival"}
    assert {t["reason"] for t in outcomes[3:5]} == {"no data: no iteration completed"}
    assert all(t["actual"] is None for t in outcomes[:5])
    assert [t["actual"] for t in outcomes[5:]] == [0, 1, 0]


def test_skipped_steps_can_be_judged_in_every_scope(tmp_path, builtin_target):
    """Ten iterations whose capture fails: 'second' and 'third' are skipped ten times each."""
    code, data = run(tmp_path, f"""\
version: 1
name: skipped
target: {builtin_target.url}
flows:
  - name: broken
    steps:
      - {{name: first, path: /items, capture: {{token: {{json: $.token}}}}}}
      - {{name: second, path: "/page/{{token}}"}}
      - {{name: third, path: /page/x}}
stages: [{{name: steady, requests: 10, concurrency: 1}}]
thresholds:
  - skipped == 20
  - stage:steady skipped == 20
  - flow:broken skipped == 20
  - request:second skipped == 10
  - request:first skipped == 0
  - skipped == 0
  - request:third skipped < 10
""", "--quiet")
    assert code == 1
    assert [t["passed"] for t in data["thresholds"]] == [True] * 5 + [False] * 2
    assert [t["actual"] for t in data["thresholds"]] == [20, 20, 20, 10, 0, 20, 10]
    assert {t["unit"] for t in data["thresholds"]} == {"count"}


def test_abort_on_fail_watches_flow_thresholds(tmp_path, builtin_target):
    """Every 'failing' iteration has one good and one failing request: half its requests, all its iterations fail."""
    started = time.monotonic()
    code, data = run(tmp_path, f"""\
version: 1
name: abort-flow
target: {builtin_target.url}
flows:
  - {{name: fine, steps: [{{path: /}}]}}
  - {{name: failing, steps: [{{path: /}}, {{path: "/?status=500"}}]}}
stages: [{{rate: 50/s, duration: 30s}}]
thresholds:
  - flow:fine iteration_error_rate < 10%
  - flow:failing error_rate < 60%
  - flow:failing iteration_error_rate < 60%
abort_on_fail: {{delay: 1}}
""", "--quiet")
    assert time.monotonic() - started < 10
    assert code == 1
    assert data["aborted"]["reason"].startswith("threshold failed: flow:failing iteration_error_rate < 60%")
    assert [t["passed"] for t in data["thresholds"]] == [True, True, False]
    fine, requests, iterations = (t["actual"] for t in data["thresholds"])
    assert fine == 0 and 0.4 < requests < 0.6 and iterations == 1.0


def test_flow_threshold_load_errors_name_the_line(tmp_path, capsys):
    path = write_scenario(tmp_path, """\
version: 1
name: flow-typos
target: builtin
flows:
  - name: checkout
    steps: [{name: pay, path: /}]
  - name: browse
    steps: [{name: home, path: /}]
stages: [{name: steady, requests: 10, concurrency: 1}]
thresholds:
  - flow:checkout p95 < 2s
  - request:pay p95 < 1s
  - flow:chekout p95 < 2s
  - flow:browse p95 < 2s for 10s
  - iterations > 5
  - flow:browse rps > 5
  - flow:browse check_rate > 99%
  - stage:steady iteration_error_rate < 1%
  - flow:browse iterations_failed == 0.5
""")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:11:" not in err and f"{path}:12:" not in err  # a real flow, and a step of a named flow
    assert f"{path}:13:" in err and "no flow named 'chekout' (did you mean 'checkout'?); flows: checkout, browse" in err
    assert f"{path}:14:" in err and "a flow threshold takes no window" in err
    assert f"{path}:15:" in err and "'iterations' is measured per flow: write 'flow:NAME iterations ...'" in err
    assert f"{path}:16:" in err and "'rps' is not measured per flow (use iterations_per_s)" in err
    assert f"{path}:17:" in err and "'check_rate' is not measured per flow (use request:NAME check_rate)" in err
    assert f"{path}:18:" in err and "'iteration_error_rate' is measured per flow" in err
    assert f"{path}:19:" in err and "'iterations_failed' is a count: give a whole number" in err


def test_a_plain_flow_can_only_be_named_default(tmp_path, capsys):
    path = write_scenario(tmp_path, """\
version: 1
name: plain
target: builtin
flow: [{path: /}]
stages: [{requests: 10, concurrency: 1}]
thresholds: [flow:default p95 < 1s, flow:main p95 < 1s]
""")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6:" in err and "no flow named 'main'; flows: default" in err
    assert err.count("no flow named") == 1  # flow:default is known
