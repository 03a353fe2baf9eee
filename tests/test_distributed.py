"""Distributed runs on a real Dask cluster: a ``dask scheduler`` and ``dask worker`` processes on loopback.

Not an in-process cluster: the shards run in other processes, reach the
target over TCP, and send their snapshots through a real scheduler, so a
worker can be killed for real. The cluster is started once for the module
(two workers, each with one thread, under the usual nanny) and every process
of it is stopped at the end, also when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from distributed import Client  # noqa: E402

from runner import cluster as cluster_module  # noqa: E402
from runner.cluster import ClusterError, cluster_address  # noqa: E402
from runner.compile import compile_scenario  # noqa: E402
from runner.errors import ScenarioError, UsageError  # noqa: E402
from runner.launch import execute  # noqa: E402
from runner.loader import load_scenario  # noqa: E402
from runner.snapshots import LiveRun  # noqa: E402

from .conftest import write_scenario  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


class DaskCluster:
    """``python -m dask scheduler`` and N ``python -m dask worker`` on 127.0.0.1, each in its own session."""

    def __init__(self, directory: Path, workers: int):
        self.directory = directory
        self.workers = workers
        self.processes: list[subprocess.Popen] = []
        self.address = ""

    def start(self) -> "DaskCluster":
        scheduler_file = self.directory / "scheduler.json"
        # The timeouts are a second line of defence: should this process die without stopping them,
        # the scheduler ends when idle and the workers when their scheduler is gone.
        self._spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(scheduler_file), "--idle-timeout", "300s")
        deadline = time.monotonic() + 30
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            assert self.processes[0].poll() is None, "the Dask scheduler exited"
            time.sleep(0.05)
        time.sleep(0.05)  # the file is written in one go, but give a partial write no chance
        self.address = json.loads(scheduler_file.read_text())["address"]
        for number in range(self.workers):
            self._spawn(f"worker{number}", "worker", self.address, "--nthreads", "1", "--nworkers", "1",
                        "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{number}", "--death-timeout", "20s")
        self.wait_for_workers()
        return self

    def _spawn(self, log: str, *args: str) -> None:
        with open(self.directory / f"{log}.log", "ab") as out:
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "dask", *args], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                cwd=REPO, start_new_session=True))

    def client(self) -> Client:
        return Client(self.address, timeout=10, set_as_default=False)

    def wait_for_workers(self, timeout_s: float = 30) -> None:
        with self.client() as client:
            client.wait_for_workers(self.workers, timeout=timeout_s)

    def worker_pids(self) -> dict[str, int]:
        with self.client() as client:
            return client.run(os.getpid)

    def kill_scheduler(self) -> None:
        os.killpg(self.processes[0].pid, signal.SIGKILL)

    def stop(self) -> None:
        for process in reversed(self.processes):  # workers first, then the scheduler
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"), workers=2)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def cluster(dask_cluster):
    """The module's cluster with both workers up (a nanny restarts a killed one at a new address)."""
    dask_cluster.wait_for_workers()
    return dask_cluster


def plan_of(tmp_path: Path, text: str, name: str = "scenario.yaml"):
    path = write_scenario(tmp_path, text, name)
    return compile_scenario(load_scenario(path), path)


COUNTS = """\
version: 1
name: distributed-counts
target: {target}
interval: 250ms
flows:
  - name: pages
    steps:
      - name: page
        path: /page/{{seq}}
      - name: missing
        path: /nothing?status=404
stages:
  - name: closed
    requests: 3001
    concurrency: 8
  - name: open
    rate: 1500/s
    duration: 1s
    max_in_flight: 400
"""


