"""Baseline-vs-current comparison on a real result and synthetic regressions of it.

The baseline is a real run against the built-in target; "current" results
are copies with one number moved by a known amount, so each test knows
exactly which row must regress and which must not.
"""

from __future__ import annotations

import copy

import orjson
import pytest

from runner.cli import main
from runner.compare import (DEFAULT_LIMITS, Comparison, compare, parse_limit, parse_limits,
                            render_comparison)

from .conftest import write_scenario

SCENARIO = """\
version: 1
name: compare-me
target: {target}
flow:
  - name: home
    path: /page/{{seq}}
  - name: maybe
    path: /maybe?status=503
stages:
  - name: first
    requests: 400
    concurrency: 4
  - name: second
    requests: 600
    concurrency: 8
"""


@pytest.fixture(scope="module")
def baseline(builtin_target, tmp_path_factory):
    directory = tmp_path_factory.mktemp("compare")
    out = directory / "baseline.json"
    scenario = write_scenario(directory, SCENARIO.format(target=builtin_target.url))
    assert main(["run", str(scenario), "--quiet", "--out", f"json={out}"]) == 0
    return orjson.loads(out.read_bytes())


def scaled(result: dict, metric: str, factor: float, scope: str = "total") -> dict:
    """A copy with one metric of one scope ("total" or a stage name) multiplied by ``factor``."""
    data = copy.deepcopy(result)
    block = data["totals"] if scope == "total" else next(s for s in data["stages"] if s["name"] == scope)
    if metric == "rps":
        block["rps"] *= factor
    else:
        block["latency_ms"][metric] *= factor
    return data


def regressed_rows(comparison: Comparison) -> set[tuple[str, str]]:
    return {(row.scope, row.metric) for row in comparison.rows if row.regressed}


def test_a_result_compared_with_itself_has_no_regression(baseline):
    comparison = compare(baseline, baseline, {})
    assert not comparison.regressed
    assert comparison.limits == DEFAULT_LIMITS
    scopes = {row.scope for row in comparison.rows}
    assert scopes == {"total", "stage first", "stage second"}
    assert {row.metric for row in comparison.rows} == set(DEFAULT_LIMITS)
    assert all(row.change == 0 for row in comparison.rows)
    assert baseline["totals"]["failed"] > 0  # the error-rate rows compare a real, non-zero rate


def test_a_20_percent_p95_regression_is_detected_and_2_percent_passes(baseline):
    worse = compare(baseline, scaled(baseline, "p95", 1.20), dict([parse_limit("p95=10%")]))
    assert worse.regressed and regressed_rows(worse) == {("total", "p95")}
    row = next(r for r in worse.rows if r.scope == "total")
    assert row.change == pytest.approx(0.20) and row.limit == 0.10
    assert row.current == pytest.approx(row.baseline * 1.2)
    assert not compare(baseline, scaled(baseline, "p95", 1.02), {"p95": 0.10}).regressed
    assert not compare(baseline, scaled(baseline, "p95", 0.50), {"p95": 0.10}).regressed  # faster is fine


def test_a_regression_in_one_stage_is_reported_for_that_stage(baseline):
    comparison = compare(baseline, scaled(baseline, "p99", 1.5, scope="second"))
    assert regressed_rows(comparison) == {("stage second", "p99")}


def test_rps_regression_is_a_drop(baseline):
    assert regressed_rows(compare(baseline, scaled(baseline, "rps", 0.85), {"rps": 0.10})) == {("total", "rps")}
    assert not compare(baseline, scaled(baseline, "rps", 0.95), {"rps": 0.10}).regressed
    assert not compare(baseline, scaled(baseline, "rps", 3.0), {"rps": 0.10}).regressed  # faster is fine


def test_error_rate_limit_is_in_percentage_points(baseline):
    current = copy.deepcopy(baseline)
    totals = current["totals"]
    base_rate = totals["failed"] / totals["requests"]
    moved = int(totals["requests"] * 0.02)  # +2 points of errors
    totals["ok"] -= moved
    totals["failed"] += moved
    comparison = compare(baseline, current, {"error_rate": 0.01})
    assert regressed_rows(comparison) == {("total", "error_rate")}
    row = next(r for r in comparison.rows if r.scope == "total")
    assert row.baseline == pytest.approx(base_rate) and row.change == pytest.approx(moved / totals["requests"])
    assert not compare(baseline, current, dict([parse_limit("error_rate=3pp")])).regressed


def test_parse_limit_forms():
    assert parse_limit("p95=10%") == ("p95", pytest.approx(0.10))
    assert parse_limit(" rps = 2.5% ") == ("rps", pytest.approx(0.025))
    assert parse_limit("error_rate=1pp") == parse_limit("error_rate=1%") == ("error_rate", pytest.approx(0.01))
    assert parse_limits([]) == DEFAULT_LIMITS
    assert parse_limits(["p99=5%", "max=50%"]) == {"p99": pytest.approx(0.05), "max": pytest.approx(0.5)}


