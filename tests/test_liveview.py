"""The live view: what it prints must be what the run measured, and watching must never hurt the run.

Plain lines (stderr not a terminal) are checked figure by figure against
the final result of real runs; the terminal table is drawn on a forced rich
console; snapshots arrive from several threads at once, as they do when a
Dask client thread and the main thread both deliver.
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time
from array import array

import pytest
from rich.console import Console

from runner.cli import _watching, main
from runner.compile import compile_scenario
from runner.launch import execute
from runner.liveview import UNCLASSED, LiveView, plain_line, stage_figures
from runner.loader import load_scenario
from runner.metrics.histogram import bucket_index
from runner.metrics.timeseries import Bucket
from runner.progress import IntervalFeed
from runner.snapshots import Snapshot, StepSnapshot

from .conftest import write_scenario

TWO_STAGES = """\
version: 1
name: watched
target: {target}
workers: {workers}
interval: 200ms
flows:
  - name: pages
    steps:
      - name: page
        path: /page/{{seq}}
      - name: missing
        path: /nothing?status=404&delay=0.005
      - name: broken
        path: /fault/reset
stages:
  - name: closed
    requests: 3000
    concurrency: 6
  - name: open
    rate: 1000/s
    duration: 1s
    max_in_flight: 2
"""


def plan_of(tmp_path, text: str):
    path = write_scenario(tmp_path, text)
    return compile_scenario(load_scenario(path), path)


def small_plan(tmp_path, workers: int = 1):
    return plan_of(tmp_path, f"""\
version: 1
name: small
target: http://127.0.0.1:9
workers: {workers}
flow: [{{name: page, path: /}}]
stages:
  - {{name: first, requests: 1000, concurrency: 4}}
  - {{name: second, rate: 100/s, duration: 30s, max_in_flight: 5}}