def test_counts_are_exact_and_histograms_merge_bucket_for_bucket(cluster, builtin_target, tmp_path):
    """Two shards on two Dask workers send exactly what the scenario asks; the target counts the same."""
    plan = plan_of(tmp_path, COUNTS.format(target=builtin_target.url))
    builtin_target.reset()
    received, shards_told = [], []
    result = execute(plan, cluster=cluster.address, on_snapshot=received.append, on_shards=shards_told.append).to_dict()
    assert shards_told == [2]

    closed, open_ = result["stages"]
    assert open_["rate"]["scheduled"] == 1500 and open_["dropped"] == 0
    assert builtin_target.stats() == result["totals"]["requests"] == 3001 + 2 * 1500  # two steps per arrival
    assert closed["requests"] == 3001 and open_["requests"] == 3000
    assert result["totals"]["failed"] == result["by_request"][1]["requests"]  # only the 404s fail

    shards = result["shards"]
    assert [s["index"] for s in shards] == [0, 1] and [s["status"] for s in shards] == ["ok", "ok"]
    assert len({s["worker"] for s in shards}) == 2, "one shard per worker"
    assert sum(s["requests"] for s in shards) == result["totals"]["requests"]
    assert all(abs(s["start_skew_s"]) < 0.5 and abs(s["clock_offset_s"]) < 0.1 for s in shards)
    assert result["generator"]["processes"] == 2

    # The shards' own final snapshots, merged bucket by bucket, are exactly the result's histograms.
    live = LiveRun()
    for snap in received:
        live.add(snap)
    assert {snap.source for snap in received} == {0, 1}
    for index, stage in enumerate(result["stages"]):
        assert sum(snap.final for snap in received if snap.stage == index) == 2
        for merged, entry in zip(live.steps(index), stage["by_request"]):
            assert merged.requests == entry["requests"]
            buckets = {str(i): n for i, n in enumerate(merged.latency.counts) if n}
            assert buckets == entry["latency_histogram"]["buckets"]


def test_same_counts_as_two_local_processes(cluster, builtin_target, tmp_path):
    """The shards are the workers: N split: the same plan on two processes sends the same numbers.

    (Which step of a flow the last tickets of a closed stage go to depends on
    timing, so ok and failed are compared in total, not per step.)
    """
    text = COUNTS.format(target=builtin_target.url)
    on_cluster = execute(plan_of(tmp_path, text), cluster=cluster.address).to_dict()
    local = execute(plan_of(tmp_path, text + "workers: 2\n", "local.yaml")).to_dict()
    assert [(s["requests"], s["dropped"]) for s in on_cluster["stages"]] == \
        [(s["requests"], s["dropped"]) for s in local["stages"]] == [(3001, 0), (3000, 0)], (
            on_cluster["stages"][1]["rate"], on_cluster["shards"], on_cluster["totals"]["errors"],
            [(s["requests"], s["interrupted"]) for s in on_cluster["stages"]])
    assert local["shards"] == []


OPEN = """\
version: 1
name: distributed-open
target: builtin
interval: 500ms
flow:
  - name: page
    path: /page/{seq}
stages:
  - name: open
    rate: 2000/s
    duration: 2s
    max_in_flight: 400
"""


def test_open_model_rate_holds_across_shards(cluster, tmp_path):
    """Every shard takes every other arrival of one timeline from a common start: the rate is the one asked."""
    result = execute(plan_of(tmp_path, OPEN), cluster=cluster.address).to_dict()
    stage = result["stages"][0]
    assert stage["rate"]["scheduled"] == 4000 and stage["requests"] == 4000 and stage["dropped"] == 0
    assert abs(stage["rate"]["achieved"] - 2000) <= 20, stage["rate"]
    assert [s["requests"] for s in result["shards"]] == [2000, 2000]
    skews = [s["start_skew_s"] for s in result["shards"]]
    assert max(skews) - min(skews) < 0.1, skews


def test_unique_rows_are_never_used_twice_across_shards(cluster, counting_server, tmp_path):
    (tmp_path / "users.csv").write_text("id\n" + "".join(f"u{i}\n" for i in range(120)))
    plan = plan_of(tmp_path, f"""\
version: 1
name: distributed-unique
target: {counting_server.url}
data:
  users: {{file: users.csv, mode: unique, per: iteration}}
flow:
  - name: user
    path: /user/{{users.id}}
stages:
  - name: all-rows
    requests: 200
    concurrency: 4
""")
    result = execute(plan, cluster=cluster.address).to_dict()
    seen = {path: n for path, n in counting_server.counter.items() if path.startswith("/user/")}
    assert seen == {f"/user/u{i}": 1 for i in range(120)}, "every row once, none twice"
    assert result["data"][0]["used"] == 120 and result["data"][0]["exhausted"]


ABORT = """\
version: 1
name: distributed-abort
target: builtin
interval: 250ms
flow:
  - name: failing
    path: /page?status=500
stages:
  - name: long
    duration: 10s
    concurrency: 2
thresholds:
  - error_rate < 1%
abort_on_fail: true
"""


def test_abort_on_fail_stops_every_shard(cluster, tmp_path):
    """Judged on the merge of all shards by the client; the stop flag reaches both shards."""
    started = time.monotonic()
    result = execute(plan_of(tmp_path, ABORT), cluster=cluster.address).to_dict()
    assert time.monotonic() - started < 8
    assert result["aborted"] is not None and "error_rate" in result["aborted"]["reason"]
    assert result["passed"] is False
    assert all(s["status"] == "ok" and s["requests"] > 0 for s in result["shards"])
    assert result["stages"][0]["duration_s"] < 5 and result["stages"][0]["interrupted"]


