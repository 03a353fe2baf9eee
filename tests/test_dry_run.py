"""The dry run (``runner plan FILE``, ``runner run --dry-run FILE``) sends nothing and predicts right.

"Sends nothing" is checked twice: a loopback server that counts requests sees
none, and a Python audit hook sees no socket connect or bind and no child
process -- with a real run under the same hook as the proof that the hook
would have seen them. "Predicts right" compares the numbers with ones derived
by hand from the arrival formula and the even split, and with what a real
run then actually schedules.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys

import orjson
import pytest

from runner.cli import main
from runner.compile import compile_scenario
from runner.describe import CHART_WIDTH, describe, outline
from runner.loader import load_scenario

from .conftest import REPO, write_scenario

#: Audit events that would mean the dry run reached for the network or started a process.
_WATCHED_EVENTS = {"socket.connect", "socket.bind", "subprocess.Popen", "os.fork", "os.posix_spawn", "os.exec"}
_recorded: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _recorded is not None and event in _WATCHED_EVENTS:
        _recorded.append(event)


sys.addaudithook(_audit)  # hooks cannot be removed; it records only inside side_effects()


@contextlib.contextmanager
def side_effects():
    """Collect the watched audit events raised in this process while the block runs."""
    global _recorded
    events: list[str] = []
    _recorded = events
    try:
        yield events
    finally:
        _recorded = None


MIXED = """\
version: 1
name: mixed
target: {target}
flow:
  - name: home
    path: /page/{{seq}}
stages:
  - {{name: warm, requests: 10001, concurrency: 7}}
  - {{name: soak, duration: 30s, concurrency: {{from: 10, to: 50}}}}
  - {{name: steady, rate: 2000/s, duration: 10s}}
  - {{name: ramp, rate: {{from: 200/s, to: 1000/s}}, duration: 5s, max_in_flight: 300}}
  - {{name: capped, rate: 100/s, duration: 10s, requests: 250}}
  - {{name: burst, rate: 20000/s, requests: 5000}}
