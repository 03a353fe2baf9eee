"""The metrics endpoint: what Prometheus scrapes during a run is what the run measured.

A Grafana dashboard is only as good as these numbers, so the tests scrape a
real run over HTTP while it loads the built-in target, and check that the
counters only grow, that the last scrape equals the result exactly (counts,
error classes, histogram buckets), and that one process and two merged
processes look the same.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from runner.compile import compile_scenario  # noqa: E402
from runner.errors import UsageError  # noqa: E402
from runner.launch import execute  # noqa: E402
from runner.loader import load_scenario  # noqa: E402
from runner.metrics.histogram import bucket_bounds  # noqa: E402
from runner.metrics.recorder import RequestStats  # noqa: E402
from runner.metrics.timeseries import Bucket  # noqa: E402
from runner.metrics_endpoint import LE_SECONDS, MetricsEndpoint  # noqa: E402
from runner.snapshots import Snapshot, StepSnapshot  # noqa: E402

SCENARIO = """\
version: 1
name: metrics-endpoint
target: builtin
workers: {workers}
interval: 250ms
flows:
  - name: browse
    steps:
      - name: page
        path: /page/{{seq}}?delay=0.02
      - name: broken
        path: /fault/reset
      - name: server-error
        path: /nothing?status=500
stages:
  - name: warm
    requests: 60
    concurrency: 2
  - name: steady
    duration: 2500ms
    rate: 60/s
    max_in_flight: 20
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def compiled(tmp_path, text: str):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return compile_scenario(load_scenario(path), path)


def scrape(url: str) -> Samples:
    """Every sample of one scrape, keyed by sample name and sorted labels."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def matching(samples: Samples, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {key: v for (sample, key), v in samples.items()
            if sample == name and all((k, want) in key for k, want in labels.items())}


def by_label(samples: Samples, name: str, label: str, **labels: str) -> dict[str, float]:
    """The samples of ``name`` matching ``labels``, keyed by the value of one more label."""
    return {dict(key)[label]: v for key, v in matching(samples, name, **labels).items()}


class Scraper(threading.Thread):
    """Scrapes the endpoint every 100 ms until stopped, as Prometheus would (only faster)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.scrapes: list[Samples] = []
        self.failures: list[BaseException] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                self.scrapes.append(scrape(self.url))
            except Exception as exc:  # reported by the test, not lost in a thread
                self.failures.append(exc)

    def stop(self) -> list[Samples]:
        self.done.set()
        self.join(10)
        return self.scrapes


GROWING = ("_total", "_bucket", "_count", "_sum")


@pytest.mark.parametrize("workers", [1, 2])
def test_scrapes_during_a_run_grow_to_the_result(tmp_path, workers):
    plan = compiled(tmp_path, SCENARIO.format(workers=workers))
    endpoint = MetricsEndpoint(plan, 0).start()
    try:
        assert endpoint.port > 0
        scraper = Scraper(endpoint.url)
        scraper.start()
        try:
            # The run owns the main thread (workers: N installs signal handlers); the scraper is the thread.
            result = execute(plan, on_snapshot=endpoint.snapshot).to_dict()
        finally:
            during = scraper.stop()
        final = scrape(endpoint.url)
    finally:
        endpoint.stop()
    assert not scraper.failures

    # Mid-run: the open stage was seen running with requests counted.
    running = [s for s in during if value(s, "runner_stage_active", stage="steady") == 1
               and value(s, "runner_requests_total", stage="steady", step="page", outcome="ok") > 0]
    assert running, f"no scrape saw the steady stage running ({len(during)} scrapes)"
    assert value(running[0], "runner_stage_active", stage="warm") == 0

    # Counters only grow, scrape after scrape, up to the final one.
    for earlier, later in zip(during + [final], during[1:] + [final]):
        for key, amount in earlier.items():
            if key[0].endswith(GROWING):
                assert amount <= later.get(key, 0.0) + 1e-9, key

    # The final scrape is the result, exactly.
    assert value(final, "runner_run_info", scenario="metrics-endpoint") == 1
    assert matching(final, "runner_shard_up") == {(("source", str(n)),): 1.0 for n in range(workers)}
    for stage in result["stages"]:
        label = stage["name"]
        assert value(final, "runner_stage_active", stage=label) == 0
        assert value(final, "runner_in_flight", stage=label) == 0
        for entry in stage["by_request"]:
            where = {"stage": label, "step": entry["name"]}
            assert value(final, "runner_requests_total", outcome="ok", **where) == entry["ok"]
            assert value(final, "runner_requests_total", outcome="failed", **where) == entry["failed"]
            assert value(final, "runner_dropped_total", **where) == entry["dropped"]
            assert value(final, "runner_skipped_total", **where) == entry["skipped"]
            assert by_label(final, "runner_errors_total", "error_class", **where) == entry["errors"]
            assert by_label(final, "runner_responses_total", "code", **where) == entry["status_codes"]
            assert value(final, "runner_latency_seconds_count", **where) == entry["requests"]
            buckets = by_label(final, "runner_latency_seconds_bucket", "le", **where)
            assert buckets["+Inf"] == entry["requests"]
            ordered = [buckets[le] for le in sorted(buckets, key=float)]
            assert ordered == sorted(ordered), "cumulative buckets never decrease"
            assert ordered[:-1] == expected_buckets(entry["latency_histogram"])
            true_sum = entry["latency_histogram"]["sum"] / 1e6
            assert value(final, "runner_latency_seconds_sum", **where) == pytest.approx(true_sum, rel=1 / 256)
    steady = {entry["name"]: entry for entry in result["stages"][1]["by_request"]}
    assert steady["broken"]["failed"] > 0 and steady["broken"]["errors"], "the reset fault shows as an error class"
    assert steady["server-error"]["status_codes"] == {"500": steady["server-error"]["requests"]}