def test_sigint_on_the_client_stops_every_shard(cluster, tmp_path):
    plan = plan_of(tmp_path, ABORT.replace("abort_on_fail: true\n", "").replace("status=500", "status=200"))
    sent = []

    def interrupt(snap):
        if snap.elapsed_s > 0.5 and not sent:
            sent.append(snap)
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT)
    result = execute(plan, cluster=cluster.address, on_snapshot=interrupt).to_dict()
    assert signal.getsignal(signal.SIGINT) is previous, "the client's handler is removed after the run"
    assert result["interrupted"] and result["interrupt_signal"] == "SIGINT"
    assert result["stages"][0]["duration_s"] < 5
    assert [s["status"] for s in result["shards"]] == ["ok", "ok"]


KILL = """\
version: 1
name: distributed-kill
target: {target}
interval: 250ms
flow:
  - name: page
    path: /page/{{seq}}
    checks: {{status: 200}}
stages:
  - name: long
    duration: 3s
    concurrency: 2
"""


def test_a_worker_killed_mid_run_loses_only_its_shard(cluster, builtin_target, tmp_path):
    plan = plan_of(tmp_path, KILL.format(target=builtin_target.url))
    pids = cluster.worker_pids()
    killed: list[float] = []
    builtin_target.reset()

    def kill_second(snap):
        if snap.source == 1 and snap.elapsed_s > 0.75 and not killed:
            os.kill(pids[victim], signal.SIGKILL)
            killed.append(time.monotonic())

    # shard 1 goes to the second worker in address order
    victim = sorted(pids)[1]
    told: list[int] = []
    result = execute(plan, cluster=cluster.address, on_snapshot=kill_second, on_lost=told.append).to_dict()
    assert told == [1], "live views are told which source was lost"
    assert killed and time.monotonic() - killed[0] < 10, "the client noticed the loss and finished in time"

    first, second = result["shards"]
    assert first["status"] == "ok" and first["reason"] is None
    assert second["status"] == "lost" and second["worker"] == victim and "left the cluster" in second["reason"]
    assert 0 < second["requests"] < first["requests"]
    assert result["totals"]["requests"] == first["requests"] + second["requests"]
    assert builtin_target.stats() >= result["totals"]["requests"], "the lost shard sent more than it could report"
    assert any("shard 1" in note and "lost" in note for note in result["notes"])
    assert result["stages"][0]["interrupted"], "the lost shard's stage did not end normally"
    assert result["generator"]["processes"] == 2
    # the lost shard's last snapshot carried its body bytes and check tallies (every response has the same body)
    body = builtin_target.config.body_size
    assert result["totals"]["bytes"] == result["totals"]["ok"] * body
    (check,) = result["checks"]
    assert check["passes"] + check["fails"] == result["totals"]["requests"]


def test_the_client_gives_up_on_a_dead_scheduler(tmp_path, monkeypatch):
    """A scheduler killed mid-run: the run ends within the deadline with the shard lost, never hangs."""
    monkeypatch.setattr(cluster_module, "SCHEDULER_LOST_S", 2.0)
    monkeypatch.setattr(cluster_module, "CALL_TIMEOUT_S", 2.0)
    own = DaskCluster(tmp_path, workers=1)
    try:
        own.start()
        plan = plan_of(tmp_path, KILL.format(target="builtin").replace("3s", "4s"))
        killed: list[float] = []

        def kill_scheduler(snap):
            if snap.elapsed_s > 0.5 and not killed:
                own.kill_scheduler()
                killed.append(time.monotonic())

        result = execute(plan, cluster=own.address, on_snapshot=kill_scheduler).to_dict()
        assert killed and time.monotonic() - killed[0] < 10
        (shard,) = result["shards"]
        assert shard["status"] == "lost" and shard["requests"] > 0, shard
        assert "lost contact with the Dask scheduler" in shard["reason"], shard["reason"]
        assert result["totals"]["requests"] == shard["requests"]
    finally:
        own.stop()


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 2.0)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    plan = plan_of(tmp_path, OPEN)
    started = time.monotonic()
    with pytest.raises(ClusterError) as error:
        execute(plan, cluster=f"tcp://127.0.0.1:{port}")
    assert time.monotonic() - started < 10
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in str(error.value)
    assert error.value.exit_code == 2