@pytest.mark.parametrize("text, words", [
    ("p95", "bad limit"),
    ("p95=10", "bad limit"),
    ("p95=-5%", "bad limit"),
    ("p95=ten%", "bad limit"),
    ("p95=1pp", "only to error_rate"),
    ("latency=10%", "unknown metric 'latency'"),
    ("check_rate=10%", "unknown metric"),
])
def test_bad_limits_raise_a_clear_value_error(text, words):
    with pytest.raises(ValueError, match=words):
        parse_limit(text)


def test_unknown_metric_in_a_limits_dict_is_a_value_error(baseline):
    with pytest.raises(ValueError, match="unknown metric"):
        compare(baseline, baseline, {"p42": 0.1})


def test_stages_in_only_one_result_are_noted_not_compared(baseline):
    current = copy.deepcopy(baseline)
    current["stages"][1]["name"] = "renamed"
    comparison = compare(baseline, current)
    assert {row.scope for row in comparison.rows} == {"total", "stage first"}
    assert any("only in the baseline" in note and "second" in note for note in comparison.notes)
    assert any("only in the current" in note and "renamed" in note for note in comparison.notes)


def test_render_comparison_is_a_readable_table(baseline):
    comparison = compare(baseline, scaled(baseline, "p95", 1.20))
    text = render_comparison(comparison)
    lines = text.splitlines()
    assert lines[0] == "baseline: compare-me   current: compare-me"
    assert lines[2].split() == ["scope", "metric", "baseline", "current", "change", "limit", "verdict"]
    (regressed,) = [line for line in lines if line.endswith("REGRESSED")]
    assert regressed.split()[:2] == ["total", "p95"] and "+20.0%" in regressed and "+10%" in regressed
    assert lines[-1].startswith("REGRESSED: 1 of ")
    assert render_comparison(compare(baseline, baseline)).splitlines()[-1].startswith("OK: no regression")
    assert comparison.to_dict()["regressed"] is True


# --- no data in the current run fails, unless the baseline had none either -----------------------------------------


@pytest.fixture(scope="module")
def empty(builtin_target, tmp_path_factory):
    """A real result of the same scenario stopped before its first request (as if SIGINT came at once)."""
    from runner.compile import compile_scenario
    from runner.executor import RunControl
    from runner.launch import execute
    from runner.loader import load_scenario

    directory = tmp_path_factory.mktemp("compare-empty")
    scenario = write_scenario(directory, SCENARIO.format(target=builtin_target.url))
    control = RunControl()
    control.stopping = True
    result = execute(compile_scenario(load_scenario(scenario), scenario), control=control).to_dict()
    assert result["totals"]["requests"] == 0
    return result


def test_a_current_run_without_requests_fails_the_comparison(baseline, empty):
    comparison = compare(baseline, empty)
    assert comparison.regressed
    assert {(row.scope, row.metric) for row in comparison.rows if row.missing} == {("total", m) for m in DEFAULT_LIMITS}
    assert all(row.note == "NO DATA in the current run" for row in comparison.rows)
    lines = render_comparison(comparison).splitlines()
    assert sum(line.endswith("NO DATA in the current run") for line in lines) == len(DEFAULT_LIMITS)
    assert lines[-1] == f"FAILED: {len(DEFAULT_LIMITS)} of {len(DEFAULT_LIMITS)} comparisons have no data in the " \
                        f"current run (the baseline had)"


def test_no_data_in_both_or_only_in_the_baseline_does_not_fail(baseline, empty):
    both = compare(empty, empty)
    assert not both.regressed and {row.note for row in both.rows} == {"no data in either"}
    assert render_comparison(both).splitlines()[-1].startswith("OK: no regression")
    only_baseline = compare(empty, baseline)
    assert not only_baseline.regressed
    assert {row.note for row in only_baseline.rows} == {"no data in the baseline"}


def test_one_stage_without_data_fails_only_its_rows(baseline):
    current = copy.deepcopy(baseline)
    stage = next(s for s in current["stages"] if s["name"] == "second")
    stage["requests"] = stage["ok"] = stage["failed"] = 0
    comparison = compare(baseline, current, {"p95": 0.10, "rps": 0.10})
    assert {(row.scope, row.metric) for row in comparison.rows if row.regressed} == {
        ("stage second", "p95"), ("stage second", "rps")}
    assert all(row.missing and row.current is None for row in comparison.rows if row.regressed)


def test_compare_command_exits_1_with_a_clear_line_when_the_current_run_is_empty(baseline, empty, tmp_path, capsys):
    paths = {}
    for name, result in (("baseline", baseline), ("empty", empty)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_bytes(orjson.dumps(result))
    assert main(["compare", str(paths["baseline"]), str(paths["empty"])]) == 1
    out = capsys.readouterr().out
    assert "NO DATA in the current run" in out and "FAILED:" in out
    assert main(["compare", str(paths["empty"]), str(paths["empty"])]) == 0