def expected_buckets(histogram: dict) -> list[int]:
    """The le counts straight from the result's runner histogram: a bucket counts when all its values are <= le."""
    counts = []
    for le in LE_SECONDS:
        counts.append(sum(n for index, n in histogram["buckets"].items()
                          if bucket_bounds(int(index))[1] - 1 <= round(le * 1e6)))
    return counts


def snapshot(source: int, latencies_us: list[int], final: bool = False, elapsed: float = 1.0,
             in_flight: int = 0) -> Snapshot:
    stats = RequestStats()
    for latency in latencies_us:
        stats.response(200, 0, latency)
    return Snapshot(source, 0, "only", elapsed, Bucket(0), (StepSnapshot.of(stats),), in_flight=in_flight,
                    final=final)


ONE_STEP = """\
version: 1
name: edges
target: builtin
flow:
  - name: page
    path: /
stages:
  - name: only
    requests: 10
    concurrency: 1
"""


def test_le_edges_sources_merged_and_lost_sources(tmp_path):
    """A bucket counts under le only when all its values are <= le; sources add; a silent source is down."""
    with MetricsEndpoint(compiled(tmp_path, ONE_STEP), 0) as endpoint:
        # 1000 us is the lower bound of runner's bucket 1000..1003 us: le=1ms counts only 999;
        # 250 us is a bucket of its own (exact below 256 us).
        endpoint.snapshot(snapshot(0, [250, 999, 1000, 1003], in_flight=2))
        endpoint.snapshot(snapshot(1, [1004, 59_000_000, 90_000_000], in_flight=1))
        samples = scrape(endpoint.url)
        where = {"stage": "only", "step": "page"}
        bucket = by_label(samples, "runner_latency_seconds_bucket", "le", **where)
        assert bucket["0.0001"] == 0 and bucket["0.00025"] == 1 and bucket["0.0005"] == 1
        assert bucket["0.001"] == 2, "999 us and 250 us; 1000 us sits in a bucket reaching 1003 us"
        assert bucket["0.0025"] == 5 and bucket["60.0"] == 6 and bucket["+Inf"] == 7
        assert value(samples, "runner_requests_total", outcome="ok", **where) == 7
        assert value(samples, "runner_in_flight", stage="only") == 3
        assert value(samples, "runner_stage_active", stage="only") == 1
        assert matching(samples, "runner_shard_up") == {(("source", "0"),): 1, (("source", "1"),): 1}
        assert openmetrics_families(endpoint.url) >= {"runner_requests", "runner_latency_seconds", "runner_run"}

        endpoint.stale_after_s = 0.0  # source 0 has said nothing since
        endpoint.snapshot(snapshot(1, [1004, 59_000_000, 90_000_000, 2000], final=True, elapsed=2.0))
        endpoint.mark_lost(1)
        time.sleep(0.01)
        samples = scrape(endpoint.url)
        assert matching(samples, "runner_shard_up") == {(("source", "0"),): 0, (("source", "1"),): 0}
        assert value(samples, "runner_requests_total", outcome="ok", **where) == 8, "a lost source's counts stay"
        assert value(samples, "runner_stage_active", stage="only") == 1, "source 0 has not finished"


def openmetrics_families(url: str) -> set[str]:
    """What Prometheus gets when it asks for OpenMetrics, read by the strict OpenMetrics parser."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as strict

    request = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
        return {family.name for family in strict(answer.read().decode())}


def test_a_taken_port_is_a_usage_error(tmp_path):
    plan = compiled(tmp_path, ONE_STEP)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"--metrics-port {port}: .*already in use") as caught:
            MetricsEndpoint(plan, port).start()
    assert caught.value.exit_code == 2


def test_stop_frees_the_port(tmp_path):
    """The next run can listen on the same port (a scraped connection left in TIME_WAIT does not block it)."""
    plan = compiled(tmp_path, ONE_STEP)
    endpoint = MetricsEndpoint(plan, 0).start()
    port = endpoint.port
    assert value(scrape(endpoint.url), "runner_stage_active", stage="only") == 0, "before any snapshot"
    endpoint.stop()
    endpoint.stop()
    with MetricsEndpoint(plan, port) as again:
        assert again.port == port
        assert value(scrape(again.url), "runner_in_flight", stage="only") == 0


def test_prometheus_client_is_imported_only_by_the_endpoint():
    """A run without --metrics-port does not pay for (or need) prometheus_client."""
    code = ("import sys, runner.cli, runner.launch, runner.metrics_endpoint; "
            "sys.exit('prometheus_client' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
