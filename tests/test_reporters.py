"""CSV, JUnit and HTML reporters on real results from runs against the built-in target.

The scenario below produces every kind of row a reporter must handle from a
real run: ok responses, HTTP failures (503), transport errors (timeouts),
dropped arrivals (open stage), passing and failing checks and thresholds
(one of them windowed). Only what a run cannot produce on demand -- an
interrupted or aborted run, a threshold with no data, results from before
thresholds existed -- is made by editing a copy of a real result.

A second scenario (:data:`FLOWS`) runs named flows against the built-in
target's shop API: one flow logs in once and loops, the other captures a
value no response has (so its iterations fail and its later steps are
skipped) and takes rows from a small unique table until the table runs dry.
Every reporter must show its flows, skipped steps and data usage.
"""

from __future__ import annotations

import copy
import csv
import io
import re
import shutil
import struct
import subprocess
import tomllib
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import orjson
import pytest
from junitparser import Error, Failure, JUnitXml

from runner.reporters.base import available_reporters
from runner.reporters.console import ConsoleReporter
from runner.reporters.csv import COLUMNS, CsvReporter
from runner.reporters.html import HtmlReporter
from runner.reporters.junit import JUnitReporter
from runner.cli import main

from .conftest import REPO, write_scenario

NASTY_NAME = '<script>alert(1)</script> & "shop"'

SCENARIO = """\
version: 1
name: '{name}'
target: {target}
interval: 250ms
defaults:
  checks:
    status: 2xx
flow:
  - name: home
    path: /page/{{seq}}
    checks:
      status: 200
  - name: slow
    path: /slow?delay=0.02
    checks:
      max_duration: 10ms
  - name: broken
    path: /broken?status=503
  - name: stuck
    path: /stuck?delay=1
    timeout: 50ms
stages:
  - name: warm-up
    requests: 400
    concurrency: 8
  - name: open
    rate: 1000/s
    duration: 1s
    max_in_flight: 4
thresholds:
  - p95 < 10s
  - error_rate < 1%
  - stage:open p99 < 1ms for 500ms
  - request:home rps > 1
  - request:slow check_rate > 99%
"""

PLAIN = """\
version: 1
name: plain
target: {target}
flow:
  - path: {path}
stages:
  - requests: 200
    concurrency: 4
"""

NEWER_KEYS = ("passed", "thresholds", "checks", "aborted", "by_flow", "data")


def run_scenario(directory: Path, text: str) -> tuple[int, dict, dict[str, Path]]:
    """Runs through the CLI with every reporter at once; returns the exit code, JSON and paths."""
    scenario = write_scenario(directory, text)
    paths = {name: directory / f"result.{ext}" for name, ext in
             (("json", "json"), ("csv", "csv"), ("junit", "xml"), ("html", "html"))}
    outs = [arg for name, path in paths.items() for arg in ("--out", f"{name}={path}")]
    code = main(["run", str(scenario), "--quiet", *outs])
    return code, orjson.loads(paths["json"].read_bytes()), paths


@pytest.fixture(scope="module")
def real_run(builtin_target, tmp_path_factory):
    directory = tmp_path_factory.mktemp("reporters")
    code, result, paths = run_scenario(directory, SCENARIO.format(name=NASTY_NAME, target=builtin_target.url))
    assert code == 1  # thresholds failed, as intended
    return result, paths


def older(result: dict) -> dict:
    """The result as written before thresholds, checks, flows and data tables existed."""
    data = copy.deepcopy(result)
    for key in NEWER_KEYS:
        data.pop(key, None)
    blocks = [data["totals"], *data["by_request"]]
    for stage in data["stages"]:
        stage.pop("checks", None)
        stage.pop("by_flow", None)
        blocks += [stage, *stage["by_request"]]
        for interval in stage["timeseries"]:
            interval["latency_ms"].pop("p95", None)
            interval["latency_ms"].pop("p999", None)
    for block in blocks:
        block.pop("checks", None)
        block.pop("skipped", None)
    return data


# --- registry ----------------------------------------------------------------------------------------------------


