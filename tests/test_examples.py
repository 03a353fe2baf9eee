"""Every example scenario validates, and runs in a small form against the built-in target."""

from pathlib import Path

import orjson
import pytest

from runner.cli import main

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))
#: Overrides that shrink each example to a few seconds while keeping its shape.
SMALL = {
    "million": ["--set", "stages.0.requests=5000", "--set", "stages.0.concurrency=100"],
    "hello": ["--set", "stages.1.duration=1s", "--set", "stages.1.requests=2000"],
    "seed-async": [],  # already small: 100 requests, random 0-3 s delays
    "open-rate": ["--set", "stages.0.duration=1s", "--set", "stages.1.duration=1s"],
    "ramp-users": ["--set", "stages.0.duration=1s", "--set", "stages.1.duration=1s"],
    "faults": ["--set", "stages.0.requests=100"],
    "ci-gate": ["--set", "stages.1.duration=2s"],
    "multi-core": ["--set", "stages.0.requests=2000", "--set", "stages.1.duration=1s", "--set", "workers=2"],
    "login-flow": ["--set", "stages.0.duration=1s", "--set", "stages.0.concurrency=5"],
    "distributed": ["--set", "stages.0.requests=2000", "--set", "stages.1.duration=1s"],  # here: one process
    "https": [],  # already small: 4,200 requests over TLS, a few hundred of them on fresh connections
}


def test_every_example_has_a_small_form():
    assert {p.stem for p in SCENARIOS} <= set(SMALL)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_example_validates(path, capsys):
    assert main(["validate", str(path)]) == 0


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_example_runs_small(path, tmp_path):
    out = tmp_path / "result.json"
    assert main(["run", str(path), "--quiet", "--out", f"json={out}", *SMALL[path.stem]]) == 0
    data = orjson.loads(out.read_bytes())
    totals = data["totals"]
    assert totals["requests"] == totals["ok"] + totals["failed"] > 0
    if path.stem == "faults":  # failures are the point: every one is classified, none crashes the run
        assert totals["failed"] > 0 and "other" not in totals["errors"]
    else:
        assert totals["failed"] == 0


def test_seed_async_finishes_in_about_the_longest_delay(tmp_path):
    """100 concurrent requests with seeded 0-3 s delays take ~3 s, not the ~150 s of one-by-one."""
    out = tmp_path / "seed.json"
    path = next(p for p in SCENARIOS if p.stem == "seed-async")
    assert main(["run", str(path), "--quiet", "--out", f"json={out}"]) == 0
    data = orjson.loads(out.read_bytes())
    assert data["totals"]["requests"] == 100
    assert 2.0 < data["totals"]["duration_s"] < 4.5
    assert data["totals"]["latency_ms"]["max"] > 2000
    assert data["totals"]["latency_ms"]["min"] < 1000
