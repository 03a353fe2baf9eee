"""End-to-end runs against real loopback servers: counts add up and match what the server saw."""

import orjson

from runner.cli import main
from runner.schemas.result import RunResultModel

from .conftest import write_scenario

THREE_STAGES = """\
version: 1
name: three-stages
target: {target}
flow:
  - name: page
    path: /page/{{seq}}
stages:
  - name: small
    requests: 1000
    concurrency: 10
  - name: large
    requests: 2000
    concurrency: 50
  - name: tail
    requests: 500
    concurrency: 7
"""


def run_json(tmp_path, scenario, *extra) -> tuple[int, dict]:
    out = tmp_path / "result.json"
    code = main(["run", str(scenario), "--quiet", "--out", f"json={out}", *extra])
    data = orjson.loads(out.read_bytes())
    RunResultModel.model_validate(data)  # the published schema describes real output
    return code, data


def assert_counts_add_up(block):
    assert block["requests"] == block["ok"] + block["failed"]
    assert block["requests"] == sum(block["status_codes"].values()) + sum(block["errors"].values())
    assert block["latency_histogram"]["total"] == block["requests"]


def test_exact_counts_per_stage_against_builtin_target(tmp_path, builtin_target):
    builtin_target.reset()
    scenario = write_scenario(tmp_path, THREE_STAGES.format(target=builtin_target.url))
    code, data = run_json(tmp_path, scenario)
    assert code == 0
    assert builtin_target.stats() == 3500
    assert [s["name"] for s in data["stages"]] == ["small", "large", "tail"]
    assert [s["requests"] for s in data["stages"]] == [1000, 2000, 500]
    assert [s["ok"] for s in data["stages"]] == [1000, 2000, 500]
    assert data["totals"]["requests"] == 3500 and data["totals"]["ok"] == 3500
    assert data["totals"]["status_codes"] == {"200": 3500}
    assert data["totals"]["bytes"] == 3500 * 1024
    for stage in data["stages"]:
        assert_counts_add_up(stage)
        assert stage["by_request"][0]["requests"] == stage["requests"]
    assert_counts_add_up(data["totals"])
    assert data["by_request"] == [dict(data["totals"], name="page")]


def test_exact_counts_and_failures_against_aiohttp_server(tmp_path, counting_server):
    scenario = write_scenario(tmp_path, """\
version: 1
name: mixed
target: builtin
flow:
  - {name: fine, path: "/ok/{seq}"}
  - {name: missing, path: /status/404}
  - {name: broken, path: /status/503}
stages:
  - {name: one, requests: 999, concurrency: 9}
  - {name: two, requests: 300, concurrency: 3}
""")
    code, data = run_json(tmp_path, scenario, "--target", counting_server.url)
    assert code == 0
    assert counting_server.counter["__all__"] == 1299
    assert counting_server.counter["/status/404"] + counting_server.counter["/status/503"] == data["totals"]["failed"]
    by_name = {r["name"]: r for r in data["by_request"]}
    assert by_name["missing"]["status_codes"] == {"404": counting_server.counter["/status/404"]}
    assert by_name["broken"]["failed"] == counting_server.counter["/status/503"]
    assert by_name["fine"]["ok"] == by_name["fine"]["requests"]
    # each worker walks the flow in order, so the mix is 1/3 each within one worker's share
    assert sum(r["requests"] for r in data["by_request"]) == 1299
    for stage in data["stages"]:
        assert_counts_add_up(stage)
        assert sum(r["requests"] for r in stage["by_request"]) == stage["requests"]


def test_duration_stage_stops_on_time(tmp_path, builtin_target):
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: timed
target: {builtin_target.url}
flow: [{{path: /}}]
stages: [{{duration: 1s, concurrency: 4}}]
""")
    code, data = run_json(tmp_path, scenario)
    assert code == 0
    assert 0.9 < data["stages"][0]["duration_s"] < 2.0
    assert data["totals"]["requests"] > 0


def test_dead_target_counts_every_request_as_failed_and_exits_3(tmp_path):
    import socket
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: dead
target: http://127.0.0.1:{port}
flow: [{{path: /}}]
stages: [{{requests: 50, concurrency: 5}}]
""")
    code, data = run_json(tmp_path, scenario)
    assert code == 3
    assert data["totals"]["failed"] == 50
    assert data["totals"]["errors"] == {"connect_refused": 50}


def test_set_and_target_override_the_file(tmp_path, builtin_target, counting_server):
    scenario = write_scenario(tmp_path, THREE_STAGES.format(target=builtin_target.url))
    code, data = run_json(tmp_path, scenario, "--set", "stages.1.requests=321", "--set", "stages.2.concurrency=2",
                          "--set", "name=overridden", "--target", counting_server.url)
    assert code == 0
    assert data["scenario"]["name"] == "overridden"
    assert data["target"] == counting_server.url
    assert [s["requests"] for s in data["stages"]] == [1000, 321, 500]
    assert data["stages"][2]["concurrency"] == 2
    assert counting_server.counter["__all__"] == 1821


def test_out_replaces_scenario_output_and_console_summary_prints(tmp_path, builtin_target, capsys):
    default = tmp_path / "from-scenario.json"
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: outputs
target: {builtin_target.url}
flow: [{{path: /}}]
stages: [{{requests: 20, concurrency: 2}}]
outputs: {{json: {default}}}
""")
    override = tmp_path / "nested" / "dir" / "cli.json"
    assert main(["run", str(scenario), "--out", f"json={override}"]) == 0
    assert override.exists() and not default.exists()
    out = capsys.readouterr().out
    assert "total" in out and "20" in out and "latency ms" in out
    assert main(["run", str(scenario), "--quiet"]) == 0
    assert default.exists()
    assert not list(tmp_path.glob("**/.*.tmp"))  # atomic writes leave no temporary files