"""


def plan_of(tmp_path, text: str, *overrides: str):
    path = write_scenario(tmp_path, text)
    return compile_scenario(load_scenario(path, overrides=list(overrides)), path)


def dry_run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- it sends nothing ----------------------------------------------------------------


def test_nothing_reaches_the_target(tmp_path, capsys, counting_server):
    scenario = write_scenario(tmp_path, MIXED.format(target="http://127.0.0.1:9"))
    with side_effects() as events:
        code, out, _ = dry_run(capsys, "plan", str(scenario), "--target", counting_server.url)
        run_code, run_out, _ = dry_run(capsys, "run", "--dry-run", str(scenario), "--target", counting_server.url,
                                       "--set", "workers=2")
    assert (code, run_code) == (0, 0)
    assert f"target:   {counting_server.url}" in out and "nothing was sent" in run_out
    assert counting_server.counter["__all__"] == 0
    assert events == []

    # The same checks notice a real run: the server counts it and the hook sees the connections.
    small = write_scenario(tmp_path, f"version: 1\nname: real\ntarget: {counting_server.url}\n"
                                     "flow: [{path: /}]\nstages: [{requests: 3, concurrency: 1}]\n", "real.yaml")
    with side_effects() as events:
        assert main(["run", str(small), "--quiet"]) == 0
    assert counting_server.counter["__all__"] == 3
    assert "socket.connect" in events


def test_the_builtin_target_is_not_started(tmp_path, capsys):
    scenario = write_scenario(tmp_path, "version: 1\nname: b\ntarget: builtin\n"
                                        "flow: [{path: /}]\nstages: [{requests: 5, concurrency: 1}]\n")
    with side_effects() as events:
        code, out, _ = dry_run(capsys, "plan", str(scenario))
    assert code == 0 and events == []
    assert "builtin (runner's own server, started on a free loopback port by the run)" in out

    with side_effects() as events:  # the hook does see a real run start the built-in target
        assert main(["run", str(scenario), "--quiet"]) == 0
    assert "subprocess.Popen" in events


# -- the numbers -----------------------------------------------------------------------


def test_numbers_per_stage(tmp_path):
    plan = plan_of(tmp_path, MIXED.format(target="http://127.0.0.1:9"))
    warm, soak, steady, ramp, capped, burst = outline(plan).stages

    # closed, by count: exact requests, length up to the server
    assert (warm.model, warm.requests, warm.duration_s, warm.connections) == ("closed", 10001, None, 7)
    # closed ramp by time: the count is up to the server, the length is not
    assert (soak.requests, soak.duration_s, soak.connections) == (None, 30.0, 50)
    # open, constant: R * D arrivals over D seconds, one connection per in-flight slot (default 1000)
    assert (steady.model, steady.requests, steady.duration_s, steady.connections) == ("open", 20_000, 10.0, 1000)
    assert steady.rate_samples == ((0.0, 2000.0),)
    # open ramp: N(D) = r0*D + (r1 - r0)*D/2 = 200*5 + 800*5/2; the rate climbs on a straight line
    assert (ramp.requests, ramp.duration_s, ramp.connections) == (3000, 5.0, 300)
    assert ramp.rate_samples == ((0.0, 200.0), (1.25, 400.0), (2.5, 600.0), (3.75, 800.0), (5.0, 1000.0))
    # open, capped by requests: 250 arrivals at 100/s are all due within 2.5 s of the 10 s
    assert (capped.requests, capped.duration_s) == (250, 2.5)
    # open without a duration: 5000 arrivals at 20000/s take a quarter of a second
    assert (burst.requests, burst.duration_s) == (5000, 0.25)
    assert outline(plan).peak_connections == 1000


def test_numbers_per_worker_process(tmp_path):
    plan = plan_of(tmp_path, MIXED.format(target="http://127.0.0.1:9"), "workers=3")
    warm, soak, steady, ramp, capped, burst = outline(plan).stages
    shares = lambda stage: [(p.requests, p.connections) for p in stage.processes]  # noqa: E731
    # closed: even shares that differ by at most one and add up: 10001 = 3334 + 3334 + 3333; 7 = 3 + 2 + 2
    assert shares(warm) == [(3334, 3), (3334, 2), (3333, 2)]
    assert shares(soak) == [(None, 17), (None, 17), (None, 16)]
    # open: every third arrival of one timeline; in-flight slots rounded up per process
    assert shares(steady) == [(6667, 334), (6667, 334), (6666, 334)]
    assert steady.connections == 3 * 334
    assert shares(ramp) == [(1000, 100)] * 3
    assert shares(capped) == [(84, 334), (83, 334), (83, 334)]
    assert sum(p.requests for p in burst.processes) == 5000


def test_shards_get_the_shares_a_distributed_run_gives_them(tmp_path):
    """--shards N splits as runner.cluster does: the workers: N arithmetic, one process per shard."""
    from dataclasses import replace

    from runner.describe import _stage_outline
    from runner.sharding import share

    plan = plan_of(tmp_path, MIXED.format(target="http://127.0.0.1:9"), "workers=2")  # ignored by shards
    sharded = outline(plan, shards=3)
    base = replace(plan, workers=1, abort_on_fail=False)  # what runner.cluster splits into shards
    for index, stage in enumerate(plan.stages):
        shard_stages = [share(base, k, 3).stages[index] for k in range(3)]
        assert sharded.stages[index].processes == _stage_outline(stage, shard_stages).processes, stage.name
    assert [(p.requests, p.connections) for p in sharded.stages[0].processes] == [(3334, 3), (3334, 2), (3333, 2)]
    text = describe(plan, shards=3)
    assert "shards:   3 on the Dask cluster, one process each" in text and "workers:" not in text
    assert "  per shard:   shard 1: 3,334 requests, 3 workers; shard 2: 3,334 requests, 2 workers;" in text
    assert "(334 per shard: needs" in text


def test_a_named_cluster_without_shards_says_the_count_comes_later(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RUNNER_CLUSTER", "tcp://127.0.0.1:8786")
    scenario = write_scenario(tmp_path, MIXED.format(target="http://127.0.0.1:9"))
    with side_effects() as events:
        code, out, _ = dry_run(capsys, "plan", str(scenario))
    assert code == 0 and events == []  # the scheduler is named, not contacted
    assert "shards:   one per Dask worker of the cluster at tcp://127.0.0.1:8786, counted when the run" in out
    code, out, err = dry_run(capsys, "run", "--dry-run", str(scenario), "--shards", "0")
    assert code == 2 and "--shards must be at least 1" in err and out == ""


def test_predictions_match_what_a_real_run_schedules(tmp_path, builtin_target):
    text = f"""\
