"""One run from plan to result: machine limits, target, processes, event loop.

This is the only module that knows the order of things around a run; it
holds no load-test logic itself. With ``workers: N`` the plan is split
(:mod:`runner.sharding`) across N processes, each with its own event loop and
engine, and their measurements are merged exactly (histograms add bucket
counts; nothing is averaged).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterator

from .engines import select_engine
from .errors import RunnerError, UsageError
from .executor import Executor, ProgressCallback, RunControl, StageOutcome
from .health import LoopLagMonitor, cpu_seconds
from .limits import ensure_open_files
from .plan import Plan
from .result import RunResult, build_result
from .snapshots import Snapshot
from .sharding import share

#: Receives interval snapshots (runner.snapshots.Snapshot) from every process of a run.
SnapshotCallback = Callable[[Snapshot], None]


@dataclass
class ProcessReport:
    """What one process measured, in picklable form."""

    outcomes: list[StageOutcome]
    engine: str
    engine_reason: str
    started_wall: float
    duration_s: float
    health: dict = field(default_factory=dict)
    signal_name: str | None = None


@contextlib.contextmanager
def target_url(plan: Plan) -> Iterator[tuple[str, Plan]]:
    """Yield the base URL to load and the plan to load it with.

    Without a target URL in the plan, a freshly started built-in target's URL;
    when it serves https (``builtin: {tls: true}``), the plan yielded trusts
    its throwaway CA instead of the system's (:func:`runner.target.certificate.trust_ca`).
    The CA file lives until the block ends, so worker processes, which get the
    plan pickled and build their TLS contexts from it, can still read it.
    """
    if plan.target_url is not None:
        yield plan.target_url, plan
        return
    from .target.process import BuiltinTarget

    with BuiltinTarget(plan.builtin) as server:
        if server.ca_file is None:
            yield server.url, plan
        else:
            from .target.certificate import trust_ca

            yield server.url, trust_ca(plan, server.ca_file)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it is a dependency), the standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def execute(plan: Plan, *, on_progress: ProgressCallback | None = None,
            control: RunControl | None = None, on_snapshot: SnapshotCallback | None = None,
            cluster: str | None = None, shards: int | None = None,
            on_lost: Callable[[int], None] | None = None, on_shards: Callable[[int], None] | None = None) -> RunResult:
    """Run every stage of ``plan`` and return the result (also after SIGINT/SIGTERM).

    ``on_snapshot`` receives every process's interval snapshots (see
    :mod:`runner.snapshots`), in this process, whatever the number of workers.

    With a Dask scheduler address (``cluster``, else ``RUNNER_CLUSTER``, else
    the scenario's ``cluster:``) the plan runs as ``shards`` shards (default:
    one per Dask worker) on that cluster (:mod:`runner.cluster`, imported only
    then); callbacks are still called on this thread, ``on_shards(count)``
    once the number of shards is known (before their first snapshot), and
    ``on_lost(source)`` when a shard is given up as lost (its snapshots stop).
    """
    from .cluster import cluster_address  # small; it imports Dask only when a run uses a cluster

    control = control or RunControl()
    address = cluster_address(plan, cluster)
    if address is None:
        if shards is not None:
            raise UsageError("--shards needs a Dask cluster: --cluster tcp://HOST:8786, 'cluster:' in the "
                             "scenario, or RUNNER_CLUSTER")
        ensure_open_files(plan.max_concurrency)
        with target_url(plan) as (base_url, run_plan):
            if plan.workers > 1:
                reports = _run_processes(run_plan, base_url, control, on_snapshot)
            else:
                reports = [run_here(run_plan, base_url, control, on_progress, on_snapshot=on_snapshot)]
        # The scenario's own plan: the result describes what was asked, not a temporary CA file's path.
        return build_result(plan, base_url, reports, control)
    from .cluster import run_on_cluster

    with target_url(plan) as (base_url, run_plan):
        run = run_on_cluster(run_plan, base_url, address, shards=shards, control=control,
                             on_snapshot=on_snapshot, on_progress=on_progress, on_lost=on_lost, on_shards=on_shards)
    return build_result(plan, base_url, run.reports, control, shards=run.shards, notes=run.notes)


def run_here(plan: Plan, base_url: str, control: RunControl,
             on_progress: ProgressCallback | None = None, signals: tuple = ("SIGINT", "SIGTERM"),
             on_snapshot: SnapshotCallback | None = None, start_at: float | None = None,
             between_stages: Callable[[int], Awaitable[None]] | None = None) -> ProcessReport:
    """Run ``plan`` in this process on a fresh event loop.

    ``start_at`` (wall clock): set up the loop and the engine now, send the
    first request not before then; the shards of a distributed run use it to
    begin together, their setup time already spent. ``between_stages(i)`` is
    awaited before stage ``i`` (i >= 1): shards meet there, so every stage
    starts together, not only the first.
    """
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_run(plan, base_url, control, on_progress, signals, on_snapshot, start_at,
                               between_stages))


async def _run(plan: Plan, base_url: str, control: RunControl, on_progress: ProgressCallback | None,
               signals: tuple, on_snapshot: SnapshotCallback | None = None,
               start_at: float | None = None,
               between_stages: Callable[[int], Awaitable[None]] | None = None) -> ProcessReport:
    engine_class, reason = select_engine(plan, base_url)
    engine = engine_class(plan, base_url)
    if start_at is not None:
        while not control.stopping and (left := start_at - time.time()) > 0:
            await asyncio.sleep(min(left, 0.05))
    monitor = LoopLagMonitor()
    started_wall, started, cpu_before = time.time(), time.perf_counter(), cpu_seconds()
    monitor.start()
    executor = Executor(plan, engine, control, on_progress, on_snapshot, monitor,  # snapshots carry lag
                        between_stages)
    watcher = asyncio.create_task(_abort_when_lost(plan, base_url, executor, control)) if plan.abort_on_fail else None
    with _stop_on_signals(control, signals):
        try:
            outcomes = await executor.run()
        finally:
            if watcher is not None:
                watcher.cancel()
            await engine.aclose()
            await monitor.stop()
    duration = time.perf_counter() - started
    health = process_health(monitor, cpu_seconds() - cpu_before, duration)
    return ProcessReport(outcomes, engine.name, reason, started_wall, duration, health, control.signal_name)


async def _abort_when_lost(plan: Plan, base_url: str, executor: Executor, control: RunControl) -> None:
    """abort_on_fail: judge the thresholds on the numbers so far, once per interval, after the delay."""
    started = time.perf_counter()
    while not control.stopping:
        await asyncio.sleep(plan.interval_s)
        elapsed = time.perf_counter() - started
        if elapsed < plan.abort_delay_s:
            continue
        outcomes = list(executor.completed) + ([executor.live] if executor.live is not None else [])
        if not outcomes:
            continue
        report = ProcessReport(outcomes, "", "", time.time() - elapsed, elapsed, _EMPTY_HEALTH)
        failed = failed_threshold(plan, base_url, [report])
        if failed is not None:
            control.aborted = {"reason": failed, "at_s": round(elapsed, 3)}
            control.stopping = True
            return


def failed_threshold(plan: Plan, base_url: str, reports: list[ProcessReport]) -> str | None:
    """abort_on_fail's question on the numbers so far: the first threshold that failed, worded, or None.

    "No data" does not count: a metric nobody has measured yet has not failed.
    """
    failed = [t for t in build_result(plan, base_url, reports, RunControl()).to_dict()["thresholds"]
              if not t["passed"] and not (t["reason"] or "").startswith("no data")]
    if not failed:
        return None
    return f"threshold failed: {failed[0]['expression']} (measured {failed[0]['actual']})"


_EMPTY_HEALTH = {"cpu_s": 0.0, "cpu_percent": 0.0, "loop_lag_ms": {"p50": 0.0, "p99": 0.0, "max": 0.0},
                 "event_loop": "", "peak_rss_mb": 0.0}


def process_health(monitor: LoopLagMonitor, cpu_s: float, duration_s: float) -> dict:
    """CPU, memory and event-loop lag of this process: is the generator, not the server, the limit?"""
    lag = monitor.lag
    health = {
        "cpu_s": round(cpu_s, 3),
        "cpu_percent": round(100.0 * cpu_s / duration_s, 1) if duration_s > 0 else 0.0,
        "loop_lag_ms": {key: round(lag.quantile(q) / 1000.0, 3) for key, q in (("p50", 0.5), ("p99", 0.99))},
        "event_loop": _loop_kind(asyncio.get_running_loop()),
        "peak_rss_mb": 0.0,
    }
    health["loop_lag_ms"]["max"] = round(lag.max_us / 1000.0, 3)
    health["peak_rss_mb"] = peak_rss_mb()
    return health


def peak_rss_mb() -> float:
    """This process's own peak resident memory in MB.

    Linux's ``VmHWM`` first: ``getrusage``'s ``ru_maxrss`` survives ``exec``,
    so a runner started by a large process (a test session, a benchmark
    harness) would report its parent's size at the moment it was spawned.
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return 0.0
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


