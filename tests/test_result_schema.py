"""The published result schema describes what runner writes, and the check that enforces it works.

``conftest.py`` validates every result of every test against
``schemas/result.schema.json``; these tests make sure that check has teeth:
a result that exercises every optional part validates, each kind of drift
(an unknown field, a missing one, a wrong type) is reported with its JSON
path, and the watch that collects results finds files and in-process dicts.
"""

from __future__ import annotations

import copy

import orjson
import pytest

from runner.cli import main

from .conftest import RESULT_SCHEMA, ResultWatch, looks_like_result, schema_errors, write_scenario

COVERAGE_SCENARIO = """\
version: 1
name: schema-coverage
target: {url}
interval: 250ms
flow:
  - name: page
    path: /page/{{seq}}
    checks: {{status: 200}}
  - name: missing
    path: "/gone?status=404"
stages:
  - {{name: closed, requests: 200, concurrency: 4}}
  - {{name: ramp, rate: {{from: 50/s, to: 150/s}}, duration: 1s, max_in_flight: 20}}
thresholds:
  - p95 < 5s
  - stage:closed error_rate < 60%
  - request:page check_rate > 99%
"""


@pytest.fixture(scope="module")
def full_result(builtin_target, tmp_path_factory) -> dict:
    """A real result with both models, a rate ramp, checks, thresholds, failures and a time series."""
    directory = tmp_path_factory.mktemp("schema-coverage")
    scenario = write_scenario(directory, COVERAGE_SCENARIO.format(url=builtin_target.url))
    out = directory / "result.json"
    assert main(["run", str(scenario), "--quiet", "--out", f"json={out}"]) == 0
    return orjson.loads(out.read_bytes())


def test_a_result_using_every_part_of_the_format_validates(full_result):
    closed, ramp = full_result["stages"]
    # the run really produced the optional parts, so validating it means something
    assert ramp["model"] == "open" and ramp["rate"]["scheduled"] == 100  # 50*1 + 100*1/2
    assert closed["timeseries"] and full_result["thresholds"] and full_result["checks"]
    assert full_result["totals"]["failed"] > 0 and "404" in full_result["totals"]["status_codes"]
    assert schema_errors(full_result) == []


def test_the_schema_forbids_fields_it_does_not_describe():
    # Without this, a field runner adds (or renames) would validate silently.
    schema = orjson.loads(RESULT_SCHEMA.read_bytes())
    records = {"(top level)": schema, **{name: d for name, d in schema["$defs"].items() if "properties" in d}}
    assert len(records) > 10
    assert {name for name, record in records.items() if record.get("additionalProperties") is not False} == set()


def _set(document: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


def _delete(document: dict, path: tuple) -> None:
    for key in path[:-1]:
        document = document[key]
    del document[path[-1]]


@pytest.mark.parametrize("change, expected", [
    (lambda d: _set(d, ("surprise",), 1), "(top level): Additional properties are not allowed ('surprise'"),
    (lambda d: _set(d, ("stages", 1, "rate", "extra"), 1), "stages/1/rate: Additional properties"),
    (lambda d: _set(d, ("stages", 0, "timeseries", 0, "extra"), 1), "stages/0/timeseries/0: Additional"),
    (lambda d: _delete(d, ("totals", "requests")), "totals: 'requests' is a required property"),
    (lambda d: _delete(d, ("engine",)), "(top level): 'engine' is a required property"),
    (lambda d: _set(d, ("totals", "status_codes", "200"), "many"), "totals/status_codes/200: 'many' is not"),
    (lambda d: _set(d, ("stages", 1, "rate", "met"), "yes"), "stages/1/rate/met: 'yes' is not of type 'boolean'"),
    (lambda d: _set(d, ("totals", "latency_ms", "p99"), None), "totals/latency_ms/p99: None is not of type"),
])
def test_drift_is_reported_with_its_path(full_result, change, expected):
    document = copy.deepcopy(full_result)
    change(document)
    errors = schema_errors(document)
    assert any(error.startswith(expected) for error in errors), errors


@pytest.mark.hand_made_results
def test_the_watch_reports_bad_result_files_once_and_leaves_other_json_alone(full_result, tmp_path):
    watch = ResultWatch(tmp_path)
    broken = copy.deepcopy(full_result)
    del broken["totals"]
    (tmp_path / "good.json").write_bytes(orjson.dumps(full_result))
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "broken.json").write_bytes(orjson.dumps(broken))
    (tmp_path / "plugin.json").write_bytes(orjson.dumps({"requests": 3}))  # some other JSON a test wrote
    (tmp_path / "partial.json").write_bytes(b'{"format_version": ')  # not JSON at all
    problems = watch.problems()
    assert problems == [f"{tmp_path / 'nested' / 'broken.json'}: (top level): 'totals' is a required property"]
    assert watch.problems() == []  # each file version is checked once
    broken["totals"] = full_result["totals"]
    broken["extra"] = True
    (tmp_path / "nested" / "broken.json").write_bytes(orjson.dumps(broken))
    assert len(watch.problems()) == 1  # rewritten: checked again


def test_the_watch_checks_a_snapshot_of_each_result_dict(full_result, tmp_path):
    watch = ResultWatch(tmp_path)
    document = copy.deepcopy(full_result)
    watch.capture(document)
    document["added_after_the_run"] = 1  # a test changing its copy later is not runner's output
    assert watch.problems() == []
    watch.capture({"format_version": 1})
    assert any("'totals' is a required property" in problem for problem in watch.problems())


def test_results_built_in_this_process_are_collected_without_asking(result_watch, builtin_target, tmp_path):
    # No file is written (--quiet and no --out): the dict is still collected for the check.
    scenario = write_scenario(tmp_path, f"version: 1\nname: quiet\ntarget: {builtin_target.url}\n"
                                        f"flow: [{{path: /}}]\nstages: [{{requests: 20, concurrency: 2}}]\n")
    pending = len(result_watch.documents)
    assert main(["run", str(scenario), "--quiet"]) == 0
    assert len(result_watch.documents) == pending + 1
    captured = orjson.loads(result_watch.documents[-1])
    assert captured["scenario"]["name"] == "quiet" and captured["totals"]["requests"] == 20


def test_only_runner_results_are_recognised():
    assert looks_like_result({"format_version": 1})
    assert looks_like_result({"totals": {}, "stages": []})
    assert not looks_like_result({"$defs": {}, "title": "runner result"})
    assert not looks_like_result([{"totals": {}}])