def test_new_reporters_are_registered_builtin_and_as_entry_points():
    found = available_reporters()
    assert {"csv": CsvReporter, "junit": JUnitReporter, "html": HtmlReporter}.items() <= found.items()
    table = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["runner.reporters"]
    assert table["csv"] == "runner.reporters.csv:CsvReporter"
    assert table["junit"] == "runner.reporters.junit:JUnitReporter"
    assert table["html"] == "runner.reporters.html:HtmlReporter"


def test_the_real_run_covers_every_case(real_run):
    result, paths = real_run
    totals = result["totals"]
    assert totals["ok"] > 0 and totals["failed"] > 0 and totals["dropped"] > 0 and totals["errors"]
    assert {t["passed"] for t in result["thresholds"]} == {True, False}
    assert {c["fails"] > 0 for c in result["checks"]} == {True, False}
    assert any(t["window_s"] for t in result["thresholds"]) and result["passed"] is False
    for name in ("csv", "junit", "html"):
        assert paths[name].stat().st_size > 500
    # re-rendering the saved JSON gives the same bytes: reporters depend only on the result dict
    for reporter in (CsvReporter(), JUnitReporter(), HtmlReporter()):
        assert reporter.render(result) == paths[reporter.name].read_bytes()


# --- CSV ---------------------------------------------------------------------------------------------------------


def csv_table(result: dict) -> tuple[bytes, list[dict]]:
    raw = CsvReporter().render(result)
    return raw, list(csv.DictReader(io.StringIO(raw.decode())))


def test_csv_stage_rows_sum_to_the_total_row(real_run):
    result, _ = real_run
    raw, rows = csv_table(result)
    assert b"\r" not in raw and raw.endswith(b"\n")
    assert raw.split(b"\n", 1)[0].decode().split(",") == list(COLUMNS)
    stage_rows = [r for r in rows if r["kind"] == "summary" and r["request"] == ""]
    (total,) = [r for r in rows if r["kind"] == "total"]
    assert [r["stage"] for r in stage_rows] == [s["name"] for s in result["stages"]]
    for column in ("requests", "ok", "failed", "dropped", "bytes", "error_count"):
        assert sum(int(r[column]) for r in stage_rows) == int(total[column]), column
    assert int(total["requests"]) == result["totals"]["requests"]
    assert int(total["dropped"]) > 0 and int(total["failed"]) > 0 and int(total["error_count"]) > 0
    assert float(total["p99_ms"]) == result["totals"]["latency_ms"]["p99"]


def test_csv_request_rows_sum_to_their_stage(real_run):
    result, _ = real_run
    _, rows = csv_table(result)
    for stage in result["stages"]:
        (stage_row,) = [r for r in rows if r["kind"] == "summary" and r["stage"] == stage["name"] and not r["request"]]
        request_rows = [r for r in rows if r["kind"] == "summary" and r["stage"] == stage["name"] and r["request"]]
        assert [r["request"] for r in request_rows] == ["home", "slow", "broken", "stuck"]
        for column in ("requests", "ok", "failed", "dropped", "bytes"):
            assert sum(int(r[column]) for r in request_rows) == int(stage_row[column]), (stage["name"], column)


def test_csv_timeseries_rows_one_per_interval_with_empty_cells_where_not_applicable(real_run):
    result, _ = real_run
    _, rows = csv_table(result)
    for stage in result["stages"]:
        series = [r for r in rows if r["kind"] == "timeseries" and r["stage"] == stage["name"]]
        assert [float(r["t"]) for r in series] == [i["t"] for i in stage["timeseries"]]
        assert sum(int(r["ok"]) + int(r["failed"]) for r in series) == stage["requests"]
        assert sum(int(r["dropped"]) for r in series) == stage["dropped"]
        for row in series:
            assert row["requests"] == row["bytes"] == row["mean_ms"] == row["request"] == row["error_count"] == ""
            assert row["p95_ms"] != "" and row["p99_ms"] != ""
    for row in rows:
        if row["kind"] != "timeseries":
            assert row["t"] == row["sent"] == row["in_flight"] == ""
    kinds = [r["kind"] for r in rows]
    assert kinds == sorted(kinds, key=["summary", "total", "flow", "timeseries"].index)


# --- JUnit -------------------------------------------------------------------------------------------------------


