"""Exit codes and error classes: what a run ends with when the target or a worker misbehaves.

Every run here goes to the built-in target (its ``/fault/<kind>`` paths) or a
loopback port; the unreachable-network classes are checked on the classifier
functions themselves, so no packet ever leaves the machine.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import socket
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp.client_reqrep import ConnectionKey

from runner import cli
from runner.cli import main
from runner.engines import ERROR_CLASSES
from runner.engines.aiohttp_engine import classify
from runner.engines.fast import _error_class_for_connect, _error_class_for_lost
from runner.executor import CUT_OFF
from runner.vu import CAPTURE_FAILED

from .conftest import write_scenario

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()

FAULT_RUN = """\
version: 1
name: faults
target: {target}
engine: {engine}
workers: {workers}
defaults: {{timeout: 300ms}}
flow: {flow}
stages: [{{requests: {requests}, concurrency: 2}}]
"""


def run_json(tmp_path, text: str, *extra: str) -> tuple[int, dict]:
    scenario = write_scenario(tmp_path, text)
    out = tmp_path / "result.json"
    code = main(["run", str(scenario), "--quiet", "--out", f"json={out}", *extra])
    return code, orjson.loads(out.read_bytes())  # (conftest checks every result against the schema)


# -- exit 3: no request got an HTTP response, whatever the error class --------------------------


@pytest.mark.parametrize("engine,fault,error_class", [
    ("fast", "reset", "reset"),
    ("aiohttp", "reset", "reset"),
    ("fast", "hang", "read_timeout"),
    ("aiohttp", "hang", "read_timeout"),
    ("fast", "short-body", "closed_early"),
    ("fast", "malformed-status", "protocol_error"),
])
def test_no_http_response_at_all_exits_3(tmp_path, builtin_target, engine, fault, error_class):
    code, data = run_json(tmp_path, FAULT_RUN.format(
        target=builtin_target.url, engine=engine, workers=1, flow=f"[{{path: /fault/{fault}}}]", requests=6))
    assert data["totals"]["errors"] == {error_class: 6}
    assert data["totals"]["status_codes"] == {}
    assert code == 3


def test_one_http_response_is_enough_to_not_exit_3(tmp_path, builtin_target):
    code, data = run_json(tmp_path, FAULT_RUN.format(
        target=builtin_target.url, engine="fast", workers=1,
        flow="[{path: /fault/reset}, {path: /}]", requests=6))
    totals = data["totals"]
    assert set(totals["errors"]) == {"reset"} and set(totals["status_codes"]) == {"200"}  # each worker alternates
    assert totals["errors"]["reset"] + totals["status_codes"]["200"] == 6
    assert code == 0


def test_interrupted_wins_over_no_response():
    document = {"interrupted": True, "interrupt_signal": "SIGTERM", "passed": True,
                "totals": {"requests": 4, "status_codes": {}, "errors": {"reset": 4}}}
    assert cli.exit_code_for(document) == 143
    document["interrupted"] = False
    assert cli.exit_code_for(document) == 3
    document["totals"] = {"requests": 0, "status_codes": {}, "errors": {}}
    assert cli.exit_code_for(document) == 0  # nothing was sent (e.g. every arrival dropped): not "unreachable"


# -- worker processes: errors come back as what they are ----------------------------------------


def test_usage_error_in_a_worker_exits_2_with_its_message(tmp_path, capfd):
    # validate catches every scenario the engines refuse, so a worker meets a usage error only when
    # handed a base URL the plan was not checked against: engine: fast refuses an ftp URL when the
    # engine is built, inside each worker process; no connection is ever attempted.
    scenario = write_scenario(tmp_path, FAULT_RUN.format(
        target="http://127.0.0.1:9", engine="fast", workers=2, flow="[{path: /}]", requests=4))
    from runner.compile import compile_scenario
    from runner.executor import RunControl
    from runner.launch import WorkerFailed, _run_processes
    from runner.loader import load_scenario

    plan = compile_scenario(load_scenario(scenario), scenario)
    with pytest.raises(WorkerFailed) as failed:
        _run_processes(plan, "ftp://127.0.0.1:9", RunControl())
    assert failed.value.exit_code == 2 and failed.value.trace is None
    assert str(failed.value).startswith("the fast engine does not support ftp targets")
    assert "Traceback" not in capfd.readouterr().err


def _plan_with_a_broken_flow_index(real_compile):
    """Compile for real, then break an invariant the fast engine checks in each worker: a bug."""
    def compile_scenario(scenario, source):
        plan = real_compile(scenario, source)
        broken = dataclasses.replace(plan.flow[0], index=7)
        return dataclasses.replace(plan, flow=(broken,))
    return compile_scenario


def test_bug_in_a_worker_exits_70_with_the_workers_trace(tmp_path, builtin_target, capfd, monkeypatch):
    import runner.compile

    monkeypatch.setattr(runner.compile, "compile_scenario",
                        _plan_with_a_broken_flow_index(runner.compile.compile_scenario))
    scenario = write_scenario(tmp_path, FAULT_RUN.format(
        target=builtin_target.url, engine="fast", workers=2, flow="[{path: /}]", requests=4))
    code = main(["run", str(scenario), "--quiet"])
    err = capfd.readouterr().err
    assert code == 70
    assert "EOFError" not in err
    # the worker's own trace, printed once by the parent, down to the frame that raised
    assert err.count("Traceback (most recent call last)") == 1
    assert re.search(r'runner/engines/fast/engine\.py", line \d+, in __init__', err)
    assert "ValueError: plan.flow indexes must be 0..n-1 in order" in err
    assert "runner-worker-" in err and "internal error" in err


def exit_without_reporting(connection) -> None:
    """A worker that dies holding its pipe open (as when the OOM killer strikes): no report, no error."""
    os._exit(9)


def test_a_worker_that_dies_without_reporting_is_named_with_its_exit_code():
    import multiprocessing

    from runner.launch import WorkerFailed, _collect_reports

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=exit_without_reporting, args=(sender,), name="runner-worker-0", daemon=True)
    process.start()
    sender.close()
    with pytest.raises(WorkerFailed) as failed:
        _collect_reports([(process, receiver)])
    assert failed.value.exit_code == 70
    assert str(failed.value) == "runner-worker-0 exited with code 9 before reporting"


# -- error classes ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.EHOSTUNREACH, errno.ENETUNREACH])
def test_unreachable_host_or_network_is_its_own_class_in_both_engines(code):
    error = OSError(code, "No route to host")
    assert _error_class_for_connect(error) == "unreachable"
    assert _error_class_for_lost(error) == "unreachable"
    key = ConnectionKey("127.0.0.1", 80, False, True, None, None, None, None)
    assert classify(aiohttp.ClientConnectorError(key, error)) == "unreachable"
    assert classify(aiohttp.ClientOSError(code, "No route to host")) == "unreachable"


def test_refused_stays_connect_refused():
    refused = OSError(errno.ECONNREFUSED, "Connection refused")
    assert _error_class_for_connect(refused) == "connect_refused"
    key = ConnectionKey("127.0.0.1", 1, False, True, None, None, None, None)
    assert classify(aiohttp.ClientConnectorError(key, refused)) == "connect_refused"


def test_a_dead_loopback_port_still_exits_3(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, data = run_json(tmp_path, FAULT_RUN.format(
        target=f"http://127.0.0.1:{port}", engine="fast", workers=1, flow="[{path: /}]", requests=4))
    assert data["totals"]["errors"] == {"connect_refused": 4}
    assert code == 3


def _table_after(heading: str) -> str:
    section = README.split(heading, 1)[1]
    return section.split("\n\n", 2)[1]


def _classes_in(text: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", text)


def test_every_error_class_is_documented_in_readme_and_schema():
    documented = set(ERROR_CLASSES) | {CUT_OFF}
    when_wrong = next(line for line in _table_after("## When things go wrong").splitlines()
                      if line.startswith("| a request gets no response"))
    assert set(_classes_in(when_wrong)) - {"error_samples"} == documented
    field_row = next(line for line in README.splitlines() if line.startswith("| `errors` |"))
    assert set(_classes_in(field_row)) - {"errors"} == documented | {CAPTURE_FAILED}
    schema = orjson.loads((REPO / "schemas" / "result.schema.json").read_bytes())
    description = schema["$defs"]["Summary"]["properties"]["errors"]["description"]
    assert set(re.findall(r"[a-z]+_[a-z_]+|\b(?:dns|tls|reset|other|unreachable)\b", description)) >= documented


def test_exit_code_table_matches_the_code():
    rows = re.findall(r"^\| (\d+(?: / \d+)?) \|", _table_after("### Exit codes"), re.MULTILINE)
    documented = {int(code) for row in rows for code in row.split(" / ")}
    in_code = {value for name, value in vars(cli).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert documented == in_code
    row_3 = next(line for line in _table_after("### Exit codes").splitlines() if line.startswith("| 3 |"))
    assert "no request got an HTTP response, whatever the error class" in row_3