version: 1
name: predicted
target: {builtin_target.url}
workers: 2
flow: [{{path: /}}]
stages:
  - {{name: closed, requests: 301, concurrency: 3}}
  - {{name: ramp, rate: {{from: 100/s, to: 300/s}}, duration: 1s}}
  - {{name: capped, rate: 400/s, requests: 150}}
"""
    predicted = outline(plan_of(tmp_path, text)).stages
    scenario = write_scenario(tmp_path, text, "run.yaml")
    out = tmp_path / "run.json"
    builtin_target.reset()
    assert main(["run", str(scenario), "--quiet", "--out", f"json={out}"]) == 0
    stages = orjson.loads(out.read_bytes())["stages"]
    assert [s.requests for s in predicted] == [301, 200, 150]
    assert stages[0]["requests"] == predicted[0].requests
    for stage, prediction in zip(stages[1:], predicted[1:]):
        assert stage["rate"]["scheduled"] == prediction.requests
    assert builtin_target.stats() == sum(s["requests"] for s in stages)


# -- the text -------------------------------------------------------------------------


def chart_bars(out: str) -> dict[str, list[int]]:
    """Stage name -> bar lengths of its rows in the rate chart."""
    bars: dict[str, list[int]] = {}
    for line in out.split("arrival rate over time:\n", 1)[1].splitlines():
        match = re.match(r"  (\S+) +\+\S+  (#*) +[\d,.]+/s", line)
        if match:
            bars.setdefault(match.group(1), []).append(len(match.group(2)))
    return bars


def test_the_report_shows_counts_durations_and_a_rate_chart(tmp_path, capsys):
    scenario = write_scenario(tmp_path, MIXED.format(target="http://127.0.0.1:9"))
    code, out, _ = dry_run(capsys, "plan", str(scenario))
    assert code == 0
    for expected in ("10,001 requests", "as many requests as the server answers in 30s", "20,000 arrivals",
                     "3,000 arrivals", "250 arrivals", "5,000 arrivals", "5s of arrivals", "250ms of arrivals",
                     "10 -> 50 workers", "200/s -> 1,000/s, at most 300 in flight",
                     "total:       38,251 requests + what stage soak sends",
                     "duration:    about 47.8s + however long stage warm takes",
                     "connections: at most 1,000 at once (1,000 per process: needs 1,064 open files)"):
        assert expected in out, expected
    assert out.count("  data:        none") == 6  # one place per stage where data files will be listed
    # bars are scaled to the run's peak: 20000/s is the full width, 2000/s a tenth of it
    bars = chart_bars(out)
    # (200/s is a hundredth of the width: every non-zero rate still gets one mark)
    assert bars == {"steady": [CHART_WIDTH // 10], "ramp": [1, 1, 1, 2, 2], "capped": [1], "burst": [CHART_WIDTH]}
    assert "warm" in out.split("arrival rate over time:")[1]  # closed stages keep their place in time


def test_a_typo_meant_rate_stands_out(tmp_path, capsys):
    # 20000/s where 2000/s was meant: ten times the arrivals and a full-width bar next to a short one
    text = ("version: 1\nname: typo\ntarget: http://127.0.0.1:9\nflow: [{path: /}]\n"
            "stages: [{name: warm, rate: 2000/s, duration: 1m}, {name: main, rate: 20000/s, duration: 1m}]\n")
    code, out, _ = dry_run(capsys, "plan", str(write_scenario(tmp_path, text)))
    assert code == 0
    assert "120,000 arrivals" in out and "1,200,000 arrivals" in out
    assert chart_bars(out) == {"warm": [CHART_WIDTH // 10], "main": [CHART_WIDTH]}


# -- the command line -------------------------------------------------------------------


def test_overrides_apply_as_for_run(tmp_path, capsys):
    scenario = write_scenario(tmp_path, MIXED.format(target="builtin"))
    code, out, _ = dry_run(capsys, "plan", str(scenario), "--set", "stages.0.requests=50",
                           "--set", "workers=2", "--target", "http://127.0.0.1:8081", "--out", "json=r/x.json")
    assert code == 0
    assert "target:   http://127.0.0.1:8081" in out and "workers:  2 processes" in out
    assert "process 1: 25 requests, 4 workers; process 2: 25 requests, 3 workers" in out
    assert "reports:  json -> r/x.json" in out
    assert not (tmp_path / "r").exists() and not os.path.exists("r/x.json")  # nothing written


@pytest.mark.parametrize("argv, message", [
    (["--set", "stages.0.requests=-1"], "must be > 0"),
    (["--set", "stages.0.concurency=4"], "did you mean 'concurrency'"),
    (["--target", "ftp://example.invalid"], "target must be 'builtin' or an http(s) URL"),
    (["--out", "nosuch=x"], "unknown reporter 'nosuch'"),
])
def test_an_invalid_scenario_or_flag_exits_2(tmp_path, capsys, argv, message):
    scenario = write_scenario(tmp_path, MIXED.format(target="builtin"))
    for command in (["plan", str(scenario)], ["run", "--dry-run", str(scenario)]):
        code, out, err = dry_run(capsys, *command, *argv)
        assert code == 2 and message in err and out == ""


def test_secret_values_are_not_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RUNNER_DRY_RUN_KEY", "hunter2-secret-value")
    text = ("version: 1\nname: s\ntarget: http://127.0.0.1:9\n"
            "flow: [{path: '/x?key=${env:RUNNER_DRY_RUN_KEY}', headers: {X-Key: '${env:RUNNER_DRY_RUN_KEY}'}}]\n"
            "stages: [{requests: 1, concurrency: 1}]\n")
    scenario = write_scenario(tmp_path, text)
    code, out, _ = dry_run(capsys, "plan", str(scenario))
    assert code == 0 and "hunter2" not in out and "${env:RUNNER_DRY_RUN_KEY}" in out
    monkeypatch.delenv("RUNNER_DRY_RUN_KEY")
    code, out, err = dry_run(capsys, "plan", str(scenario))  # a missing secret is caught before any run
    assert code == 2 and "RUNNER_DRY_RUN_KEY" in err


def test_the_installed_command(tmp_path):
    good = write_scenario(tmp_path, MIXED.format(target="builtin"))
    bad = write_scenario(tmp_path, "version: 1\nname: bad\ntarget: builtin\nflow: []\nstages: []\n", "bad.yaml")
    done = subprocess.run([sys.executable, "-m", "runner", "run", "--dry-run", str(good)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0 and "stage 6: burst (open model)" in done.stdout
    done = subprocess.run([sys.executable, "-m", "runner", "plan", str(bad)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2 and "bad.yaml" in done.stderr and done.stdout == ""


# -- flows and data rows ------------------------------------------------------------------

JOURNEYS = """\
version: 1
name: journeys
target: {target}
data:
  users: {{file: users.csv, mode: unique, per: vu}}
  skus: {{file: skus.csv, mode: sequential, per: iteration}}