def parse_junit(data: bytes, tmp_path: Path):
    path = tmp_path / "junit.xml"
    path.write_bytes(data)
    suites = JUnitXml.fromfile(str(path))
    (suite,) = list(suites)
    return suites, suite, list(suite)


def test_junit_thresholds_and_checks_parse_with_matching_counts(real_run, tmp_path):
    data = real_run[0]
    suites, suite, cases = parse_junit(JUnitReporter().render(data), tmp_path)
    failing = [t for t in data["thresholds"] if not t["passed"]] + [c for c in data["checks"] if c["fails"]]
    assert suite.name == NASTY_NAME  # escaped in the file, exact after parsing
    assert suite.tests == len(cases) == len(data["thresholds"]) + len(data["checks"]) == 5 + len(data["checks"])
    assert suite.failures == len(failing) == sum(not case.is_passed for case in cases) >= 4
    assert suite.errors == 0 and suites.tests == suite.tests and suites.failures == suite.failures
    assert suite.timestamp == data["started_at"][:19]
    props = {p.name: p.value for p in suite.properties()}
    assert props["engine"] == data["engine"]["name"] and props["runner_version"] == data["runner_version"]
    assert props["target"] == data["target"]

    by_name = {case.name: case for case in cases}
    check_names = {f"{c['request']}: {c['name']}" for c in data["checks"]}
    assert set(by_name) == check_names | {
        "total: p95 < 10s", "total: error_rate < 1%", "stage/open: p99 < 1ms for 500ms",
        "request/home: rps > 1", "request/slow: check_rate > 99%"}
    assert {by_name[n].classname for n in check_names} == {"runner.checks"}
    assert by_name["total: p95 < 10s"].classname == "runner.thresholds"
    assert by_name["total: p95 < 10s"].is_passed and by_name["request/home: rps > 1"].is_passed

    rate = by_name["total: error_rate < 1%"].result[0]
    assert isinstance(rate, Failure) and rate.type == "threshold"
    measured = data["totals"]["failed"] / data["totals"]["requests"] * 100
    shown = re.fullmatch(r"measured ([\d.]+)%, expected < 1%", rate.message)
    assert shown and float(shown.group(1)) == pytest.approx(measured, abs=0.001)
    window = by_name["stage/open: p99 < 1ms for 500ms"].result[0]
    assert re.fullmatch(r"measured [\d.,]+ ms, expected < 1 ms \(breached for 0\.5s from t=[\d.]+s\)", window.message)
    assert "window: 0.5s" in window.text and "defined at: " in window.text

    for check in data["checks"]:
        case = by_name[f"{check['request']}: {check['name']}"]
        total = check["passes"] + check["fails"]
        if check["fails"]:
            (failure,) = case.result
            assert failure.type == "check"
            assert failure.message == (f"{check['fails']:,} of {total:,} responses failed the check "
                                       f"({check['fails'] / total:.2%}); {check['passes']:,} passed")
        else:
            assert case.is_passed


def test_junit_threshold_with_no_data_and_an_aborted_run(real_run, tmp_path):
    data = copy.deepcopy(real_run[0])
    data["thresholds"].append({
        "expression": "request:home p50 < 5ms for 10s", "scope": "request", "target": "home", "metric": "p50",
        "op": "<", "expected": 5.0, "actual": None, "unit": "ms", "window_s": 10.0, "passed": False,
        "reason": "no data", "source": "scenario.yaml:40"})
    data["aborted"] = {"reason": "threshold 'error_rate < 1%' failed", "at_s": 1.25}
    _, suite, cases = parse_junit(JUnitReporter().render(data), tmp_path)
    case = next(c for c in cases if c.name == "request/home: p50 < 5ms for 10s")
    assert case.result[0].message == "measured no data, expected < 5 ms"
    assert {p.name: p.value for p in suite.properties()}["aborted"] == "threshold 'error_rate < 1%' failed (at 1.25s)"


