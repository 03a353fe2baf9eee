"""Memory is bounded by concurrency, never by request count (the seed needed 3.8 GB for 1M)."""

import subprocess
import sys

import orjson

from .conftest import write_scenario


def peak_rss_mb(tmp_path, target_url: str, requests: int) -> tuple[float, dict]:
    scenario = write_scenario(tmp_path, f"""\
version: 1
name: memory-{requests}
target: {target_url}
flow: [{{path: "/page/{{seq}}"}}]
stages: [{{requests: {requests}, concurrency: 200}}]
""", name=f"memory-{requests}.yaml")
    out = tmp_path / f"memory-{requests}.json"
    done = subprocess.run([sys.executable, "-m", "runner", "run", str(scenario), "--quiet", "--out", f"json={out}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = orjson.loads(out.read_bytes())
    assert data["totals"]["ok"] == requests
    return data["generator"]["peak_rss_mb"], data


def test_rss_does_not_grow_with_request_count(tmp_path, builtin_target):
    small, _ = peak_rss_mb(tmp_path, builtin_target.url, 20_000)
    large, data = peak_rss_mb(tmp_path, builtin_target.url, 200_000)
    assert large <= small * 1.10 + 4, (small, large)
    assert large < 150


def test_peak_rss_is_the_runs_own_not_its_parents():
    """getrusage's ru_maxrss survives exec: a runner started by a 300 MB process must not report 300 MB."""
    parent_ballast = bytearray(300 * 1024 * 1024)
    for offset in range(0, len(parent_ballast), 4096):  # touch every page: resident, not just reserved
        parent_ballast[offset] = 1
    done = subprocess.run([sys.executable, "-c", "from runner.launch import peak_rss_mb; print(peak_rss_mb())"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 0 < float(done.stdout) < 150, done.stdout
    del parent_ballast
