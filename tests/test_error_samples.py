"""Error samples: what the failures of each class said, kept bounded, merged and scrubbed.

Failures come from real loopback servers (the built-in target's fault paths)
or, for exceptions no engine expects, from a path renderer that raises inside
a real engine's ``send``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from urllib.parse import quote, quote_plus

import orjson
import pytest

from runner.cli import main
from runner.templates import Template
from runner.compile import compile_scenario
from runner.engines import TransportError
from runner.loader import load_scenario
from runner.metrics.recorder import ERROR_SAMPLE_CHARS, ERROR_SAMPLES_PER_CLASS, RequestStats
from runner.result import scrub_error_samples

from .conftest import run_plan, write_scenario


# -- the recorder -------------------------------------------------------------------------------


def test_first_distinct_messages_are_kept_per_class_and_no_more():
    stats = RequestStats()
    for n in range(20):
        stats.failure("reset", 10, TransportError("reset", f"reset number {n % 7}"))
        stats.failure("other", 10, TransportError("other", "always the same"))
    assert stats.error_samples == {
        "reset": [f"reset number {n}" for n in range(ERROR_SAMPLES_PER_CLASS)],
        "other": ["always the same"],
    }
    assert stats.errors == {"reset": 20, "other": 20}


def test_unexpected_exceptions_say_their_type_and_messages_are_cut():
    stats = RequestStats()
    stats.failure("other", 10, ZeroDivisionError("division by zero"))
    stats.failure("other", 10, TimeoutError())
    stats.failure("other", 10, ValueError("x" * 1000))
    stats.failure("reset", 10, TransportError("reset"))  # no detail: nothing to add to the count
    stats.failure("cut_off", 10)  # no exception at all
    first, second, third = stats.error_samples["other"]
    assert (first, second) == ("ZeroDivisionError: division by zero", "TimeoutError")
    assert third.startswith("ValueError: xxx") and len(third) == ERROR_SAMPLE_CHARS
    assert set(stats.error_samples) == {"other"}


def test_success_records_no_sample_and_merges_stay_bounded_and_ordered():
    a, b = RequestStats(), RequestStats()
    a.response(200, 10, 5)
    assert a.error_samples == {}
    a.failure("reset", 1, TransportError("reset", "a1"))
    a.failure("reset", 1, TransportError("reset", "a2"))
    for n in range(ERROR_SAMPLES_PER_CLASS):
        b.timed_failure("reset", 1, 1, TransportError("reset", f"b{n}"))
    b.timed_failure("dns", 1, 1, TransportError("dns", "gaierror: no such host"))
    merged = RequestStats.merged([a, b, a])
    assert merged.error_samples == {"reset": ["a1", "a2", "b0", "b1", "b2"], "dns": ["gaierror: no such host"]}
    assert a.error_samples == {"reset": ["a1", "a2"]}  # merging never changes a part


# -- through the executor, on real engines ------------------------------------------------------


def render_or_fail(user) -> str:
    """Every third path cannot be rendered: an exception no engine expects, raised inside send."""
    if user.seq % 3 == 2:
        raise LookupError(f"no page for seq {user.seq}")
    return f"/page/{user.seq}"


@pytest.mark.parametrize("engine", ["fast", "aiohttp"])
@pytest.mark.parametrize("stage", ["{requests: 30, concurrency: 3}", "{rate: 300/s, requests: 30}"])
def test_an_exception_counted_as_other_keeps_its_message(tmp_path, builtin_target, engine, stage):
    file = write_scenario(tmp_path, f"""\