@pytest.mark.parametrize("path, passed, message", [
    ("/page/{seq}", True, None),
    ("/x?status=500", False, "every request failed (200 of 200)"),
])
def test_junit_without_thresholds_or_checks_has_one_run_completed_case(builtin_target, tmp_path, path, passed,
                                                                      message):
    code, result, paths = run_scenario(tmp_path, PLAIN.format(target=builtin_target.url, path=path))
    assert code == 0 and result["thresholds"] == [] and result["checks"] == []
    _, suite, cases = parse_junit(paths["junit"].read_bytes(), tmp_path)  # as the CLI wrote it
    assert [(c.classname, c.name) for c in cases] == [("runner.run", "run completed")]
    assert cases[0].is_passed is passed and suite.tests == 1 and suite.failures == (not passed)
    if message:
        assert cases[0].result[0].message == message


def test_junit_interrupted_run_adds_an_error_case(real_run, tmp_path):
    plain = older(real_run[0])
    full = copy.deepcopy(real_run[0])
    full_failures = sum(not t["passed"] for t in full["thresholds"]) + sum(c["fails"] > 0 for c in full["checks"])
    for data, expected_tests, expected_failures in (
        (plain, 2, 1),  # "run completed" fails, plus the error case
        (full, len(full["thresholds"]) + len(full["checks"]) + 1, full_failures),
    ):
        data["interrupted"], data["interrupt_signal"] = True, "SIGTERM"
        _, suite, cases = parse_junit(JUnitReporter().render(data), tmp_path)
        assert suite.tests == len(cases) == expected_tests
        assert suite.failures == expected_failures and suite.errors == 1
        error = next(c for c in cases if c.name == "run interrupted").result[0]
        assert isinstance(error, Error) and "SIGTERM" in error.message


# --- HTML --------------------------------------------------------------------------------------------------------

#: Anything that would make a browser fetch: an attribute or CSS url() pointing at a network location, or @import.
_NETWORK_REF = re.compile(r"""(?:src|href|action|srcset|poster|data)\s*=\s*["']?\s*(?:https?:)?//"""
                          r"""|url\(\s*["']?\s*(?:https?:)?//|@import""", re.IGNORECASE)


def test_html_is_self_contained_and_escapes_user_strings(real_run):
    data = copy.deepcopy(real_run[0])
    data["aborted"] = {"reason": "threshold <b>x</b> failed", "at_s": 1.5}
    page = HtmlReporter().render(data).decode()
    assert page.startswith("<!DOCTYPE html>")
    assert not _NETWORK_REF.search(page)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "default-src 'none'" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;shop&quot;" in page
    assert "threshold &lt;b&gt;x&lt;/b&gt; failed" in page
    assert "&lt;span" not in page and "&lt;td" not in page  # our own markup is never escaped into text
    assert page.count("<svg") == 3  # latency over time, throughput over time, percentile bars
    assert "FAIL</span>" in page and "error_rate &lt; 1%" in page and "stage:open p99 &lt; 1ms for 500ms" in page
    assert all(f">{name}<" in page for name in ("home", "slow", "broken", "stuck", "warm-up", "open"))


def test_every_reporter_tolerates_older_and_sparse_results(real_run):
    old = older(real_run[0])
    sparse = copy.deepcopy(old)
    for stage in sparse["stages"]:
        stage["timeseries"], stage["by_request"] = [], []
    sparse["totals"]["requests"] = 0
    for data in (old, sparse):
        for reporter in (ConsoleReporter(), CsvReporter(), JUnitReporter(), HtmlReporter()):
            assert reporter.render(data)
    assert "NO VERDICT" in HtmlReporter().render(old).decode()
    rows = list(csv.DictReader(io.StringIO(CsvReporter().render(old).decode())))
    assert {r["p95_ms"] for r in rows if r["kind"] == "timeseries"} == {""}


# --- flows, skipped steps and data tables -----------------------------------------------------------------------

FLOWS = """\
version: 1
name: flows
target: builtin
data:
  users: {file: users.csv, mode: unique, per: vu}
  codes: {file: codes.csv, mode: unique, per: iteration}
flows:
  - name: shopper
    weight: 3
    once:
      - name: login
        method: POST
        path: /login
        json: {user: "{users.user}", password: "{users.password}"}
        capture: {token: {json: $.token}}
    steps:
      - name: items
        path: /items
        headers: {Authorization: "Bearer {token}"}
        checks: {status: 200}
      - think: 1ms
  - name: lost
    weight: 1
    steps:
      - name: miss
        path: /items
        capture: {nothing: {json: $.nothing.here}}
      - name: after miss
        path: "/page/{nothing}"
      - name: coupon
        path: "/coupon/{codes.code}"
interval: 10ms    # several time-series points even when the run is quick: the HTML charts need them
stages:
  - {name: first, requests: 200, concurrency: 8}
  - {name: second, requests: 200, concurrency: 8}
"""

