"""One run from plan to result: machine limits, target, event loop, executor.

This is the only module that knows the order of things around a run; it
holds no load-test logic itself. The CLI calls :func:`execute` and hands the
:class:`~runner.result.RunResult` to reporters.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Iterator

from . import __version__
from .engines import select_engine
from .executor import Executor, ProgressCallback, RunControl, StageOutcome
from .limits import ensure_open_files
from .metrics.recorder import RequestStats
from .plan import Plan
from .result import RunResult, StageResult, group_by_name


@contextlib.contextmanager
def target_url(plan: Plan) -> Iterator[str]:
    """Yield the base URL to load: the scenario's, or a freshly started built-in target's."""
    if plan.target_url is not None:
        yield plan.target_url
        return
    from .target.process import BuiltinTarget
    from .target.server import TargetConfig

    builtin = plan.builtin
    config = TargetConfig(
        body_size=builtin.body_size, delay_min_s=builtin.delay_min_s,
        delay_max_s=builtin.delay_max_s, seed=builtin.seed,
    )
    with BuiltinTarget(config) as server:
        yield server.url


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it is a dependency), the standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def execute(plan: Plan, *, on_progress: ProgressCallback | None = None,
            control: RunControl | None = None) -> RunResult:
    """Run every stage of ``plan`` and return the result (also after SIGINT/SIGTERM)."""
    ensure_open_files(plan.max_concurrency)
    control = control or RunControl()
    with target_url(plan) as base_url:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(_run(plan, base_url, control, on_progress))


async def _run(plan: Plan, base_url: str, control: RunControl,
               on_progress: ProgressCallback | None) -> RunResult:
    engine_class, reason = select_engine(plan, base_url)
    engine = engine_class(plan, base_url)
    started_wall, started = time.time(), time.perf_counter()
    executor = Executor(plan, engine, control, on_progress)
    with _stop_on_signals(control):
        try:
            outcomes = await executor.run()
        finally:
            await engine.aclose()
    duration = time.perf_counter() - started
    result = build_result(plan, base_url, engine.name, reason, outcomes, started_wall, duration, control)
    result.generator.update(generator_health(asyncio.get_running_loop()))
    return result


def generator_health(loop: asyncio.AbstractEventLoop) -> dict:
    """Peak memory and CPU of this process: is the generator, not the server, the limit?"""
    try:
        import resource
    except ImportError:
        return {"peak_rss_mb": 0.0, "cpu_s": 0.0, "event_loop": _loop_kind(loop)}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),  # Linux reports KiB
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "event_loop": _loop_kind(loop),
    }


def _loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


@contextlib.contextmanager
def _stop_on_signals(control: RunControl) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop issuing requests and let in-flight ones finish."""
    loop = asyncio.get_running_loop()
    installed = []

    def stop(name: str) -> None:
        if control.stopping:  # a second signal: stop waiting for in-flight requests
            for task in asyncio.all_tasks(loop):
                if task is not asyncio.current_task(loop):
                    task.cancel()
            return
        control.stopping = True
        control.signal_name = name

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def build_result(plan: Plan, base_url: str, engine_name: str, engine_reason: str,
                 outcomes: list[StageOutcome], started_wall: float, duration_s: float,
                 control: RunControl) -> RunResult:
    names = [request.name for request in plan.flow]
    stages = []
    for outcome in outcomes:
        stages.append(StageResult(
            index=outcome.plan.index,
            name=outcome.plan.name,
            concurrency=outcome.plan.concurrency,
            planned_requests=outcome.plan.requests,
            planned_duration_s=outcome.plan.duration_s,
            started_at=outcome.started_at,
            duration_s=outcome.duration_s,
            by_request=group_by_name(names, outcome.stats),
            totals=RequestStats.merged(outcome.stats),
            interrupted=outcome.interrupted,
        ))
    per_flow_entry = [RequestStats.merged([o.stats[i] for o in outcomes]) for i in range(len(names))]
    return RunResult(
        scenario=plan.scenario_name,
        source=plan.source,
        target=base_url if plan.target_url else f"builtin ({base_url})",
        engine=engine_name,
        engine_reason=engine_reason,
        started_at=started_wall,
        finished_at=started_wall + duration_s,
        duration_s=duration_s,
        stages=stages,
        totals=RequestStats.merged([stage.totals for stage in stages]),
        by_request=group_by_name(names, per_flow_entry),
        runner_version=__version__,
        interrupted=control.stopping,
        interrupt_signal=control.signal_name,
    )
