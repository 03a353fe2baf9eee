"""CSV, JUnit and HTML reporters on real results from runs against the built-in target.

The scenario below produces every kind of row a reporter must handle from a
real run: ok responses, HTTP failures (503), transport errors (timeouts),
dropped arrivals (open stage), passing and failing checks and thresholds
(one of them windowed). Only what a run cannot produce on demand -- an
interrupted or aborted run, a threshold with no data, results from before
thresholds existed -- is made by editing a copy of a real result.
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
import zlib
from pathlib import Path

import orjson
import pytest
from junitparser import Error, Failure, JUnitXml

from reporters.base import available_reporters
from reporters.csv import COLUMNS, CsvReporter
from reporters.html import HtmlReporter
from reporters.junit import JUnitReporter
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

NEWER_KEYS = ("passed", "thresholds", "checks", "aborted")


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
    """The result as written before thresholds and checks existed."""
    data = copy.deepcopy(result)
    for key in NEWER_KEYS:
        data.pop(key, None)
    blocks = [data["totals"], *data["by_request"]]
    for stage in data["stages"]:
        stage.pop("checks", None)
        blocks += [stage, *stage["by_request"]]
        for interval in stage["timeseries"]:
            interval["latency_ms"].pop("p95", None)
            interval["latency_ms"].pop("p999", None)
    for block in blocks:
        block.pop("checks", None)
    return data


# --- registry ----------------------------------------------------------------------------------------------------


def test_new_reporters_are_registered_builtin_and_as_entry_points():
    found = available_reporters()
    assert {"csv": CsvReporter, "junit": JUnitReporter, "html": HtmlReporter}.items() <= found.items()
    table = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["runner.reporters"]
    assert table["csv"] == "reporters.csv:CsvReporter"
    assert table["junit"] == "reporters.junit:JUnitReporter"
    assert table["html"] == "reporters.html:HtmlReporter"


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
    assert kinds == sorted(kinds, key=["summary", "total", "timeseries"].index)


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
        for reporter in (CsvReporter(), JUnitReporter(), HtmlReporter()):
            assert reporter.render(data)
    assert "NO VERDICT" in HtmlReporter().render(old).decode()
    rows = list(csv.DictReader(io.StringIO(CsvReporter().render(old).decode())))
    assert {r["p95_ms"] for r in rows if r["kind"] == "timeseries"} == {""}


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