#: codes.csv is this small so that the run uses it up: its exhaustion must show in every report.
CODE_ROWS = 3
USER_ROWS = 200


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("flows")
    (directory / "users.csv").write_text("user,password\n" + "".join(f"u{i:03d},pw-u{i:03d}\n"
                                                                     for i in range(USER_ROWS)))
    (directory / "codes.csv").write_text("code\n" + "".join(f"c{i}\n" for i in range(CODE_ROWS)))
    code, result, paths = run_scenario(directory, FLOWS)
    assert code == 0
    return result, paths


def flow(result: dict, name: str) -> dict:
    return next(block for block in result["by_flow"] if block["name"] == name)


def test_the_flow_run_covers_flows_skipped_steps_and_data(flow_run):
    """What the reporter tests below rely on, so that they cannot pass on a run that lacks it."""
    result, paths = flow_run
    shopper, lost = flow(result, "shopper"), flow(result, "lost")
    assert [f["name"] for f in result["by_flow"]] == ["shopper", "lost"]
    assert shopper["iterations"] > 100 and shopper["iterations_failed"] == 0 and shopper["skipped"] == 0
    # each "lost" iteration takes a code, fails its capture and skips its two later steps
    assert lost["iterations"] == lost["iterations_failed"] == CODE_ROWS
    assert lost["skipped"] == result["totals"]["skipped"] == 2 * CODE_ROWS
    assert result["totals"]["errors"] == {"capture_failed": CODE_ROWS}
    assert [s["name"] for s in result["stages"]] == ["first", "second"]
    users, codes = result["data"]
    assert (users["name"], users["rows"], users["exhausted"]) == ("users", USER_ROWS, False)
    assert 0 < users["used"] < USER_ROWS
    assert (codes["name"], codes["used"], codes["exhausted"]) == ("codes", CODE_ROWS, True)
    for reporter in (CsvReporter(), JUnitReporter(), HtmlReporter()):
        assert reporter.render(result) == paths[reporter.name].read_bytes()


def _columns(header: str) -> list[tuple[str, int]]:
    """Each header word and the index just past it: right-aligned cells end there too."""
    return [(m.group(), m.end()) for m in re.finditer(r"\S+(?: ms)?", header)]


def _cell(line: str, end: int) -> str:
    """The right-aligned cell ending at ``end``: the last word before it, or "" if blank there."""
    words = line[:end].split()
    return words[-1] if words and not line[end - 1].isspace() else ""