def test_shard_count_is_checked_against_worker_threads(cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_module, "WORKERS_WAIT_S", 0.5)  # for a third worker that will not come
    with pytest.raises(ClusterError, match="thread"):
        execute(plan_of(tmp_path, OPEN), cluster=cluster.address, shards=3)
    with pytest.raises(UsageError, match="--shards needs a Dask cluster"):
        execute(plan_of(tmp_path, OPEN), shards=2)


def test_one_shard_when_asked(cluster, tmp_path):
    result = execute(plan_of(tmp_path, OPEN.replace("2s", "1s")), cluster=cluster.address, shards=1).to_dict()
    assert [s["requests"] for s in result["shards"]] == [2000]


def test_where_the_address_comes_from(tmp_path, monkeypatch):
    plan = plan_of(tmp_path, OPEN + "cluster: tcp://scheduler.example:8786\n")
    monkeypatch.delenv(cluster_module.CLUSTER_ENV, raising=False)
    assert cluster_address(plan) == "tcp://scheduler.example:8786"
    monkeypatch.setenv(cluster_module.CLUSTER_ENV, "tcp://other.example:8786")
    assert cluster_address(plan) == "tcp://other.example:8786"
    assert cluster_address(plan, "tcp://flag.example:8786") == "tcp://flag.example:8786"
    monkeypatch.delenv(cluster_module.CLUSTER_ENV)
    assert cluster_address(plan_of(tmp_path, OPEN)) is None
    monkeypatch.setenv(cluster_module.CLUSTER_ENV, "")  # empty: as if unset
    assert cluster_address(plan_of(tmp_path, OPEN)) is None
    with pytest.raises(UsageError, match="--cluster: unknown scheme 'http'"):
        cluster_address(plan, "http://scheduler.example:8786/")
    monkeypatch.setenv(cluster_module.CLUSTER_ENV, "scheduler.example")
    with pytest.raises(UsageError, match="RUNNER_CLUSTER: expected a Dask scheduler address"):
        cluster_address(plan)


@pytest.mark.parametrize("value", ["scheduler.example", "http://scheduler.example:8786", "tcp://:8786",
                                   "tcp://scheduler.example:8786/path", "tcp://scheduler .example:1"])
def test_a_bad_cluster_address_is_refused_at_load_time(tmp_path, value):
    with pytest.raises(ScenarioError, match="cluster"):
        plan_of(tmp_path, OPEN + f"cluster: '{value}'\n")


def test_a_local_run_never_imports_dask(tmp_path):
    path = write_scenario(tmp_path, OPEN.replace("2s", "200ms"))
    code = ("import sys; from runner.cli import main; "
            f"code = main(['run', {str(path)!r}, '--quiet']); "
            "print(code, sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, cluster_module.CLUSTER_ENV: ""})
    assert done.stdout.strip() == "0 []", done.stderr


def test_the_command_line_runs_on_the_cluster_and_exits_5_for_a_lost_shard(cluster, builtin_target, tmp_path,
                                                                          capsys):
    """`runner run --cluster ADDRESS --shards 2`: two shards in the JSON result, exit 0; a lost shard is exit 5."""
    from runner.cli import EXIT_SHARD_LOST, exit_code_for, main

    path = write_scenario(tmp_path, COUNTS.format(target=builtin_target.url))
    out = tmp_path / "result.json"
    builtin_target.reset()
    code = main(["run", str(path), "--cluster", cluster.address, "--shards", "2", "--quiet", "--out", f"json={out}"])
    document = json.loads(out.read_text())
    assert code == 0, capsys.readouterr().err
    assert [shard["status"] for shard in document["shards"]] == ["ok", "ok"]
    assert document["totals"]["requests"] == builtin_target.stats()
    lost = dict(document, shards=[dict(document["shards"][0]), dict(document["shards"][1], status="lost")])
    assert exit_code_for(lost) == EXIT_SHARD_LOST == 5
    assert exit_code_for(dict(lost, interrupted=True, interrupt_signal="SIGINT")) == 130, "a signal still wins"


def test_every_stage_starts_together_on_every_shard(cluster, tmp_path):
    """One shard ends the first stage 0.6 s before the other; it waits, so the open timelines still line up."""
    from .conftest import STAGES_MEET, assert_stages_met, slow_first_stage_server

    with slow_first_stage_server() as (server, arrivals):
        plan = plan_of(tmp_path, STAGES_MEET.format(target=server.url, workers=1))
        result = execute(plan, cluster=cluster.address, shards=2).to_dict()
    assert [shard["status"] for shard in result["shards"]] == ["ok", "ok"]
    assert_stages_met(result, arrivals)