flows:
  - name: shopper
    weight: 3
    once:
      - {{name: login, method: POST, path: /login, json: {{user: "{{users.user}}"}},
         capture: {{token: {{json: $.token}}}}}}
    steps:
      - {{name: list items, path: /items, headers: {{Authorization: "Bearer {{token}}"}},
         capture: {{item: {{json: "$.items[0].id"}}, etag: {{header: ETag}}}}}}
      - think: {{min: 5ms, max: 20ms}}
      - {{method: POST, path: /cart, json: {{item: "{{item}}", sku: "{{skus.sku}}"}}}}
      - {{path: /cart}}
  - name: browser
    steps:
      - {{path: /items}}
      - think: 1s
stages:
  - {{name: warm, requests: 1000, concurrency: 100}}
  - {{name: soak, duration: 1m, concurrency: 1000}}
  - {{name: peak, rate: 100/s, duration: 10s, max_in_flight: 300}}
"""


def write_rows(tmp_path, name: str, column: str, count: int) -> None:
    lines = [column] + [f"{column}{i}" for i in range(count)]
    (tmp_path / name).write_text("\n".join(lines) + "\n")


def journeys(tmp_path, target: str = "http://127.0.0.1:9", users: int = 200, skus: int = 30):
    write_rows(tmp_path, "users.csv", "user", users)
    write_rows(tmp_path, "skus.csv", "sku", skus)
    return write_scenario(tmp_path, JOURNEYS.format(target=target))


def test_flows_are_shown_as_journeys(tmp_path, capsys):
    code, out, _ = dry_run(capsys, "plan", str(journeys(tmp_path)))
    assert code == 0
    header = out.split("\nstage 1:")[0]
    assert [line.rstrip() for line in header.splitlines()[4:15]] == [
        "flows:    shopper: weight 3, 75% of virtual users and arrivals;"
        " reads users (one row per virtual user), skus (one row per iteration)",
        "            once  POST /login -> token      (login)",
        "            loop  GET /items -> item, etag  (list items)",
        "                  think 5ms-20ms",
        "                  POST /cart",
        "                  GET /cart",
        "          browser: weight 1, 25% of virtual users and arrivals",
        "            loop  GET /items",
        "                  think 1s",
        f"data:     users: {tmp_path / 'users.csv'}, 200 rows, columns user, unique per vu",
        f"          skus: {tmp_path / 'skus.csv'}, 30 rows, columns sku, sequential per iteration",
    ]
    # the users of a stage split by weight exactly as the run assigns flows (user n runs cycle[n % 4])
    assert "  flows:       shopper 75 users, browser 25 users" in out
    assert "  flows:       shopper 750 users, browser 250 users" in out
    assert "  flows:       shopper 750 arrivals, browser 250 arrivals" in out


def test_a_plain_flow_keeps_its_one_line(tmp_path, capsys):
    text = ("version: 1\nname: p\ntarget: http://127.0.0.1:9\n"
            "flow:\n  - {path: /a, capture: {id: {header: X-Id}}}\n  - think: 10ms\n"
            "  - {name: second, method: POST, path: '/b/{id}'}\nstages: [{requests: 5, concurrency: 1}]\n")
    code, out, _ = dry_run(capsys, "plan", str(write_scenario(tmp_path, text)))
    assert code == 0
    assert "flow:     GET /a -> id | think 10ms | POST /b/{id}\n" in out
    assert "flows:" not in out and "  data:        none" in out


def test_data_rows_per_stage_and_the_unique_shortage(tmp_path, capsys):
    scenario = journeys(tmp_path)
    plan = compile_scenario(load_scenario(scenario), scenario)
    warm, soak, peak = outline(plan).stages
    users = [stage.data[0] for stage in (warm, soak, peak)]
    skus = [stage.data[1] for stage in (warm, soak, peak)]

    # per vu, closed: one row per shopper user; users persist, so soak adds only its new ones
    assert [(u.need, u.rows, u.total, u.short, u.exact) for u in users[:2]] == [(75, 75, 75, 0, True),
                                                                               (750, 125, 200, 550, True)]
    assert users[0].warning is None
    assert users[1].warning == "users: 200 rows, but 750 virtual users need one each: 550 will stop at once"
    # open: the 300 in-flight slots are users 0-299; the 75 of them that ran "browser" so far may now
    # get a "shopper" arrival and look for a row: an upper bound, so the warning says "may"
    assert (users[2].need, users[2].rows, users[2].short, users[2].exact) == (825, 0, 625, False)
    assert users[2].warning == ("users: 200 rows, but up to 825 virtual users may need one each:"
                                " up to 625 may stop at once")

    # per iteration: requests / requests per iteration, plus each user's last, cut-short iteration;
    # unknown for a stage bound by duration; one per arrival of a flow that reads it
    assert skus[0].rows == 75 + (1000 - 75) // 3
    assert (skus[1].rows, skus[1].total) == (None, None)
    assert skus[2].rows == 750 and skus[2].warning is None  # sequential: rows repeat, nobody stops

    code, out, _ = dry_run(capsys, "plan", str(scenario))
    assert code == 0
    blocks = out.split("\nstage ")
    assert "  data:        users: 75 rows, one per virtual user\n" in blocks[1]
    assert ("               skus: at most 383 rows, one per iteration (1,000 requests, 3 per iteration);"
            " rows repeat: the file has 30\n") in blocks[1]
    assert ("  data:        users: 125 more rows, one per new virtual user (200 in all); 550 find none left\n"
            "               warning: users: 200 rows, but 750 virtual users need one each: 550 will stop at once\n"
            "               skus: one row per iteration, as many as the server answers in 60s"
            " (not known before the run)\n") in blocks[2]
    assert ("  data:        users: no rows left for its up to 75 new virtual users"
            " (open model: a user per request in flight, at most 300)\n") in blocks[3]
    assert "skus: at most 750 rows, one per arrival running flow shopper; rows repeat" in blocks[3]
    # the warning is repeated at the end, where it is read last before sending
    assert out.endswith("warnings (read before sending):\n"
                        "  stage soak: users: 200 rows, but 750 virtual users need one each: 550 will stop at once\n"
                        "  stage peak: users: 200 rows, but up to 825 virtual users may need one each:"
                        " up to 625 may stop at once\n"
                        "\ndry run: nothing was sent and no server was started.\n")


def test_the_shortage_message_for_one_flow(tmp_path, capsys):
    write_rows(tmp_path, "users.csv", "user", 200)
    text = ("version: 1\nname: one\ntarget: http://127.0.0.1:9\ndata: {users: {file: users.csv, mode: unique}}\n"
            "flows: [{name: login, steps: [{path: '/login/{users.user}'}]}]\n"
            "stages: [{duration: 1m, concurrency: 1000}]\n")
    code, out, _ = dry_run(capsys, "plan", str(write_scenario(tmp_path, text)))
    assert code == 0
    assert "flows:    login: all virtual users; reads users (one row per virtual user)" in out
    assert "warning: users: 200 rows, but 1,000 virtual users need one each: 800 will stop at once\n" in out
    # a table big enough says so without a warning; users of a later, smaller stage keep their rows
    write_rows(tmp_path, "users.csv", "user", 1000)
    text = text.replace("stages: [", "stages: [{requests: 50, concurrency: 10}, ").replace(
        "concurrency: 1000}]", "concurrency: 1000}, {requests: 20, concurrency: 5}]")
    code, out, _ = dry_run(capsys, "plan", str(write_scenario(tmp_path, text)))
    assert "  data:        users: 10 rows, one per virtual user\n" in out
    assert "  data:        users: 990 more rows, one per new virtual user (1,000 in all)\n" in out
    assert "  data:        users: no new rows (its virtual users all started in earlier stages and drew then)\n" in out
    assert "warning" not in out
    # per iteration: 50 requests of 1 per iteration need 50 rows, and only 40 are unique
    write_rows(tmp_path, "users.csv", "user", 40)
    code, out, _ = dry_run(capsys, "plan", str(write_scenario(tmp_path, text.replace("mode: unique",
                                                                                     "mode: unique, per: iteration"))))
    assert code == 0
    assert "users: at most 40 rows, one per iteration (50 requests, 1 per iteration); up to 10 iterations" in out
    assert ("warning: users: 40 rows, but up to 50 iterations may need one each: up to 10 find none,"
            " and each user that finds none stops\n") in out
    assert "users stop once all 40 rows are used" in out  # the stage bound by duration alone


def test_each_worker_process_mixes_its_own_users_so_unique_rows_suffice(tmp_path, capsys):
    # Weights 1:1 and 2 processes of 20 users each: every process runs 10 "reader" users,
    # so each process's own 15 of the 30 rows are enough.
    write_rows(tmp_path, "users.csv", "user", 30)
    text = ("version: 1\nname: split\ntarget: http://127.0.0.1:9\nworkers: 2\n"
            "data: {users: {file: users.csv, mode: unique, per: vu}}\n"
            "flows: [{name: reader, steps: [{path: '/?u={users.user}'}]}, {name: other, steps: [{path: /}]}]\n"
            "stages: [{name: main, requests: 200, concurrency: 40}]\n")
    plan = plan_of(tmp_path, text)
    (stage,) = outline(plan).stages
    assert [plan.data[0].share(k, 2) for k in range(2)] == [15, 15]
    (use,) = stage.data
    assert (use.need, use.total, use.short) == (20, 20, 0) and not use.warning
    code, out, _ = dry_run(capsys, "plan", str(write_scenario(tmp_path, text)), "--set", "stages.0.concurrency=80")
    assert code == 0 and "users: 30 rows, but 40 virtual users need one each: 10 will stop at once" in out


def test_predicted_rows_match_a_real_run(tmp_path, builtin_target):
    write_rows(tmp_path, "users.csv", "user", 30)
    text = (f"version: 1\nname: split\ntarget: {builtin_target.url}\nworkers: 2\n"
            "data: {users: {file: users.csv, mode: unique, per: vu}}\n"
            "flows: [{name: reader, steps: [{path: '/?u={users.user}'}]}, {name: other, steps: [{path: /}]}]\n"
            "stages: [{name: a, requests: 100, concurrency: 10}, {name: b, requests: 200, concurrency: 40}]\n")
    predicted = [stage.data[0].total for stage in outline(plan_of(tmp_path, text)).stages]
    assert predicted == [6, 20]  # 3 of each process's 5 users read, then 10 of its 20
    scenario = write_scenario(tmp_path, text, "run.yaml")
    out = tmp_path / "run.json"
    assert main(["run", str(scenario), "--quiet", "--out", f"json={out}"]) == 0
    (users,) = orjson.loads(out.read_bytes())["data"]
    assert users["used"] == predicted[-1]


def test_flows_and_data_send_nothing(tmp_path, capsys, counting_server):
    scenario = journeys(tmp_path, target=counting_server.url, users=5)
    with side_effects() as events:
        code, out, _ = dry_run(capsys, "plan", str(scenario), "--set", "workers=3")
        run_code, run_out, _ = dry_run(capsys, "run", "--dry-run", str(scenario))
    assert (code, run_code) == (0, 0)
    assert "will stop at once" in out and "will stop at once" in run_out
    assert counting_server.counter["__all__"] == 0 and events == []