def test_console_shows_a_flow_table_aligned_with_the_request_table(flow_run):
    result, _ = flow_run
    lines = ConsoleReporter().render(result).decode().splitlines()
    request_header = next(line for line in lines if line.split()[:2] == ["requests", "ok"])
    start = next(i for i, line in enumerate(lines) if line.startswith("  flows "))
    assert lines[start - 1] == "" and lines[start - 2].startswith("  total ")  # right after the request table
    header = lines[start]
    end = lines.index("", start)
    rows = lines[start + 1:end]
    assert len(header) == len(request_header)
    assert [word for word, _ in _columns(header)] == [
        "flows", "iterations", "failed", "skipped", "iter/s", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    # request-table columns end where the flow-table columns do, so the two tables read as one
    assert [e for _, e in _columns(request_header)][-4:] == [e for _, e in _columns(header)][-4:]
    expected = []
    for block in result["by_flow"]:
        expected.append((block["name"], block))
        expected += [(f"stage {s['name']}", next(f for f in s["by_flow"] if f["name"] == block["name"]))
                     for s in result["stages"]]
    assert [row.strip().split("  ")[0] for row in rows] == [label for label, _ in expected]
    for row, (label, block) in zip(rows, expected):
        assert len(row) == len(header), row
        cells = {word: _cell(row, position) for word, position in _columns(header)[1:]}
        duration = block["iteration_duration_ms"]
        assert cells == {
            "iterations": f"{block['iterations']:,}", "failed": f"{block['iterations_failed']:,}",
            "skipped": f"{block['skipped']:,}" if block["skipped"] else "",
            "iter/s": f"{block['iterations_per_s']:,.1f}", "p50 ms": f"{duration['p50']:.2f}",
            "p95 ms": f"{duration['p95']:.2f}", "p99 ms": f"{duration['p99']:.2f}",
            "max ms": f"{duration['max']:.2f}"}, label
    lost = flow(result, "lost")
    skipped = {b["name"]: b["skipped"] for b in result["by_request"] if b["skipped"]}
    assert set(skipped) == {"after miss", "coupon"}
    assert (f"  skipped: {lost['skipped']:,} flow steps not sent, a capture earlier in the iteration failed "
            f"(after miss: {skipped['after miss']:,}, coupon: {skipped['coupon']:,})") in lines
    users = result["data"][0]
    assert f"  data users: {users['used']:,} of {USER_ROWS} rows used (unique per vu)" in lines
    assert (f"  data codes: {CODE_ROWS} of {CODE_ROWS} rows used (unique per iteration), "
            f"EXHAUSTED: users that needed another row stopped") in lines


def test_console_leaves_out_the_implicit_flow_and_what_did_not_happen(real_run):
    result, _ = real_run
    assert [f["name"] for f in result["by_flow"]] == ["default"]
    text = ConsoleReporter().render(result).decode()
    assert "  flows " not in text and "iterations" not in text
    assert "skipped" not in text and "  data " not in text
    # ... but a single flow the scenario named is worth its table
    named = copy.deepcopy(result)
    named["by_flow"][0]["name"] = "checkout"
    assert "\n  flows " in ConsoleReporter().render(named).decode()


def test_csv_flow_rows_per_stage_add_up_to_the_run_and_data_rows(flow_run, real_run):
    result, _ = flow_run
    _, rows = csv_table(result)
    kinds = [r["kind"] for r in rows]
    assert kinds == sorted(kinds, key=["summary", "total", "flow", "data", "timeseries"].index)
    flow_rows = [r for r in rows if r["kind"] == "flow"]
    assert [(r["stage"], r["flow"]) for r in flow_rows] == [
        (stage, name) for stage in ("first", "second", "") for name in ("shopper", "lost")]
    counted = ("iterations", "iterations_failed", "requests", "ok", "failed", "dropped", "skipped")
    for name in ("shopper", "lost"):
        whole = next(r for r in flow_rows if r["flow"] == name and r["stage"] == "")
        block = flow(result, name)
        for column in counted:
            assert int(whole[column]) == block[column], (name, column)
            assert sum(int(r[column]) for r in flow_rows if r["flow"] == name and r["stage"]) == block[column]
        assert float(whole["iterations_per_s"]) == block["iterations_per_s"]
        assert float(whole["p99_ms"]) == block["iteration_duration_ms"]["p99"]
        assert float(whole["mean_ms"]) == block["iteration_duration_ms"]["mean"]
        assert whole["request"] == whole["rps"] == whole["error_count"] == whole["table"] == ""
    assert int(next(r for r in flow_rows if r["flow"] == "lost" and not r["stage"])["skipped"]) == 2 * CODE_ROWS
    # skipped steps in the summary rows: per request, per stage and in total
    summary = {(r["stage"], r["request"]): r for r in rows if r["kind"] == "summary"}
    for stage in result["stages"]:
        assert int(summary[(stage["name"], "")]["skipped"]) == stage["skipped"]
        for request in stage["by_request"]:
            assert int(summary[(stage["name"], request["name"])]["skipped"]) == request["skipped"]
    (total,) = [r for r in rows if r["kind"] == "total"]
    assert int(total["skipped"]) == result["totals"]["skipped"] == 2 * CODE_ROWS
    data_rows = [{k: r[k] for k in ("table", "rows", "used", "mode", "per", "exhausted")}
                 for r in rows if r["kind"] == "data"]
    users_used = str(result["data"][0]["used"])
    assert data_rows == [
        {"table": "users", "rows": str(USER_ROWS), "used": users_used, "mode": "unique", "per": "vu",
         "exhausted": "false"},
        {"table": "codes", "rows": str(CODE_ROWS), "used": str(CODE_ROWS), "mode": "unique", "per": "iteration",
         "exhausted": "true"}]
    # a plain flow list still gets its one implicit flow row per stage and for the run, and no data rows
    _, plain = csv_table(real_run[0])
    assert [(r["stage"], r["flow"]) for r in plain if r["kind"] == "flow"] == [
        ("warm-up", "default"), ("open", "default"), ("", "default")]
    assert not [r for r in plain if r["kind"] == "data"]


def test_junit_has_a_case_per_flow_and_reports_skipped_steps_and_data(flow_run, tmp_path):
    result, paths = flow_run
    raw = paths["junit"].read_bytes()  # as the CLI wrote it
    _, suite, cases = parse_junit(raw, tmp_path)
    flows = [c for c in cases if c.classname == "runner.flows"]
    assert [c.name for c in flows] == ["shopper", "lost"]
    shopper, lost = flows
    assert shopper.is_passed and "0 of " in shopper.system_out and "skipped steps: 0" in shopper.system_out
    (failure,) = lost.result
    assert isinstance(failure, Failure) and failure.type == "flow"
    assert failure.message == (f"{CODE_ROWS} of {CODE_ROWS} iterations failed (100.00%); "
                               f"{2 * CODE_ROWS} steps skipped after a failed capture")
    assert f"skipped steps: {2 * CODE_ROWS}" in failure.text
    assert suite.tests == len(cases) == len(result["checks"]) + 2  # no thresholds: checks, then flows
    assert suite.failures == sum(not c.is_passed for c in cases) == 1
    props = {p.name: p.value for p in suite.properties()}
    assert props["skipped_steps"] == str(2 * CODE_ROWS)
    assert props["data.users"] == f"{result['data'][0]['used']} of {USER_ROWS} rows used (unique per vu)"
    assert props["data.codes"].startswith(f"{CODE_ROWS} of {CODE_ROWS} rows used (unique per iteration), EXHAUSTED")
    suite_out = ET.fromstring(raw).find("testsuite/system-out").text
    assert "data codes: " in suite_out and "EXHAUSTED" in suite_out and "data users" not in suite_out


def test_junit_leaves_out_the_implicit_flow(real_run, tmp_path):
    _, suite, cases = parse_junit(JUnitReporter().render(real_run[0]), tmp_path)
    assert not [c for c in cases if c.classname == "runner.flows"]
    props = {p.name: p.value for p in suite.properties()}
    assert props["skipped_steps"] == "0" and not [name for name in props if name.startswith("data.")]


def _section(page: str, title: str) -> str:
    match = re.search(rf"<section><h2>{title}</h2>(.*?)</section>", page)
    assert match, title
    return match.group(1)


def test_html_shows_flows_skipped_steps_and_data(flow_run):
    result, paths = flow_run
    page = paths["html"].read_text()  # as the CLI wrote it
    flows = _section(page, "Flows")
    heads = re.findall(r"<th[^>]*>(.*?)</th>", flows)[1:]  # after "flow / stage"
    for name in ("shopper", "lost"):
        block = flow(result, name)
        row = re.search(rf"<tr><td class=\"l\"><b>{name}</b></td>(.*?)</tr>", flows).group(1)
        cells = dict(zip(heads, (re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", row))))
        duration = block["iteration_duration_ms"]
        assert {k: cells[k] for k in ("iterations", "failed", "skipped", "req failed", "iter/s")} == {
            "iterations": f"{block['iterations']:,}", "failed": f"{block['iterations_failed']:,}",
            "skipped": f"{block['skipped']:,}", "req failed": f"{block['failed']:,}",
            "iter/s": f"{block['iterations_per_s']:,.1f}"}
        assert float(cells["p99"]) == pytest.approx(duration["p99"], rel=0.05)
        for stage in result["stages"]:
            assert f'<tr class="sub"><td class="l">{stage["name"]}</td>' in flows
    assert f'<span class="bad">{2 * CODE_ROWS}</span>' in flows  # lost's skipped steps, marked as a problem
    assert "<th>skipped</th>" in _section(page, "Stages")
    assert f"<td class=\"l\">skipped steps</td><td>{2 * CODE_ROWS}</td>" in _section(page, "Totals")
    data = _section(page, "Data")
    users, codes = re.findall(r"<tr><td class='l'><b>(?:users|codes)</b>.*?</tr>", data)
    assert "EXHAUSTED" not in users and f"{result['data'][0]['used']} of {USER_ROWS} rows used" in users
    assert "badge fail'>EXHAUSTED" in codes.replace('"', "'")
    assert f"{CODE_ROWS} of {CODE_ROWS} rows used (unique per iteration)" in codes
    assert page.count("<svg") == 3 and not _NETWORK_REF.search(page)
    # flow and table names come from the scenario: escaped like every other user string
    nasty = copy.deepcopy(result)
    nasty["by_flow"][1]["name"] = nasty["stages"][0]["by_flow"][1]["name"] = NASTY_NAME
    nasty["data"][0]["name"] = NASTY_NAME
    text = HtmlReporter().render(nasty).decode()
    escaped = "<b>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;shop&quot;</b>"
    assert "<script>" not in text
    assert escaped in _section(text, "Flows") and escaped in _section(text, "Data")


def test_html_leaves_out_flows_data_and_skipped_when_there_are_none(real_run):
    page = HtmlReporter().render(real_run[0]).decode()
    assert "<h2>Flows</h2>" not in page and "<h2>Data</h2>" not in page and "skipped" not in page


def test_results_older_than_flows_render_without_them(flow_run, tmp_path):
    old = older(flow_run[0])
    assert not {"by_flow", "data"} & old.keys() and "skipped" not in old["totals"]
    console = ConsoleReporter().render(old).decode()
    assert "  flows " not in console and "skipped" not in console and "  data " not in console
    assert "  stage first " in console  # the rest of the summary is still there
    _, rows = csv_table(old)
    assert not [r for r in rows if r["kind"] in ("flow", "data")]
    assert {r["skipped"] for r in rows} == {""}  # not measured then: empty, not zero
    _, suite, cases = parse_junit(JUnitReporter().render(old), tmp_path)
    assert [c.name for c in cases] == ["run completed"]  # nothing older results could not have
    assert not [p for p in suite.properties() if p.name == "skipped_steps" or p.name.startswith("data.")]
    page = HtmlReporter().render(old).decode()
    assert "<h2>Flows</h2>" not in page and "<h2>Data</h2>" not in page and "skipped" not in page
    assert "<h2>Stages</h2>" in page


def _png_rows(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG into rows of pixel bytes (standard library only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data[pos + 8:pos + 8 + length])
        elif kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (2, 6), header
    bpp = 3 if colour == 2 else 4
    stride, raw = width * bpp, zlib.decompress(b"".join(chunks))
    rows, prior = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride) if kind else ():
            a = line[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            if kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) >> 1
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prior = line
    return width, height, bpp, rows


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not on PATH (install it with: apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(real_run, tmp_path):
    page = tmp_path / "report.html"
    page.write_bytes(real_run[1]["html"].read_bytes())  # as the CLI wrote it
    shot = tmp_path / "shot.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
         page.as_uri()],
        check=True, timeout=120, capture_output=True,
    )
    data = shot.read_bytes()
    assert len(data) > 20_000
    width, height, bpp, rows = _png_rows(data)
    assert (width, height) == (1280, 2000)
    sampled = [rows[y] for y in range(0, height, 50)]
    assert len(set(sampled)) > 20  # many different rows: text, tables and charts, not a blank page
    pixels = {row[x:x + 3] for row in sampled for x in range(0, len(row), bpp)}
    assert len(pixels) > 50
    teal = bytes((0x0D, 0x94, 0x88))  # the requests/s line: proves the inline SVG charts were drawn
    assert any(_has_pixel(row, teal, bpp) for row in rows)


def _has_pixel(row: bytes, rgb: bytes, bpp: int) -> bool:
    at = row.find(rgb)
    while at != -1:
        if at % bpp == 0:
            return True
        at = row.find(rgb, at + 1)
    return False