@contextlib.contextmanager
def _stop_on_signals(control: RunControl, names: tuple) -> Iterator[None]:
    """First signal: stop issuing, let in-flight requests finish within the grace; second: cut them off."""
    loop = asyncio.get_running_loop()
    installed = []

    def stop(name: str) -> None:
        if control.stopping:
            control.hurry = True
            return
        control.stopping = True
        control.signal_name = name

    for name in names:
        sig = getattr(signal, name)
        try:
            loop.add_signal_handler(sig, stop, name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


# -- several processes --------------------------------------------------------------------------

#: The exit code of a bug (see runner.cli); a worker's bug is reported with that code and its own trace.
_EXIT_INTERNAL = 70


class WorkerFailed(RunnerError):
    """A worker process failed: the parent exits with the worker's code and message.

    ``trace`` is the worker's own formatted traceback when the failure was a
    bug; the command line prints it before the message. A usage error (a
    scenario the engine refuses, say) has none: it is the user's to fix.
    """

    def __init__(self, message: str, exit_code: int = _EXIT_INTERNAL, trace: str | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.trace = trace


@dataclass(frozen=True)
class WorkerError:
    """What a worker sends instead of its report when it fails: plain data that always unpickles.

    The exception itself is not sent: a RunnerError subclass may need
    arguments to be rebuilt, and a bug's exception may not pickle at all.
    """

    exit_code: int
    message: str
    trace: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> "WorkerError":
        if isinstance(exc, RunnerError) and exc.exit_code != _EXIT_INTERNAL:
            return cls(exc.exit_code, str(exc))
        return cls(_EXIT_INTERNAL, "", traceback.format_exc())

    def raise_in_parent(self, worker: str) -> None:
        if self.trace is None:
            raise WorkerFailed(self.message, self.exit_code)
        raise WorkerFailed(f"{worker} failed: internal error (this is a bug in runner; please report it "
                           f"with the trace above)", self.exit_code, self.trace)


def _process_main(plan: Plan, base_url: str, connection, meeting: tuple | None = None) -> None:
    """Entry point of a worker process: run its share and send the report, or what went wrong, back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards signals as SIGTERM
    control = RunControl()
    try:
        try:
            # Snapshots go up the same pipe as the report, once per interval: the parent's live view,
            # metrics endpoint and progress see every process.
            between = _stage_meeting(*meeting, plan.process_count, control) if meeting is not None else None
            connection.send(run_here(plan, base_url, control, None, signals=("SIGTERM",),
                                     on_snapshot=connection.send, between_stages=between))
        except Exception as exc:
            connection.send(WorkerError.from_exception(exc))
    finally:
        connection.close()


def _stage_meeting(finished, condition, parties: int, control: RunControl):
    """Before each stage after the first, wait until every process has finished the one before.

    ``finished[i]`` counts the processes done with stage ``i``. Without the
    meeting a stage would begin in each process when that process's previous
    stage ended, and an open stage's interleaved timelines would be offset by
    however long the stage before took in each. The wait runs in a thread,
    so the process's loop stays free, and ends early when the run stops (a
    process that dies ends the whole run in the parent anyway).
    """
    def meet(stage: int) -> None:
        with condition:
            finished[stage - 1] += 1
            condition.notify_all()
            while finished[stage - 1] < parties and not control.stopping:
                condition.wait(0.25)

    async def between_stages(stage: int) -> None:
        await asyncio.get_running_loop().run_in_executor(None, meet, stage)

    return between_stages


def _run_processes(plan: Plan, base_url: str, control: RunControl,
                   on_snapshot: SnapshotCallback | None = None) -> list[ProcessReport]:
    context = multiprocessing.get_context("spawn")
    children = []
    meeting = (context.Array("i", max(len(plan.stages), 1), lock=False), context.Condition())
    for part in range(plan.workers):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_process_main,
                                  args=(share(plan, part, plan.workers), base_url, sender, meeting),
                                  name=f"runner-worker-{part}", daemon=True)
        process.start()
        sender.close()
        children.append((process, receiver))

    def forward(signum, frame) -> None:
        if not control.stopping:
            control.stopping = True
            control.signal_name = signal.Signals(signum).name
        for process, _ in children:
            if process.is_alive():
                process.terminate()  # SIGTERM: first stops issuing, a second one cuts off in-flight requests

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _collect_reports(children, on_snapshot)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for process, _ in children:
            if process.is_alive():
                process.kill()  # only after a failure: the others' numbers would not be reported anyway


def _collect_reports(children: list, on_snapshot: SnapshotCallback | None = None) -> list[ProcessReport]:
    """Every worker's report, in worker order; the first worker to fail fails the run at once.

    All pipes are watched together, so a worker that fails while others are
    still running is reported now, not after the others have finished.
    Snapshots arriving meanwhile go to ``on_snapshot``.
    """
    reports: list[ProcessReport | None] = [None] * len(children)
    pending = {receiver: (part, process) for part, (process, receiver) in enumerate(children)}
    while pending:
        for receiver in multiprocessing.connection.wait(list(pending), timeout=0.1):
            part, process = pending[receiver]
            message = _receive(process, receiver)
            if isinstance(message, Snapshot):
                if on_snapshot is not None:
                    on_snapshot(message)
                continue
            del pending[receiver]
            reports[part] = message
            process.join(10)
    return reports


def _receive(process, receiver) -> ProcessReport:
    """One worker's report; its failure raised as what it was (WorkerFailed)."""
    try:
        message = receiver.recv()
    except EOFError:  # the pipe closed with nothing in it: the process died (a signal, the OOM killer)
        process.join(1)
        raise WorkerFailed(f"{process.name} exited with code {process.exitcode} before reporting") from None
    if isinstance(message, WorkerError):
        message.raise_in_parent(process.name)
    return message
