"""Timing phases (connect, tls, ttfb, receive): in the result, in thresholds, in every reporter.

Most tests build a result from hand-filled :class:`RequestStats`, so every
count and quantile is known in advance: the phase histograms are the same
mergeable histograms as latency, and their quantiles must be within
``RELATIVE_ERROR`` of the exact nearest-rank value of the raw samples. One
test runs a real scenario against the built-in target, to see the phases the
virtual users record reach the result and agree with its counts.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import random
import re
import xml.etree.ElementTree as ET

import orjson
import pytest

from runner.reporters.console import ConsoleReporter
from runner.reporters.csv import COLUMNS, PHASE_COLUMNS, CsvReporter
from runner.reporters.html import HtmlReporter
from runner.reporters.junit import JUnitReporter
from runner.cli import main
from runner.compare import compare, parse_limit, render_comparison
from runner.metrics.histogram import RELATIVE_ERROR
from runner.metrics.quantiles import LATENCY_KEYS, QUANTILES
from runner.metrics.recorder import PHASES, RequestStats
from runner.result import RunResult, StageResult, generator_verdict
from runner.schemas.thresholds import Threshold, parse_threshold

from .conftest import REPO, schema_errors, write_scenario

HEALTH = {"cpu_s": 0.5, "cpu_percent": 10.0, "loop_lag_ms": {"p50": 0.1, "p99": 0.5, "max": 1.0},
          "event_loop": "uvloop", "peak_rss_mb": 40.0}


def exact(values: list[int], q: float) -> float:
    """Nearest-rank quantile of raw samples (µs), the definition the histogram approximates."""
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(q * len(ordered))) - 1])


def filled(seed: int, requests: int, connections: int, tls: int) -> tuple[RequestStats, dict[str, list[int]]]:
    """A RequestStats with ``requests`` ok responses and known phase values; also the raw values."""
    rng = random.Random(seed)
    stats = RequestStats()
    raw = {
        "connect": [rng.randint(200, 5_000) for _ in range(connections)],
        "tls": [rng.randint(2_000, 40_000) for _ in range(tls)],
        "ttfb": [rng.randint(500, 250_000) for _ in range(requests)],
        "receive": [rng.randint(1, 9_000) for _ in range(requests)],
    }
    for index in range(requests):
        stats.judged(200, 100, raw["ttfb"][index] + raw["receive"][index], -1, True)
    for phase, values in raw.items():
        for value in values:
            getattr(stats, phase).record(value)
    return stats, raw


def stage(index: int, name: str, parts: list[tuple[str, RequestStats]]) -> StageResult:
    return StageResult(index=index, name=name, model="closed", concurrency=4, planned_requests=None,
                       planned_duration_s=1.0, requested_rate=None, started_at=1_800_000_000.0 + index,
                       duration_s=1.0, by_request=parts, totals=RequestStats.merged([s for _, s in parts]),
                       series=[], interval_s=1.0)


def thresholds(*texts: str) -> tuple[Threshold, ...]:
    return tuple(Threshold(**parse_threshold(text)) for text in texts)


def build(*texts: str, https: bool = True) -> tuple[dict, dict[str, dict[str, list[int]]]]:
    """Two stages, two request names; returns the result dict and the raw phase values per stage/request."""
    home, raw_home = filled(1, 400, 4, 4 if https else 0)
    api, raw_api = filled(2, 300, 2, 2 if https else 0)
    later, raw_later = filled(3, 500, 1, 1 if https else 0)
    stages = [stage(0, "warm", [("home", home), ("api", api)]), stage(1, "steady", [("home", later)])]
    totals = RequestStats.merged([s.totals for s in stages])
    by_request = [("home", RequestStats.merged([home, later])), ("api", RequestStats.merged([api]))]
    result = RunResult(scenario="phases", source="phases.yaml", target="https://127.0.0.1:1", engine="fast",
                       engine_reason="test", started_at=1_800_000_000.0, finished_at=1_800_000_002.0,
                       duration_s=2.0, stages=stages, totals=totals, by_request=by_request, runner_version="test",
                       generator=generator_verdict(stages, [HEALTH]), thresholds=thresholds(*texts),
                       threshold_sources=tuple(f"phases.yaml:{10 + i}" for i in range(len(texts))))
    raw = {"warm/home": raw_home, "warm/api": raw_api, "steady/home": raw_later}
    return result.to_dict(), raw


def union(raw: dict[str, dict[str, list[int]]], *keys: str) -> dict[str, list[int]]:
    return {phase: [v for key in keys for v in raw[key][phase]] for phase in PHASES}


def assert_phases_match(phases: dict, values: dict[str, list[int]]) -> None:
    assert list(phases) == list(PHASES)
    for phase in PHASES:
        block, samples = phases[phase], values[phase]
        assert list(block) == ["count", *LATENCY_KEYS]
        assert block["count"] == len(samples), phase
        if not samples:
            assert set(block.values()) == {0}, phase
            continue
        assert block["min"] == pytest.approx(min(samples) / 1000, abs=0.0005)
        assert block["max"] == pytest.approx(max(samples) / 1000, abs=0.0005)
        assert block["mean"] == pytest.approx(sum(samples) / len(samples) / 1000, abs=0.0005)
        for key, q in QUANTILES:
            truth = exact(samples, q) / 1000
            # the histogram's bound, plus the result's rounding to the µs
            assert abs(block[key] - truth) <= truth * RELATIVE_ERROR + 0.0005, (phase, key, block[key], truth)


# --- the result ----------------------------------------------------------------------------------------------


def test_every_summary_block_has_phases_with_counts_and_quantiles_of_its_own_values():
    result, raw = build()
    warm, steady = result["stages"]
    assert_phases_match(warm["by_request"][0]["phases_ms"], raw["warm/home"])
    assert_phases_match(warm["by_request"][1]["phases_ms"], raw["warm/api"])
    assert_phases_match(warm["phases_ms"], union(raw, "warm/home", "warm/api"))
    assert_phases_match(steady["phases_ms"], raw["steady/home"])
    assert_phases_match(result["totals"]["phases_ms"], union(raw, *raw))
    home = next(b for b in result["by_request"] if b["name"] == "home")
    assert_phases_match(home["phases_ms"], union(raw, "warm/home", "steady/home"))
    # connect and tls count connections (7 in all), ttfb and receive responses (1,200)
    counts = {phase: result["totals"]["phases_ms"][phase]["count"] for phase in PHASES}
    assert counts == {"connect": 7, "tls": 7, "ttfb": 1200, "receive": 1200}
    assert result["totals"]["requests"] == 1200


def test_merged_counts_add_up_exactly_across_stages_and_request_names():
    result, _ = build()
    for phase in PHASES:
        stages = sum(s["phases_ms"][phase]["count"] for s in result["stages"])
        requests = sum(r["phases_ms"][phase]["count"] for r in result["by_request"])
        assert result["totals"]["phases_ms"][phase]["count"] == stages == requests, phase
        for block in result["stages"]:
            assert block["phases_ms"][phase]["count"] == sum(r["phases_ms"][phase]["count"]
                                                             for r in block["by_request"])


def test_a_plain_http_run_reports_tls_as_empty_not_as_a_measurement():
    result, _ = build(https=False)
    tls = result["totals"]["phases_ms"]["tls"]
    assert tls["count"] == 0 and tls["p95"] == 0 and result["totals"]["phases_ms"]["connect"]["count"] == 7


def test_the_published_schema_describes_phases_and_rejects_drift_in_them():
    result, _ = build("p95(ttfb) < 200ms")
    assert schema_errors(result) == []
    broken = copy.deepcopy(result)
    del broken["totals"]["phases_ms"]["ttfb"]["count"]
    broken["stages"][0]["phases_ms"]["dns"] = broken["stages"][0]["phases_ms"]["connect"]
    broken["stages"][1]["phases_ms"]["tls"]["p95"] = "fast"
    errors = schema_errors(broken)
    assert any(e.startswith("totals/phases_ms/ttfb: 'count' is a required property") for e in errors), errors
    assert any(e.startswith("stages/0/phases_ms: Additional properties") and "'dns'" in e for e in errors), errors
    assert any(e.startswith("stages/1/phases_ms/tls/p95: 'fast' is not of type 'number'") for e in errors), errors
    # a result written before phases existed still validates: the field is optional
    older = copy.deepcopy(result)
    for block in [older["totals"], *older["by_request"], *older["stages"],
                  *(r for s in older["stages"] for r in s["by_request"])]:
        del block["phases_ms"]
    assert schema_errors(older) == []


# --- thresholds ------------------------------------------------------------------------------------------------


def outcome(result: dict, expression: str) -> dict:
    return next(t for t in result["thresholds"] if t["expression"] == expression)


def test_a_ttfb_threshold_passes_and_fails_on_the_phase_not_on_the_latency():
    result, raw = build("p95(ttfb) < 300ms", "p95(ttfb) < 200ms", "stage:steady p99(receive) <= 9s",
                        "request:api max(connect) < 0.9", "mean(tls) > 1ms", "p95 < 200ms")
    ttfb_p95 = result["totals"]["phases_ms"]["ttfb"]["p95"]
    assert 200 < ttfb_p95 < 300  # the hand-made values put it between the two limits
    passing, failing = outcome(result, "p95(ttfb) < 300ms"), outcome(result, "p95(ttfb) < 200ms")
    assert passing["passed"] and not failing["passed"]
    assert passing["actual"] == failing["actual"] == ttfb_p95
    assert (failing["metric"], failing["phase"], failing["unit"], failing["reason"]) == ("p95(ttfb)", "ttfb", "ms",
                                                                                         None)
    assert result["totals"]["latency_ms"]["p95"] != ttfb_p95  # a phase threshold does not read the latency
    receive = outcome(result, "stage:steady p99(receive) <= 9s")
    assert receive["passed"] and receive["actual"] == result["stages"][1]["phases_ms"]["receive"]["p99"]
    connect = outcome(result, "request:api max(connect) < 0.9")
    assert connect["actual"] == max(raw["warm/api"]["connect"]) / 1000 and not connect["passed"]
    assert outcome(result, "mean(tls) > 1ms")["passed"]
    latency = outcome(result, "p95 < 200ms")
    assert latency["metric"] == "p95" and latency["phase"] is None
    assert result["passed"] is False


def test_a_phase_without_values_fails_with_no_data():
    result, _ = build("p95(tls) < 1s", "max(tls) >= 0ms", "p95(ttfb) < 1h", https=False)
    for expression in ("p95(tls) < 1s", "max(tls) >= 0ms"):  # 0 ms would pass both: it must not be judged
        row = outcome(result, expression)
        assert row["passed"] is False and row["actual"] is None
        assert row["reason"] == "no data: no TLS handshake, no https connection was opened"
    assert outcome(result, "p95(ttfb) < 1h")["passed"]
    text = ConsoleReporter().render(result).decode()
    assert "FAIL  p95(tls) < 1s" in text and "measured no data: no TLS handshake" in text


def test_a_result_saved_before_phases_fails_phase_thresholds_with_no_data():
    from runner.thresholds import evaluate

    result, _ = build()
    del result["totals"]["phases_ms"]
    (row,) = evaluate(result, thresholds("p95(ttfb) < 1h"))
    assert row["passed"] is False and row["reason"].startswith("no data: this result has no timing phases")


@pytest.mark.parametrize("text, message", [
    ("p95(ttfb) < 200ms for 10s", "a phase cannot be followed over a window"),
    ("flow:default p95(ttfb) < 200ms", "phases are kept per request"),
    ("p95(dns) < 1s", "unknown phase 'dns'; use one of connect, tls, ttfb, receive"),
    ("p95(http_req_waiting) < 1s", "k6's http_req_waiting is ttfb here"),
    ("rps(ttfb) > 5", "a phase takes a latency statistic"),
    ("ttfb < 200ms", "a phase takes a statistic: write e.g. 'p95(ttfb) < 200ms'"),
    ("p95(ttfb) < 5%", "threshold 'p95(ttfb) < 5%'"),
])
def test_phase_threshold_mistakes_are_refused_with_a_reason(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_threshold(text)


def test_phase_threshold_mistakes_are_load_errors_with_file_and_line(tmp_path, capsys):
    path = write_scenario(tmp_path, """\