""")


def latency_pairs(*values_us: int) -> array:
    counts: dict[int, int] = {}
    for value in values_us:
        counts[bucket_index(value)] = counts.get(bucket_index(value), 0) + 1
    pairs = array("q")
    for index in sorted(counts):
        pairs.extend((index, counts[index]))
    return pairs


def snap(source: int, stage: int, elapsed: float, ok: int, failed: int = 0, *, final: bool = False,
         dropped: int = 0, errors: dict | None = None, tick: int = 0, in_flight: int = 0, scheduled: int = 0,
         interval_ok: int = 0, latency_us: int = 1000) -> Snapshot:
    """A hand-made snapshot: ``ok`` + ``failed`` requests so far, all at ``latency_us``."""
    step = StepSnapshot(ok=ok, failed=failed, dropped=dropped, errors=dict(errors or {}),
                        latency=latency_pairs(*[latency_us] * (ok + failed)))
    bucket = Bucket(tick, sent=interval_ok, ok=interval_ok, latency=latency_pairs(*[latency_us] * interval_ok))
    return Snapshot(source, stage, ("first", "second")[stage], elapsed, bucket, (step,), in_flight=in_flight,
                    scheduled=scheduled, final=final)


# -- plain lines ----------------------------------------------------------------------------------------


def test_plain_lines_every_period_and_at_the_end(tmp_path):
    plan = small_plan(tmp_path)
    out = io.StringIO()
    view = LiveView(plan, out, log_every_s=10.0)
    assert not view.tty
    for second in range(1, 10):
        view.snapshot(snap(0, 0, float(second), ok=50 * second, tick=second - 1, interval_ok=50, in_flight=4))
    assert out.getvalue() == "", "nothing before 10 s of the stage: CI logs stay short"
    view.snapshot(snap(0, 0, 10.0, ok=500, tick=9, interval_ok=50, in_flight=4))
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("stage first (closed 4): 500/1,000 requests 50%, 10.0s; last interval 50 req/s, "
                               "p50 1.00 ms, p99 1.00 ms")
    assert "in flight 4, dropped 0 | generator ok" in lines[0]
    view.snapshot(snap(0, 0, 12.5, ok=990, failed=10, errors={"timeout": 10}, tick=12, interval_ok=20, final=True))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1] == ("stage first ended: 1,000 requests in 12.5s, 80 req/s, p50 1.00 ms, p99 1.00 ms | "
                        "failed 10 (timeout 10), dropped 0 | generator ok")
    view.finish()
    assert len(out.getvalue().splitlines()) == 2, "finish adds nothing for stages that ended"


def test_a_stage_ends_when_every_source_has_ended(tmp_path):
    plan = small_plan(tmp_path, workers=2)
    out = io.StringIO()
    view = LiveView(plan, out)
    view.snapshot(snap(0, 0, 3.0, ok=500, final=True))
    assert out.getvalue() == ""
    view.snapshot(snap(1, 0, 3.2, ok=480, failed=20, final=True))
    line = out.getvalue().strip()
    assert line.startswith("stage first ended: 1,000 requests in 3.2s, 312 req/s")
    assert f"failed 20 ({UNCLASSED} 20)" in line, "failures without an error class are the status rule's or a check's"
    assert "sources #0 500, #1 500" in line


def test_dropped_arrivals_make_the_generator_doubtful(tmp_path):
    plan = small_plan(tmp_path)
    out = io.StringIO()
    view = LiveView(plan, out, log_every_s=1.0)
    view.snapshot(snap(0, 1, 2.0, ok=150, dropped=50, tick=1, interval_ok=75, in_flight=5, scheduled=200))
    line = out.getvalue().strip()
    assert "dropped 50" in line
    assert line.endswith("generator saturated? (50 dropped; in flight at max_in_flight)")


def test_an_open_stage_behind_its_timeline_is_doubtful(tmp_path):
    plan = small_plan(tmp_path)
    figures = stage_figures(plan, plan.stages[1], [snap(0, 1, 10.0, ok=400, scheduled=400, tick=9)], 1)
    assert figures.reasons == ["behind timeline (40% of arrivals due)"]
    figures = stage_figures(plan, plan.stages[1], [snap(0, 1, 10.0, ok=995, scheduled=998, tick=9)], 1)
    assert figures.verdict == "ok"


def test_finish_ends_stages_whose_sources_never_all_ended(tmp_path):
    plan = small_plan(tmp_path, workers=2)
    out = io.StringIO()
    view = LiveView(plan, out)
    view.snapshot(snap(0, 0, 1.0, ok=100, tick=0, interval_ok=100))
    view.finish()
    assert out.getvalue().startswith("stage first ended: 100 requests in 1.0s")
    view.snapshot(snap(1, 0, 1.0, ok=100, final=True))
    assert out.getvalue().count("\n") == 1, "nothing after finish"


@pytest.mark.parametrize("workers", [1, 2])
def test_plain_lines_agree_with_the_result(tmp_path, workers):
    """A real run on the built-in target: every end line's figures are the result's."""
    plan = plan_of(tmp_path, TWO_STAGES.format(target="builtin", workers=workers))
    out = io.StringIO()
    view = LiveView(plan, out)
    result = execute(plan, on_snapshot=view.snapshot).to_dict()
    view.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # short stages: only their end lines
    pattern = re.compile(r"stage (\S+) ended: ([\d,]+) requests in ([\d.]+)s, ([\d,]+) req/s, "
                         r"p50 ([\d.,]+) ms, p99 ([\d.,]+) ms \| failed ([\d,]+) \((.*)\), dropped ([\d,]+)")
    for line, stage in zip(lines, result["stages"]):
        found = pattern.match(line)
        assert found, line
        name, requests, _, rps, _, p99, failed, errors, dropped = found.groups()
        number = lambda text: int(text.replace(",", ""))  # noqa: E731
        assert name == stage["name"]
        assert number(requests) == stage["requests"]
        assert abs(number(rps) - stage["rps"]) <= 1
        assert float(p99) == pytest.approx(stage["latency_ms"]["p99"], rel=0.01, abs=0.01)
        assert number(failed) == stage["failed"]
        assert number(dropped) == stage["dropped"]
        shown = dict((part.rsplit(" ", 1)[0], number(part.rsplit(" ", 1)[1])) for part in errors.split(", "))
        unclassed = stage["failed"] - sum(stage["errors"].values())
        assert shown == {**stage["errors"], UNCLASSED: unclassed}
    assert result["stages"][1]["dropped"] > 0, "two slots at 1000/s, 5 ms+ per iteration: most arrivals find none free"
    assert "generator saturated? (" in lines[1]
    if workers == 2:
        assert " | sources #0 " in lines[0] and ", #1 " in lines[0]


# -- the terminal table ---------------------------------------------------------------------------------


def terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(force_terminal=True, file=buffer, width=120, color_system=None), buffer


def wait_for(buffer: io.StringIO, text: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in buffer.getvalue():
        assert time.monotonic() < deadline, f"{text!r} never drawn:\n{buffer.getvalue()}"
        time.sleep(0.02)


def test_terminal_table_shows_stages_and_sources(tmp_path):
    plan = small_plan(tmp_path, workers=2)
    console, buffer = terminal()
    view = LiveView(plan, console=console).start()
    assert view.tty
    wait_for(buffer, "waiting")  # drawn at start, before any snapshot
    view.snapshot(snap(0, 0, 1.0, ok=300, tick=0, interval_ok=300, in_flight=2))
    view.snapshot(snap(1, 0, 1.0, ok=200, failed=7, errors={"reset": 7}, tick=0, interval_ok=207, in_flight=2))
    wait_for(buffer, "by source")
    view.finish()
    drawn = buffer.getvalue()
    assert "runner: small" in drawn and "first" in drawn and "closed 4" in drawn and "open 100/s" in drawn
    assert "stage first by source" in drawn
    rows = [line.split() for line in drawn.splitlines()]
    assert ["#0", "1.0s", "300", "300", "2", "running"] in rows
    assert ["#1", "1.0s", "207", "207", "2", "running"] in rows
    assert "first errors: reset 7" in drawn
    tail = drawn[drawn.rindex("\x1b[?25h"):]  # the cursor shown again, then every drawn line erased
    erased = tail.replace("\x1b[?25h", "").replace("\x1b[1A", "").replace("\x1b[2K", "").replace("\r", "")
    assert tail.endswith("\x1b[2K") and erased == "", "the view takes itself off the terminal (transient)"


def test_one_source_has_no_source_table(tmp_path):
    plan = small_plan(tmp_path)
    console, buffer = terminal()
    view = LiveView(plan, console=console).start()
    view.snapshot(snap(0, 0, 1.0, ok=300, tick=0, interval_ok=300))
    wait_for(buffer, "300")
    view.finish()
    assert "by source" not in buffer.getvalue()


# -- threads, the CLI and reporters ---------------------------------------------------------------------


@pytest.mark.parametrize("tty", [False, True])
def test_snapshots_from_two_threads_at_once(tmp_path, tty):
    plan = small_plan(tmp_path, workers=2)
    console, buffer = terminal()
    view = LiveView(plan, io.StringIO(), log_every_s=0.5, console=console if tty else None).start()
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def feed(source: int) -> None:
        try:
            start.wait()
            for tick in range(400):
                view.snapshot(snap(source, tick // 200, tick * 0.05, ok=tick, tick=tick, interval_ok=1,
                                   final=tick in (199, 399)))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(source,)) for source in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    view.finish()
    assert errors == []
    figures = view.figures()
    assert [f.requests for f in figures] == [2 * 199, 2 * 399]
    assert all(f.done for f in figures)


def test_quiet_run_prints_nothing_on_stderr(tmp_path, capsys, builtin_target):
    scenario = write_scenario(tmp_path, TWO_STAGES.format(target=builtin_target.url, workers=1))
    assert main(["run", str(scenario), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_a_run_in_ci_logs_prints_plain_stage_lines(tmp_path, capsys, builtin_target):
    scenario = write_scenario(tmp_path, TWO_STAGES.format(target=builtin_target.url, workers=1))
    assert main(["run", str(scenario)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == ["stage closed ended", "stage open ended"]
    assert "\x1b" not in "".join(err), "no terminal control codes in logs"


def test_interval_feed_sums_sources_once_per_tick():
    heard: list[dict] = []

    class Listener:
        def interval(self, update):
            heard.append(update)

    feed = IntervalFeed([Listener()])
    feed.snapshot(snap(0, 0, 1.0, ok=10, tick=0))
    feed.snapshot(snap(1, 0, 1.01, ok=12, failed=1, tick=0))  # the same tick from the other source
    feed.snapshot(snap(1, 0, 2.0, ok=20, tick=1))
    feed.snapshot(snap(0, 0, 2.5, ok=30, final=True, tick=2))
    assert heard == [
        {"stage": "first", "completed": 10, "failed": 0, "elapsed_s": 1.0},
        {"stage": "first", "completed": 30, "failed": 0, "elapsed_s": 2.0},
        {"stage": "first", "completed": 50, "failed": 0, "elapsed_s": 2.5},
    ]


def test_watchers_end_even_when_one_fails_to_start():
    events: list[str] = []

    class Watcher:
        def __init__(self, name: str, fail: bool = False):
            self.name, self.fail = name, fail

        def start(self):
            if self.fail:
                raise OSError("port in use")
            events.append(f"start {self.name}")

        def snapshot(self, snapshot):
            raise RuntimeError("a watcher's bug")

        def finish(self):
            events.append(f"finish {self.name}")

    with _watching([Watcher("a"), Watcher("b")]) as callback:
        callback(None)  # a watcher raising does not reach the run
    assert events == ["start a", "start b", "finish b", "finish a"]
    events.clear()
    with pytest.raises(OSError):
        with _watching([Watcher("a"), Watcher("b", fail=True)]):
            pass
    assert events == ["start a", "finish a"]


def test_plain_line_of_a_stage_not_started(tmp_path):
    plan = small_plan(tmp_path)
    figures = stage_figures(plan, plan.stages[0], [], 1)
    assert not figures.started
    assert plain_line(figures).startswith("stage first (closed 4): 0/1,000 requests 0%")


@pytest.mark.parametrize("host, announced", [
    (None, r"http://127\.0\.0\.1:\d+/metrics"),  # the default: loopback only
    ("::1", r"http://\[::1\]:\d+/metrics"),  # --metrics-host (0.0.0.0 or :: would open it to other hosts)
])
def test_metrics_port_serves_during_the_run_and_is_announced(tmp_path, capsys, monkeypatch, builtin_target,
                                                             host, announced):
    """--metrics-port is one more snapshot consumer: it says where it listens and serves the final numbers."""
    pytest.importorskip("prometheus_client")
    if host == "::1":
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback on this machine: {exc}")
    import urllib.request

    from runner import metrics_endpoint

    scraped: list[str] = []
    real_stop = metrics_endpoint.MetricsEndpoint.stop

    def stop_after_a_scrape(self):
        with urllib.request.urlopen(self.url, timeout=5) as answer:  # the reports are written; still serving
            scraped.append(answer.read().decode())
        real_stop(self)

    scenario = write_scenario(tmp_path, TWO_STAGES.format(target=builtin_target.url, workers=1))
    out = tmp_path / "result.json"
    monkeypatch.setattr(metrics_endpoint.MetricsEndpoint, "stop", stop_after_a_scrape)
    listen = ["--metrics-host", host] if host else []
    assert main(["run", str(scenario), "--metrics-port", "0", *listen, "--out", f"json={out}"]) == 0
    err = capsys.readouterr().err
    assert re.match(f"metrics on {announced}\n", err)
    assert out.exists() and scraped and 'runner_requests_total{' in scraped[0]


def test_metrics_host_without_a_port_is_a_usage_error(tmp_path, capsys, builtin_target):
    scenario = write_scenario(tmp_path, TWO_STAGES.format(target=builtin_target.url, workers=1))
    assert main(["run", str(scenario), "--metrics-host", "::1"]) == 2
    assert "--metrics-host needs --metrics-port" in capsys.readouterr().err


def test_narrow_terminal_gets_lines_and_sources_not_heard_yet_wait(tmp_path):
    plan = small_plan(tmp_path, workers=2)
    buffer = io.StringIO()
    view = LiveView(plan, console=Console(force_terminal=True, file=buffer, width=80, color_system=None)).start()
    view.snapshot(snap(0, 0, 1.0, ok=300, dropped=3, tick=0, interval_ok=300, in_flight=2))
    wait_for(buffer, "by source")
    view.finish()
    drawn = buffer.getvalue()
    assert "first closed 4" in drawn and "300 requests · last interval 300 req/s" in drawn
    assert "saturated? 3 dropped" in drawn
    rows = [line.split() for line in drawn.splitlines()]
    assert ["#1", "waiting"] in rows, "a source not heard from yet is listed"
    assert all(len(line) <= 80 for line in drawn.replace("\x1b[2K", "").splitlines())
