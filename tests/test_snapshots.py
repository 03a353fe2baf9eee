"""Interval snapshots: every process reports its running stage, and the last reports add up to the result.

The live view, the metrics endpoint and distributed runs read nothing else,
so what the snapshots say must be exactly what the run measured.
"""

from __future__ import annotations

import pytest

from runner.compile import compile_scenario
from runner.launch import execute
from runner.loader import load_scenario
from runner.snapshots import LiveRun, Snapshot

SCENARIO = """\
version: 1
name: snapshots
target: builtin
workers: {workers}
interval: 250ms
flows:
  - name: pages
    steps:
      - name: page
        path: /page/{{seq}}
        checks: {{status: 200}}
      - name: missing
        path: /nothing?status=404
        checks: {{status: 200}}
stages:
  - name: first
    requests: 3000
    concurrency: 8
  - name: second
    duration: 1s
    concurrency: 4
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_final_snapshots_add_up_to_the_result(tmp_path, workers):
    path = tmp_path / "snapshots.yaml"
    path.write_text(SCENARIO.format(workers=workers))
    plan = compile_scenario(load_scenario(path), path)
    received: list[Snapshot] = []
    result = execute(plan, on_snapshot=received.append).to_dict()

    assert {snap.source for snap in received} == set(range(workers))
    live = LiveRun()
    for snap in received:
        live.add(snap)
    assert live.stages() == [0, 1]
    for stage in result["stages"]:
        index = [s["name"] for s in result["stages"]].index(stage["name"])
        finals = [snap for snap in received if snap.stage == index and snap.final]
        assert len(finals) == workers, "every process sends one final snapshot per stage"
        steps = live.steps(index)
        by_name = {entry["name"]: entry for entry in stage["by_request"]}
        for name, merged in zip(("page", "missing"), steps):
            assert (merged.requests, merged.ok, merged.failed) == (
                by_name[name]["requests"], by_name[name]["ok"], by_name[name]["failed"])
            assert merged.latency.total == by_name[name]["requests"]
            ms = by_name[name]["latency_ms"]
            assert (round(merged.latency.min_us / 1000, 3), round(merged.latency.max_us / 1000, 3)) == (
                ms["min"], ms["max"]), "min and max travel exactly"
            assert round(merged.latency.mean() / 1000, 3) == ms["mean"], "so does the sum behind the mean"
            # bytes and check tallies travel too, so a shard lost before its final report keeps them
            assert merged.bytes == by_name[name]["bytes"]
            assert {check: list(tally) for check, tally in merged.checks.items()} == by_name[name]["checks"]
        assert sum(step.requests for step in steps) == stage["requests"]
        assert sum(s.interval.ok + s.interval.failed for s in received if s.stage == index) == stage["requests"], (
            "the intervals of the snapshots cover every completed request once")
    assert result["totals"]["requests"] == sum(stage["requests"] for stage in result["stages"])


def test_snapshots_arrive_while_the_stage_runs(tmp_path):
    """Not only at the end: a 1 s stage with 250 ms intervals reports at least three times before its last."""
    path = tmp_path / "snapshots.yaml"
    path.write_text(SCENARIO.format(workers=1))
    plan = compile_scenario(load_scenario(path), path)
    received: list[Snapshot] = []
    execute(plan, on_snapshot=received.append)
    second = [snap for snap in received if snap.stage == 1]
    assert sum(not snap.final for snap in second) >= 3
    assert [snap.elapsed_s for snap in second] == sorted(snap.elapsed_s for snap in second)
    assert all(snap.requests <= later.requests for snap, later in zip(second, second[1:]))