version: 1
name: other
target: {builtin_target.url}
engine: {engine}
flow: [{{path: "/page/{{seq}}"}}]
stages: [{stage}]
""")
    plan = compile_scenario(load_scenario(file), file)
    request = dataclasses.replace(plan.flow[0], target=Template("/page/{seq}", (render_or_fail,)), is_static=False)
    totals, _ = run_plan(dataclasses.replace(plan, flow=(request,)), builtin_target.url)
    assert totals.errors == {"other": 10} and totals.ok == 20
    samples = totals.error_samples["other"]
    assert len(samples) == ERROR_SAMPLES_PER_CLASS
    assert all(s.startswith("LookupError: no page for seq ") for s in samples)
    assert len(set(samples)) == len(samples)


# -- in the result, the report and the console --------------------------------------------------


def test_samples_at_every_level_merged_across_worker_processes(tmp_path, builtin_target, capfd):
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: samples
target: {builtin_target.url}
workers: 2
defaults: {{timeout: 2s}}
flow:
  - {{name: resets, path: /fault/reset}}
  - {{name: garbage, path: "/fault/malformed-status?n={{seq}}"}}
  - {{name: fine, path: /}}
stages:
  - {{name: one, requests: 12, concurrency: 2}}
  - {{name: two, requests: 12, concurrency: 2}}
""")
    out = tmp_path / "result.json"
    assert main(["run", str(scenario), "--out", f"json={out}"]) == 0
    console = capfd.readouterr().out
    data = orjson.loads(out.read_bytes())
    assert data["generator"]["processes"] == 2
    expected = {"reset": ["ConnectionResetError: [Errno 104] Connection reset by peer"],
                "protocol_error": ["Invalid status code"]}
    assert data["totals"]["error_samples"] == expected
    for stage in data["stages"]:
        assert stage["error_samples"] == expected
        by_name = {r["name"]: r["error_samples"] for r in stage["by_request"]}
        assert by_name == {"resets": {"reset": expected["reset"]},
                           "garbage": {"protocol_error": expected["protocol_error"]}, "fine": {}}
    assert {r["name"]: r["error_samples"] for r in data["by_request"]}["resets"] == {"reset": expected["reset"]}
    after_errors = console[console.index("  errors: "):]
    assert re.search(r"\n    protocol_error: +Invalid status code\n", after_errors)
    assert re.search(r"\n    reset: +ConnectionResetError: \[Errno 104\] Connection reset by peer\n", after_errors)


def test_console_shows_a_few_samples_briefly(tmp_path):
    from runner.reporters.console import ConsoleReporter

    stats = RequestStats()
    for n in range(ERROR_SAMPLES_PER_CLASS):
        stats.failure("other", 1, RuntimeError(f"line one {n}\nline two " + "y" * 300))
    from runner.result import summary_block

    block = summary_block(stats, 1.0)
    document = {"runner_version": "x", "scenario": {"name": "s", "source": "s.yaml"}, "target": "t",
                "engine": {"name": "fast", "reason": "r"}, "interrupted": False, "stages": [], "totals": block,
                "generator": {"verdict": "ok", "peak_rss_mb": 1, "cpu_s": 0, "processes": 1,
                              "loop_lag_p99_ms": 0, "event_loop": "uvloop", "reasons": []}, "notes": []}
    text = ConsoleReporter().render(document).decode()
    shown = [line for line in text.splitlines() if "RuntimeError" in line]
    assert len(shown) == 2 and shown[0].lstrip().startswith("other:")
    assert all("line one" in line and "line two" in line and len(line) < 130 for line in shown)
    assert "(+3 more distinct messages)" in text


# -- secrets ------------------------------------------------------------------------------------

SECRET = 'tok en/é"x'


def test_a_secret_is_masked_in_samples_even_when_percent_encoded():
    stats = RequestStats()
    for message in (f"raw {SECRET} here", f"url='http://h/p?t={quote_plus(SECRET)}'",
                    f"path /{quote(SECRET)}/x", "nothing secret"):
        stats.failure("other", 1, TransportError("other", message))
    scrub_error_samples(stats, (SECRET,))
    samples = stats.error_samples["other"]
    assert samples == ["raw *** here", "url='http://h/p?t=***'", "path /***/x", "nothing secret"]


def test_no_secret_reaches_a_report_through_an_error_message(tmp_path, builtin_target, monkeypatch):
    # aiohttp puts the request URL into a protocol error's text; the secret is in the query string.
    monkeypatch.setenv("RUNNER_SAMPLE_TOKEN", SECRET)
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: secret-samples
target: {builtin_target.url}
engine: aiohttp
flow: [{{path: "/fault/malformed-status?token=${{env:RUNNER_SAMPLE_TOKEN}}&n={{seq}}"}}]
stages: [{{requests: 8, concurrency: 2}}]
""")
    outputs = {name: tmp_path / f"result.{name}" for name in ("json", "console", "csv", "html", "junit")}
    code = main(["run", str(scenario), "--quiet", *[f"--out={n}={p}" for n, p in outputs.items()]])
    assert code == 3
    data = orjson.loads(outputs["json"].read_bytes())
    assert data["totals"]["errors"] == {"protocol_error": 8}
    samples = data["totals"]["error_samples"]["protocol_error"]
    assert len(samples) == 1, samples  # the URL (with {seq}) is not part of the message
    forms = {SECRET, quote(SECRET), quote_plus(SECRET), quote(SECRET, safe=""), "tok+en", "tok%20en", "tok en"}
    for path in outputs.values():
        written = path.read_bytes().decode()
        assert not [form for form in forms if form in written], path
    assert "RUNNER_SAMPLE_TOKEN" in os.environ