version: 1
name: phase-typos
target: builtin
flow: [{name: page, path: /}]
stages: [{name: steady, requests: 10, concurrency: 1}]
thresholds:
  - p95(ttfb) < 200ms
  - stage:steady p99(connect) < 1s
  - request:page max(receive) < 1s
  - p95(ttfb) < 200ms for 10s
  - flow:default p95(ttfb) < 2s
  - p95(dns) < 1s
  - ttfb < 200ms
  - request:pgae p95(ttfb) < 1s
""")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert all(f"{path}:{line}:" not in err for line in (7, 8, 9)), err  # valid phase thresholds
    assert f"{path}:10:" in err and "a phase cannot be followed over a window" in err
    assert f"{path}:11:" in err and "phases are kept per request" in err
    assert f"{path}:12:" in err and "unknown phase 'dns'" in err
    assert f"{path}:13:" in err and "write e.g. 'p95(ttfb) < 200ms'" in err
    assert f"{path}:14:" in err and "no request named 'pgae'" in err
    assert "Traceback" not in err


# --- reporters -------------------------------------------------------------------------------------------------


def test_console_shows_a_phases_table_per_stage_and_for_the_run():
    result, _ = build(https=False)
    lines = ConsoleReporter().render(result).decode().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  phases p50/p99 ms"))
    assert lines[start].split()[3:] == ["connections", "connect", "tls", "ttfb", "receive"]
    rows = lines[start + 1:start + 4]
    for row, block in zip(rows, [*result["stages"], result["totals"]]):
        label = "total" if block is result["totals"] else f"stage {block['name']}"
        phases = block["phases_ms"]
        assert row.split() == [*label.split(), str(phases["connect"]["count"]),
                               f"{phases['connect']['p50']:.2f}/{phases['connect']['p99']:.2f}", "–",
                               f"{phases['ttfb']['p50']:.2f}/{phases['ttfb']['p99']:.2f}",
                               f"{phases['receive']['p50']:.2f}/{phases['receive']['p99']:.2f}"], row
        assert len(row) == len(lines[start])
    assert lines[start + 4] == ""


def test_csv_appends_phase_columns_with_counts_and_percentiles():
    result, _ = build(https=False)
    raw = CsvReporter().render(result).decode()
    header = raw.split("\n", 1)[0].split(",")
    assert header == list(COLUMNS) and header[-len(PHASE_COLUMNS):] == list(PHASE_COLUMNS)
    assert header.index("exhausted") == len(COLUMNS) - len(PHASE_COLUMNS) - 1  # older columns kept their places
    rows = list(csv.DictReader(io.StringIO(raw)))
    (total,) = [r for r in rows if r["kind"] == "total"]
    phases = result["totals"]["phases_ms"]
    for phase in PHASES:
        assert int(total[f"{phase}_count"]) == phases[phase]["count"]
    for key in ("p50", "p95", "p99"):
        assert float(total[f"ttfb_{key}_ms"]) == phases["ttfb"][key]
        assert float(total[f"connect_{key}_ms"]) == phases["connect"][key]
        assert total[f"tls_{key}_ms"] == ""  # no value is an empty cell, never 0
    request = next(r for r in rows if r["kind"] == "summary" and r["stage"] == "warm" and r["request"] == "api")
    assert float(request["receive_p95_ms"]) == result["stages"][0]["by_request"][1]["phases_ms"]["receive"]["p95"]
    for row in rows:
        if row["kind"] not in ("summary", "total"):
            assert all(row[column] == "" for column in PHASE_COLUMNS), row


def test_junit_carries_the_phases_as_properties():
    result, _ = build()
    suite = ET.fromstring(JUnitReporter().render(result)).find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    ttfb = result["totals"]["phases_ms"]["ttfb"]
    assert props["phases.ttfb"].startswith(f"p50 {ttfb['p50']:,.3f}".rstrip("0").rstrip(".") + " ms")
    assert props["phases.ttfb"].endswith("(1,200 responses)")
    assert props["phases.connect"].endswith("(7 connections opened)")
    assert props["stage.steady.phases.tls"].endswith("(1 connection opened)")
    assert {f"stage.{s}.phases.{p}" for s in ("warm", "steady") for p in PHASES} <= props.keys()
    plain, _ = build(https=False)
    suite = ET.fromstring(JUnitReporter().render(plain)).find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["phases.tls"] == "no value (0 connections opened)"


def test_html_has_a_phases_table_per_stage_and_total():
    result, _ = build(https=False)
    page = HtmlReporter().render(result).decode()
    section = re.search(r"<section><h2>Timing phases</h2>(.*?)</section>", page, re.S)
    assert section, "no phases section"
    body = section.group(1)
    assert [m for m in re.findall(r"<b>([^<]+)</b></td>", body)] == ["warm", "steady", "total"]
    assert body.count(">ttfb</td>") == 3 and body.count(">tls</td>") == 3
    assert ">1,200</td>" in body  # the run's ttfb count
    assert "http_req_waiting" in body and "connections opened" in body


def test_every_reporter_leaves_phases_out_of_results_that_have_none():
    result, _ = build()
    for block in [result["totals"], *result["by_request"], *result["stages"],
                  *(r for s in result["stages"] for r in s["by_request"])]:
        del block["phases_ms"]
    assert "phases p50/p99" not in ConsoleReporter().render(result).decode()
    assert "Timing phases" not in HtmlReporter().render(result).decode()
    junit = JUnitReporter().render(result)
    assert b'name="phases.' not in junit and b'.phases.' not in junit
    rows = list(csv.DictReader(io.StringIO(CsvReporter().render(result).decode())))
    assert all(row[column] == "" for row in rows for column in PHASE_COLUMNS)


# --- compare ---------------------------------------------------------------------------------------------------


def test_compare_judges_a_phase_when_asked_and_not_by_default():
    baseline, _ = build()
    current = copy.deepcopy(baseline)
    current["totals"]["phases_ms"]["ttfb"]["p95"] *= 1.25
    assert parse_limit("p95(ttfb)=10%") == ("p95(ttfb)", pytest.approx(0.10))
    comparison = compare(baseline, current, dict([parse_limit("p95(ttfb)=10%")]))
    assert {(r.scope, r.metric) for r in comparison.rows if r.regressed} == {("total", "p95(ttfb)")}
    assert "p95(ttfb)" in render_comparison(comparison)
    assert not compare(baseline, current).regressed  # the default limits do not include phases
    with pytest.raises(ValueError, match="unknown metric 'p95\\(dns\\)'"):
        parse_limit("p95(dns)=10%")
    plain, _ = build(https=False)
    missing = compare(baseline, plain, {"p95(tls)": 0.1})
    assert missing.regressed and all(r.note == "NO DATA in the current run" for r in missing.rows)


# --- a real run ------------------------------------------------------------------------------------------------


def test_a_real_run_reports_phases_that_agree_with_its_counts(builtin_target, tmp_path):
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: real-phases
target: {builtin_target.url}
flow:
  - name: page
    path: /page/{{seq}}
stages:
  - {{name: first, requests: 300, concurrency: 3}}
thresholds:
  - p95(ttfb) < 10s
  - p95(tls) < 10s
""")
    out = tmp_path / "result.json"
    assert main(["run", str(scenario), "--quiet", "--out", f"json={out}"]) == 1  # p95(tls): no data on http
    result = orjson.loads(out.read_bytes())
    phases = result["totals"]["phases_ms"]
    assert phases["ttfb"]["count"] == phases["receive"]["count"] == result["totals"]["requests"] == 300
    assert 1 <= phases["connect"]["count"] <= 3 and phases["tls"]["count"] == 0
    assert 0 < phases["ttfb"]["p50"] <= result["totals"]["latency_ms"]["p99"]
    verdicts = {t["expression"]: (t["passed"], t["reason"]) for t in result["thresholds"]}
    assert verdicts == {"p95(ttfb) < 10s": (True, None),
                        "p95(tls) < 10s": (False, "no data: no TLS handshake, no https connection was opened")}


def test_the_scenario_schema_lets_editors_accept_phase_thresholds():
    """The YAML language server checks thresholds against this pattern: it must not flag valid phases."""
    schema = orjson.loads((REPO / "schemas" / "scenario.schema.json").read_bytes())
    pattern = re.compile(schema["properties"]["thresholds"]["items"]["pattern"])
    for text in ("p95(ttfb) < 200ms", "stage:steady max( connect ) <= 1s", "p95 < 1s", "p99 < 1s for 10s"):
        assert pattern.search(text), text
    assert not pattern.search("p95(ttfb < 200ms")
