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
