"""SIGINT and SIGTERM mid-run: stop issuing, finish in-flight requests, write every report, exit 130/143."""

import signal
import subprocess
import sys
import time

import orjson
import pytest

from .conftest import write_scenario

SCENARIO = """\
version: 1
name: long-run
target: {url}
flow: [{{path: "/?delay=0.05"}}]
stages:
  - {{name: first, requests: 200, concurrency: 20}}
  - {{name: second, duration: 60s, concurrency: 20}}
  - {{name: never, requests: 100, concurrency: 1}}
"""


def start(tmp_path, url, *outputs):
    scenario = write_scenario(tmp_path, SCENARIO.format(url=url))
    args = [sys.executable, "-m", "runner", "run", str(scenario), "--quiet"]
    for output in outputs:
        args += ["--out", output]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_second_stage(process, seconds=2.5):
    time.sleep(seconds)  # the first stage takes ~0.5 s; then the 60 s stage runs
    assert process.poll() is None, process.communicate()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_writes_every_report_and_exits_with_its_code(tmp_path, builtin_target, sig, code):
    json_path, junit_path = tmp_path / "r.json", tmp_path / "r.xml"
    process = start(tmp_path, builtin_target.url, f"json={json_path}", f"junit={junit_path}")
    wait_for_second_stage(process)
    started = time.monotonic()
    process.send_signal(sig)
    out, err = process.communicate(timeout=20)
    assert time.monotonic() - started < 6  # in-flight requests take 50 ms; the grace is not used up
    assert process.returncode == code, err
    assert "Traceback" not in err
    data = orjson.loads(json_path.read_bytes())
    assert data["interrupted"] and data["interrupt_signal"] == sig.name
    assert [s["name"] for s in data["stages"]] == ["first", "second"]
    assert data["stages"][1]["interrupted"]
    assert data["stages"][0]["requests"] == 200
    for block in [data["totals"], *data["stages"]]:
        assert block["requests"] == block["ok"] + block["failed"]
    assert data["totals"]["failed"] == 0  # in-flight requests were allowed to finish
    import junitparser
    xml = junitparser.JUnitXml.fromfile(str(junit_path))
    assert sum(suite.errors for suite in xml) >= 1  # the interruption is reported as an error
    assert not list(tmp_path.glob(".*.tmp"))


def test_second_signal_cuts_off_in_flight_requests_but_still_writes(tmp_path, builtin_target):
    json_path = tmp_path / "r.json"
    scenario = write_scenario(tmp_path, SCENARIO.format(url=builtin_target.url).replace("0.05", "20"))
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(scenario), "--quiet",
                                "--set", "stages.0.requests=20", "--out", f"json={json_path}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)  # 20 workers each wait on a 20 s response
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130, err
    data = orjson.loads(json_path.read_bytes())
    assert data["totals"]["errors"].get("cut_off") == 20
    assert data["totals"]["requests"] == data["totals"]["failed"] == 20
