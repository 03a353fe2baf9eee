"""Distributed runs: a plan's shards on the workers of an existing Dask cluster.

runner does not grow a cluster of its own. Dask distributed is already
deployed by Python teams on hosts, Kubernetes and HPC schedulers, and it
gives what a distributed load test needs: placing a task on a chosen worker,
events from workers to the client, and cluster-wide flags. This module is
the only one that imports it, and only when a run names a cluster, so a
local run never pays for it.

A distributed run is the ``workers: N`` split (:mod:`runner.sharding`) with
the processes on other hosts. Shard *k* of *n* is ``share(plan, k, n)``: an
even share of closed-model requests and users, every *n*-th arrival of the
one open-model timeline, every *n*-th row of a ``unique`` data table. It runs
on the same executor and engines as a local run (:func:`runner.launch.run_here`)
and returns the same :class:`~runner.launch.ProcessReport`, so the result
merges exactly as the multi-process one does.

How a run goes, and why each step is there:

* Connect with a deadline, list the workers, and probe each one with a
  direct call: it must import runner (of this version), and its clock is
  compared with the client's (offset ± half the round trip).
* Shard *k* is pinned to worker *k* with no retries and no other worker
  allowed, so a lost worker's shard is never re-run elsewhere, which would
  send its load twice. A per-shard claim flag refuses a second start even if
  a worker reappears at the same address.
* Every shard sleeps until one agreed wall-clock instant a little in the
  future (corrected by its clock offset), so open-model timelines line up
  across hosts; each shard's start skew is in the result.
* Shards send their interval snapshots (:mod:`runner.snapshots`) as Dask
  events on a topic of their own run. The client drains them on the calling
  thread, so ``on_snapshot`` and ``on_progress`` are called from the same
  thread as in a local run, and judges ``abort_on_fail`` on the merge of all
  shards, as the final result will.
* Stopping (Ctrl-C, SIGTERM, abort_on_fail) sets a cluster-wide stop flag
  (a second signal a hurry flag) that a small thread in every shard waits
  on; the shard then stops as a signalled local run does.
* A shard whose worker leaves the cluster, that falls silent, or whose
  result cannot be fetched is ``lost``: its numbers are those of its last
  snapshots, the others finish, and the caller exits with
  :data:`EXIT_SHARD_LOST`. A scheduler that stops answering loses every
  running shard after :data:`SCHEDULER_LOST_S`; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import pickle
import queue
import signal
import socket
import threading
import time
import traceback
import uuid
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator
from urllib.parse import urlsplit

from . import __version__
from .errors import RunnerError, UsageError, install_hint
from .executor import Progress, ProgressCallback, RunControl, StageOutcome
from .launch import _EMPTY_HEALTH, ProcessReport, WorkerError, WorkerFailed, failed_threshold, run_here
from .limits import ensure_open_files
from .plan import Plan
from .sharding import share
from .snapshots import LiveRun, Snapshot

#: Exit code of a run in which a shard was lost (its worker died or left): the numbers are partial.
EXIT_SHARD_LOST = 5
#: The environment variable naming the scheduler when neither --cluster nor the scenario does.
CLUSTER_ENV = "RUNNER_CLUSTER"

CONNECT_TIMEOUT_S = 10.0  # reaching the scheduler
WORKERS_WAIT_S = 10.0  # for the first worker (or enough threads for --shards) to join
CALL_TIMEOUT_S = 10.0  # any one request to the scheduler or a worker while setting up or collecting
LEAD_S = 2.0  # from submitting the shards to their common start: enough to ship the plan
LEAD_PER_SHARD_S = 0.02  # more shards, more plans to pickle and send before the start
PROBES = 3  # clock probes per worker after the first (which pays for imports)
POLL_S = 0.05  # the client's loop: snapshots, finished shards, stop flags
WATCH_EVERY_S = 1.0  # how often the client asks the scheduler which workers are there
SCHEDULER_LOST_S = 10.0  # a scheduler that has not answered this long has lost every running shard
SILENCE_MIN_S = 30.0  # a shard that sent nothing (no snapshot, no beat) for this long is lost
SILENCE_INTERVALS = 10  # ... or for this many intervals, when that is longer


class ClusterError(UsageError):
    """The cluster cannot take this run (unreachable scheduler, no workers, workers without runner): exit 2."""


class EveryShardLost(RunnerError):
    """Every shard was lost before it sent a single snapshot: there is no result to write, only why."""

    exit_code = EXIT_SHARD_LOST


def cluster_address(plan: Plan, given: str | None = None) -> str | None:
    """The scheduler to run on: the --cluster flag, else RUNNER_CLUSTER, else the scenario's ``cluster:``.

    The environment overrides the file so that one scenario can be pointed at
    a cluster (or at another one) from CI without editing it.
    """
    from runner.schemas.scenario import check_cluster

    for where, candidate in (("--cluster", given), (CLUSTER_ENV, os.environ.get(CLUSTER_ENV))):
        if candidate and candidate.strip():
            try:
                return check_cluster(candidate)
            except ValueError as exc:
                raise UsageError(f"{where}: {exc}") from None
    return plan.cluster  # checked when the scenario was loaded


@dataclass(frozen=True)
class RunNames:
    """Names of one run's Dask objects: unique per run, so runs sharing a scheduler never mix.

    The shards' events go to the topic named after the run's own Dask client:
    the scheduler keeps the last events of every topic, and a client's topic
    is the one it empties by itself after the client has gone
    (``distributed.scheduler.events-cleanup-delay``), so runs do not pile up
    in a long-lived scheduler's memory.
    """

    run_id: str
    topic: str

    @property
    def stop(self) -> str:
        return f"runner-{self.run_id}-stop"

    @property
    def hurry(self) -> str:
        return f"runner-{self.run_id}-hurry"

    def claim(self, index: int) -> str:
        return f"runner-{self.run_id}-claim-{index}"

    def done(self, stage: int, index: int) -> str:
        """Set by shard ``index`` when it finished stage ``stage`` (or by the client when it lost the shard)."""
        return f"runner-{self.run_id}-done-{stage}-{index}"

    def key(self, index: int) -> str:
        return f"runner-shard-{self.run_id}-{index}"


@dataclass
class ShardOutcome:
    """What a shard task returns (picklable): its report, or why it did not run."""

    report: ProcessReport | None = None
    error: WorkerError | None = None
    refused: str | None = None


@dataclass
class ClusterRun:
    """What :func:`run_on_cluster` hands back: reports to merge, and the ``shards`` block of the result."""

    reports: list[ProcessReport]
    shards: list[dict]
    notes: list[str] = field(default_factory=list)


# -- on the worker ---------------------------------------------------------------------------------


def pack(message: tuple) -> bytes:
    """A shard's message as event bytes: pickled, then zlib level 1.

    A snapshot is mostly sparse histogram pairs (bucket index, count): about
    30 KB pickled for one request step at a realistic latency spread, about
    5 KB compressed, for a fifth of a millisecond of CPU once per interval.
    The scheduler relays (and keeps the last of) every byte of it, so the
    compression is paid where it is cheap and saves where it adds up.
    """
    return zlib.compress(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL), 1)


def unpack(payload: bytes) -> tuple:
    return pickle.loads(zlib.decompress(payload))


def probe() -> dict:
    """Run on each worker before the shards: its clock, and proof that it imports this runner."""
    return {"time": time.time(), "runner": __version__}


def run_shard(plan: Plan, base_url: str, start_at: float, names: RunNames) -> ShardOutcome:
    """A Dask task: wait for the common start, run this shard's plan, return its report.

    ``start_at`` is on this worker's clock. The task thread is not the main
    thread, so no signal handlers: stopping comes from the run's stop flag,
    which :class:`_StopWatcher` waits on in a thread of its own.
    """
    from distributed import Event, get_client, get_worker

    worker = get_worker()
    client = get_client()
    index = plan.process_index
    claim = Event(names.claim(index), client=client)
    if claim.is_set():
        return ShardOutcome(refused=f"shard {index} had already started on a worker that was lost; not run twice")
    claim.set()

    last_sent = [0.0]  # monotonic time of the last message: a beat is only sent when nothing else was

    def send(kind: str, payload) -> None:
        last_sent[0] = time.monotonic()
        worker.log_event(names.topic, pack((kind, index, time.time(), payload)))

    def beat(every_s: float) -> None:
        if time.monotonic() - last_sent[0] >= every_s:
            send("beat", None)

    key = worker.get_current_task()

    def wanted() -> bool:  # False once the client cancelled this task, or went away and the scheduler released it
        task = worker.state.tasks.get(key)
        return task is not None and task.state not in ("cancelled", "released", "forgotten")

    control = RunControl()
    watcher = _StopWatcher(control, Event(names.stop, client=client), Event(names.hurry, client=client),
                           plan.interval_s, beat, wanted)
    watcher.start()
    try:
        ensure_open_files(plan.max_concurrency)
        report = run_here(plan, base_url, control, None, signals=(), on_snapshot=lambda snap: send("snapshot", snap),
                          start_at=start_at, between_stages=_stage_barrier(client, names, plan, control))
        return ShardOutcome(report=report)
    except Exception as exc:
        return ShardOutcome(error=WorkerError.from_exception(exc))
    finally:
        watcher.done.set()


def _stage_barrier(client, names: RunNames, plan: Plan, control: RunControl):
    """Before each stage after the first, wait until every shard has finished the one before.

    Without it a stage begins on each shard when that shard's previous stage
    ends, and an open stage's timelines, the point of the common start, would
    be offset by however long the stages before took on each host. The wait
    runs in a thread (Dask's Event is a blocking call), so the shard's loop
    stays free; it ends early when the run stops. A lost shard does not hold
    the others: the client sets its events when it gives the shard up.
    """
    from distributed import Event

    index, count = plan.process_index, plan.process_count

    def meet(stage: int) -> None:
        try:
            Event(names.done(stage - 1, index), client=client).set()
            for other in range(count):
                event = Event(names.done(stage - 1, other), client=client)
                while not control.stopping and not event.wait(timeout=0.25):
                    pass
        except Exception:  # the scheduler went away: the stop watcher ends this shard
            return

    async def between_stages(stage: int) -> None:
        await asyncio.get_running_loop().run_in_executor(None, meet, stage)

    return between_stages


class _StopWatcher(threading.Thread):
    """In a shard: waits on the run's stop and hurry flags, and sends a beat once per interval.

    Waiting happens on the scheduler (a long poll), so the shard's event loop
    never blocks on the network. The beat tells the client the shard is alive
    while no snapshot flows (before the start, while an open stage connects);
    while snapshots flow, they say so and no beat is sent.
    A shard stops on its own, at once, when nobody could collect its numbers
    any more: its task was cancelled (the client gave it up as lost, or the
    client went away and the scheduler released its task), or the scheduler
    has not answered for :data:`SCHEDULER_LOST_S`.
    """

    def __init__(self, control: RunControl, stop, hurry, every_s: float, beat: Callable[[float], None],
                 wanted: Callable[[], bool]):
        super().__init__(name="runner-shard-stop", daemon=True)
        self.control, self.stop, self.hurry = control, stop, hurry
        self.every_s = max(0.05, min(every_s, 1.0))
        self.beat, self.wanted = beat, wanted
        self.done = threading.Event()

    def run(self) -> None:
        control = self.control
        contact = time.monotonic()
        while not self.done.is_set():
            try:
                if not self.wanted():
                    control.stopping = control.hurry = True
                self.beat(self.every_s)
                if control.hurry:
                    self.done.wait(self.every_s)
                elif not control.stopping:
                    if self.stop.wait(timeout=self.every_s):
                        control.stopping = True
                elif self.hurry.wait(timeout=self.every_s):
                    control.hurry = True
                contact = time.monotonic()
            except Exception:
                if time.monotonic() - contact > SCHEDULER_LOST_S:
                    control.stopping = control.hurry = True
                self.done.wait(self.every_s)


# -- on the client ---------------------------------------------------------------------------------


def run_on_cluster(plan: Plan, base_url: str, address: str, *, shards: int | None = None,
                   control: RunControl | None = None, on_snapshot: Callable[[Snapshot], None] | None = None,
                   on_progress: ProgressCallback | None = None, on_lost: Callable[[int], None] | None = None,
                   on_shards: Callable[[int], None] | None = None) -> ClusterRun:
    """Run ``plan`` as shards on the Dask cluster at ``address``; every callback runs on this thread.

    ``on_shards(count)`` is told the number of shards once it is known (from
    the workers, after connecting) and before the first snapshot, so a live
    view knows how many sources make a stage whole; ``on_lost(source)`` when a
    shard is given up as lost (its snapshots stop; live views mark its rows).
    """
    if shards is not None and shards < 1:
        raise UsageError(f"--shards must be at least 1, not {shards}")
    distributed = _import_distributed()
    client = _connect(distributed, address)
    try:
        return _Run(distributed, client, plan, base_url, address, shards, control or RunControl(),
                    on_snapshot, on_progress, on_lost, on_shards).run()
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=5)


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("a distributed run needs Dask distributed on this machine and on the workers: "
                           + install_hint("cluster")) from None
    return distributed


def _connect(distributed, address: str):
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address...
        raise ClusterError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S:g} s "
                           f"({type(exc).__name__}: {exc}); is 'dask scheduler' running there, "
                           f"and is the address tcp://HOST:PORT?") from None


@dataclass
class _Shard:
    """The client's view of one shard while the run goes on."""

    index: int
    worker: str
    plan: Plan
    clock_offset_s: float  # worker clock minus client clock
    future: object = None
    status: str = "running"  # running | ok | lost
    reason: str | None = None
    report: ProcessReport | None = None
    last_heard: float = 0.0  # monotonic
    latest: dict = field(default_factory=dict)  # stage -> newest Snapshot
    series: dict = field(default_factory=dict)  # stage -> {interval index: Bucket}
    zero_wall: dict = field(default_factory=dict)  # stage -> wall time of its time zero (client clock)
    last_wall: float = 0.0  # client clock of the newest message

    def add(self, wall: float, snap: Snapshot) -> None:
        current = self.latest.get(snap.stage)
        if current is None or snap.final or (not current.final and snap.elapsed_s >= current.elapsed_s):
            self.latest[snap.stage] = snap
        self.series.setdefault(snap.stage, {})[snap.interval.index] = snap.interval
        self.zero_wall.setdefault(snap.stage, wall - snap.elapsed_s)

    def provisional(self) -> ProcessReport | None:
        """A report made of this shard's last snapshots: for a lost shard, and for abort_on_fail."""
        outcomes = []
        for stage_index in sorted(self.latest):
            snap = self.latest[stage_index]
            stage = self.plan.stages[stage_index]
            stats = [step.stats() for step in snap.steps]
            if stage.model == "closed":
                for part in stats:
                    part.adopt_latency_as_service()
            series = [self.series[stage_index][i] for i in sorted(self.series[stage_index])]
            outcomes.append(StageOutcome(stage, stats, self.zero_wall[stage_index], snap.elapsed_s, series,
                                         snap.late, snap.scheduled, interrupted=not snap.final))
        if not outcomes:
            return None
        started = outcomes[0].started_at
        duration = max(o.started_at + o.duration_s for o in outcomes) - started
        return ProcessReport(outcomes, "", "", started, duration, dict(_EMPTY_HEALTH))

    def requests(self) -> int:
        if self.report is not None:
            return sum(s.ok + s.failed for o in self.report.outcomes for s in o.stats)
        return sum(snap.requests for snap in self.latest.values())


class _Run:
    def __init__(self, distributed, client, plan: Plan, base_url: str, address: str, shards: int | None,
                 control: RunControl, on_snapshot, on_progress, on_lost, on_shards):
        self.distributed, self.client, self.plan, self.base_url = distributed, client, plan, base_url
        self.address, self.wanted, self.control = address, shards, control
        self.on_snapshot, self.on_progress, self.on_lost = on_snapshot, on_progress, on_lost
        self.on_shards = on_shards
        self.names = RunNames(uuid.uuid4().hex[:16], client.id)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.live = LiveRun()
        self.shards: list[_Shard] = []
        self.notes: list[str] = []
        self.start_at = 0.0
        self.flags_sent: set[str] = set()
        self.scheduler_quiet_since: float | None = None

    # -- setting up --------------------------------------------------------------------------------

    def run(self) -> ClusterRun:
        workers = self._workers()
        offsets = self._probe([address for address, _ in workers])
        count = self.wanted or len(workers)
        self._check_threads(workers, count)
        _check_builtin_reachable(self.plan, [address for address, _ in workers[:count]])
        if self.plan.workers > 1:
            self.notes.append(f"workers: {self.plan.workers} does not apply to a distributed run: one shard "
                              f"runs per Dask worker (start workers with --nworkers to use more cores)")
        base = replace(self.plan, workers=1, abort_on_fail=False)  # the client judges abort_on_fail on all shards
        for index in range(count):
            worker = workers[index % len(workers)][0]
            self.shards.append(_Shard(index, worker, share(base, index, count), offsets[worker]))
        if self.on_shards is not None:
            self.on_shards(count)
        try:
            self._submit()
            with _signals_to(self.control):
                self._watch()
            return self._finish()
        finally:
            self._cleanup()

    def _workers(self) -> list[tuple[str, int]]:
        """Running workers (address, threads), sorted; waits a little for them, never forever."""
        deadline = time.monotonic() + WORKERS_WAIT_S
        need = self.wanted or 1
        while True:
            workers = self._identity()
            threads = sum(n for _, n in workers)
            if workers and threads >= need:
                return workers
            if time.monotonic() >= deadline:
                have = f"{len(workers)} worker(s) with {threads} thread(s)" if workers else "no workers"
                raise ClusterError(f"the Dask scheduler at {self.address} has {have} after waiting "
                                   f"{WORKERS_WAIT_S:g} s; {need} shard(s) need {need} thread(s): start workers "
                                   f"with 'dask worker {self.address} --nthreads 1'")
            time.sleep(0.25)

    def _identity(self) -> list[tuple[str, int]]:
        try:
            info = self.client.sync(self.client.scheduler.identity, callback_timeout=CALL_TIMEOUT_S)
        except Exception as exc:
            raise ClusterError(f"the Dask scheduler at {self.address} did not answer within "
                               f"{CALL_TIMEOUT_S:g} s ({type(exc).__name__}: {exc})") from None
        return _running_workers(info)

    def _probe(self, workers: list[str]) -> dict[str, float]:
        """Each worker's clock offset (its clock minus ours); refuses workers that lack this runner.

        The first call imports runner on the workers and is slow; the offset
        comes from the quickest of the next calls (Cristian's method: the
        worker read its clock about half-way through the round trip).
        """
        best: dict[str, tuple[float, float]] = {}  # worker -> (round trip, offset)
        for attempt in range(PROBES + 1):
            sent = time.time()
            try:
                answers = self.client.run(probe, workers=workers, on_error="return", callback_timeout=CALL_TIMEOUT_S)
            except Exception as exc:
                raise ClusterError(f"the Dask workers did not answer within {CALL_TIMEOUT_S:g} s "
                                   f"({type(exc).__name__}: {exc})") from None
            received = time.time()
            for worker in workers:
                answer = answers.get(worker)
                if not isinstance(answer, dict):
                    raise ClusterError(f"Dask worker {worker} cannot run runner ({answer!r}): install the same "
                                       f"runner there ({install_hint('cluster')})")
                if answer["runner"] != __version__:
                    raise ClusterError(f"Dask worker {worker} has runner {answer['runner']}, this machine "
                                       f"{__version__}: install the same version everywhere")
                trip = received - sent
                if attempt and (worker not in best or trip < best[worker][0]):
                    best[worker] = (trip, answer["time"] - (sent + received) / 2.0)
        return {worker: offset for worker, (_, offset) in best.items()}

    def _check_threads(self, workers: list[tuple[str, int]], count: int) -> None:
        """Every shard needs a thread of its own at once, or it would wait for another shard to finish."""
        needed: dict[str, int] = {}
        for index in range(count):
            address = workers[index % len(workers)][0]
            needed[address] = needed.get(address, 0) + 1
        threads = dict(workers)
        short = [address for address, n in needed.items() if n > threads[address]]
        if short:
            raise ClusterError(f"{count} shards on {len(workers)} Dask worker(s) put {needed[short[0]]} shards on "
                               f"{short[0]}, which has {threads[short[0]]} thread(s): use --shards "
                               f"{len(workers)} or fewer, or start more workers")

    def _submit(self) -> None:
        client, names = self.client, self.names
        client.subscribe_topic(names.topic, self._on_event)
        for worker in {shard.worker for shard in self.shards}:
            client.subscribe_topic(worker, self._on_worker_event(worker))
        self.start_at = time.time() + LEAD_S + LEAD_PER_SHARD_S * len(self.shards)
        beginning = time.monotonic()
        for shard in self.shards:
            shard.last_heard = beginning + (self.start_at - time.time())
            shard.future = client.submit(run_shard, shard.plan, self.base_url, self.start_at + shard.clock_offset_s,
                                         names, key=names.key(shard.index), workers=[shard.worker],
                                         allow_other_workers=False, pure=False, retries=0)

    # -- while the shards run ----------------------------------------------------------------------

    def _on_event(self, event) -> None:
        """Dask's thread: hand the message to the client's loop (consumers are called on its thread)."""
        self.inbox.put(("message", event[1]))

    def _on_worker_event(self, worker: str):
        def handler(event) -> None:
            message = event[1]
            if isinstance(message, dict) and message.get("action") == "remove-worker":
                self.inbox.put(("removed", worker))
        return handler

    def _watch(self) -> None:
        silence_s = max(SILENCE_MIN_S, SILENCE_INTERVALS * self.plan.interval_s)
        next_identity = time.monotonic() + WATCH_EVERY_S
        next_tick = time.monotonic() + self.plan.interval_s
        while any(shard.status == "running" for shard in self.shards):
            self._drain(timeout=POLL_S)
            self._send_flags()
            now = time.monotonic()
            for shard in self.shards:
                if shard.status == "running":
                    self._check_future(shard)
                if shard.status == "running" and now - shard.last_heard > silence_s:
                    self._lose(shard, f"sent nothing for {silence_s:g} s")
            if now >= next_identity:
                next_identity = now + WATCH_EVERY_S
                self._check_workers(now)
            if now >= next_tick:
                next_tick = now + self.plan.interval_s
                self._judge()
                self._progress()
        self._drain(timeout=0)  # snapshots sent before a report arrive before it: deliver the last ones

    def _check_workers(self, now: float) -> None:
        """Shards whose worker left are lost; so is every running shard once the scheduler stays silent."""
        try:
            present = {address for address, _ in self._identity()}
        except ClusterError as exc:
            self.scheduler_quiet_since = self.scheduler_quiet_since or now
            if now - self.scheduler_quiet_since >= SCHEDULER_LOST_S:
                for shard in self.shards:
                    if shard.status == "running":
                        self._lose(shard, f"lost contact with the Dask scheduler ({exc})")
            return
        self.scheduler_quiet_since = None
        for shard in self.shards:
            if shard.status == "running" and shard.worker not in present:
                self._lose(shard, f"worker {shard.worker} left the cluster")

    def _drain(self, timeout: float) -> None:
        try:
            kind, payload = self.inbox.get(timeout=timeout) if timeout else self.inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if kind == "removed":
                for shard in self.shards:
                    if shard.worker == payload and shard.status == "running":
                        self._lose(shard, f"worker {payload} left the cluster")
            else:
                self._message(payload)
            try:
                kind, payload = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _message(self, payload) -> None:
        try:
            kind, index, wall, body = unpack(payload)
            shard = self.shards[index]
        except Exception:
            return  # not one of ours
        if shard.status == "lost":
            return  # a lost shard's numbers are frozen at its loss
        shard.last_heard = time.monotonic()
        shard.last_wall = wall - shard.clock_offset_s
        if kind == "snapshot":
            shard.add(shard.last_wall, body)
            self.live.add(body)
            if self.on_snapshot is not None:
                self.on_snapshot(body)

    def _check_future(self, shard: _Shard) -> None:
        future = shard.future
        status = future.status
        if status == "pending":
            return
        if status == "finished":
            try:
                outcome: ShardOutcome = future.result(timeout=CALL_TIMEOUT_S)
            except Exception as exc:
                self._lose(shard, f"its report could not be fetched ({type(exc).__name__}: {exc})")
                return
            if outcome.error is not None:
                self._raise_flags()
                outcome.error.raise_in_parent(f"shard {shard.index} on {shard.worker}")
            if outcome.refused is not None:
                self._lose(shard, outcome.refused)
                return
            shard.report = outcome.report
            shard.status = "ok"
            return
        if status == "error":
            self._raise_flags()
            try:
                exc = future.exception(timeout=CALL_TIMEOUT_S)
                trace = "".join(traceback.format_exception(exc))
            except Exception as problem:
                exc, trace = problem, None
            raise WorkerFailed(f"shard {shard.index} on {shard.worker} failed: {type(exc).__name__}: {exc}",
                               trace=trace)
        if self.client.status != "running":  # the client drops every future when its scheduler connection goes
            self._lose(shard, f"lost contact with the Dask scheduler at {self.address} (client {self.client.status})")
        else:
            self._lose(shard, f"the Dask scheduler dropped its task ({status})")

    def _lose(self, shard: _Shard, reason: str, tell: bool = True) -> None:
        shard.status, shard.reason = "lost", reason
        future = shard.future
        _background(lambda: future.cancel(force=True))  # a reachable shard then stops (see _StopWatcher)
        event, client = self.distributed.Event, self.client
        for stage in range(len(self.plan.stages)):  # the others must not wait for it between stages
            name = self.names.done(stage, shard.index)
            _background(lambda name=name: event(name, client=client).set())
        if tell and self.on_lost is not None:
            self.on_lost(shard.index)

    def _judge(self) -> None:
        """abort_on_fail on every shard's numbers so far (the per-shard check is off: it sees one shard)."""
        plan, control = self.plan, self.control
        if not plan.abort_on_fail or control.stopping:
            return
        elapsed = time.time() - self.start_at
        if elapsed < plan.abort_delay_s:
            return
        reports = [r for r in (shard.report or shard.provisional() for shard in self.shards) if r is not None]
        if not reports:
            return
        failed = failed_threshold(plan, self.base_url, reports)
        if failed is not None:
            control.aborted = {"reason": failed, "at_s": round(elapsed, 3)}
            control.stopping = True
            self._send_flags()

    def _progress(self) -> None:
        if self.on_progress is None:
            return
        stages = self.live.stages()
        if not stages:
            return
        current = self.live.sources(stages[-1])
        self.on_progress(Progress(self.plan.stages[stages[-1]], sum(s.requests for s in current),
                                  sum(s.failed for s in current), max(s.elapsed_s for s in current)))

    def _send_flags(self) -> None:
        """Raise the run's stop (and hurry) flag on the scheduler once the client wants to stop."""
        control = self.control
        for name, wanted in ((self.names.stop, control.stopping), (self.names.hurry, control.hurry)):
            if wanted and name not in self.flags_sent:
                self.flags_sent.add(name)
                event = self.distributed.Event(name, client=self.client)
                _background(event.set)

    def _raise_flags(self) -> None:
        self.control.stopping = self.control.hurry = True
        self._send_flags()

    # -- after -------------------------------------------------------------------------------------

    def _finish(self) -> ClusterRun:
        reports: list[ProcessReport] = []
        for shard in self.shards:  # finished shards first: build_result takes the engine from the first report
            if shard.status == "ok":
                reports.append(_to_client_clock(shard.report, shard.clock_offset_s))
        for shard in self.shards:
            if shard.status == "lost":
                report = shard.provisional()
                if report is not None:
                    reports.append(report)
                self.notes.append(f"shard {shard.index} on {shard.worker} was lost ({shard.reason}); "
                                  f"its numbers are those of its last snapshot")
        if not reports:
            raise EveryShardLost(f"every shard was lost before it reported anything: "
                               f"{'; '.join(f'shard {s.index}: {s.reason}' for s in self.shards)}")
        return ClusterRun(reports, [self._describe(shard) for shard in self.shards], self.notes)

    def _describe(self, shard: _Shard) -> dict:
        zero = None
        if shard.report is not None and shard.report.outcomes:
            zero = shard.report.outcomes[0].started_at - shard.clock_offset_s
        elif shard.zero_wall:
            zero = shard.zero_wall[min(shard.zero_wall)]
        return {
            "index": shard.index,
            "worker": shard.worker,
            "status": shard.status,
            "reason": shard.reason,
            "start_skew_s": None if zero is None else round(zero - self.start_at, 6),
            "clock_offset_s": round(shard.clock_offset_s, 6),
            "requests": shard.requests(),
        }

    def _cleanup(self) -> None:
        """Whatever happened: no shard keeps running for this run, and no handler outlives it."""
        if any(shard.status == "running" for shard in self.shards):
            self._raise_flags()
        for shard in self.shards:
            if shard.status == "running" and shard.future is not None:
                self._lose(shard, "the run ended before it reported", tell=False)
        for topic in [self.names.topic, *{shard.worker for shard in self.shards}]:
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(topic)
        # The run's flags would otherwise stay in a long-lived scheduler's memory, a few per run.
        names = self.names
        deadline = time.monotonic() + 5.0
        done = (names.done(stage, shard.index) for stage in range(len(self.plan.stages)) for shard in self.shards)
        for name in (names.stop, names.hurry, *(names.claim(shard.index) for shard in self.shards), *done):
            if self.client.status != "running" or time.monotonic() > deadline:
                break
            with contextlib.suppress(Exception):
                self.client.sync(self.client.scheduler.event_clear, name=name, callback_timeout=2.0)


def _running_workers(info: dict) -> list[tuple[str, int]]:
    workers = info.get("workers", {}) or {}
    return sorted((address, int(w.get("nthreads", 1))) for address, w in workers.items()
                  if w.get("status", "running") == "running")


def _to_client_clock(report: ProcessReport, offset_s: float) -> ProcessReport:
    """A worker's wall-clock times moved to the client's clock, so stages from several hosts line up."""
    if not offset_s:
        return report
    outcomes = [replace(o, started_at=o.started_at - offset_s) for o in report.outcomes]
    return replace(report, outcomes=outcomes, started_wall=report.started_wall - offset_s)


def _background(call: Callable[[], object]) -> None:
    """Fire and forget on a daemon thread: stop flags and cancellations must never block the client."""
    def run() -> None:
        with contextlib.suppress(Exception):
            call()
    threading.Thread(target=run, name="runner-cluster-call", daemon=True).start()


@contextlib.contextmanager
def _signals_to(control: RunControl) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop every shard (within its grace); second: cut in-flight requests off.

    The handlers only set flags; the client's loop raises them on the
    scheduler (a network call does not belong in a signal handler).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame) -> None:
        if control.stopping:
            control.hurry = True
            return
        control.stopping = True
        control.signal_name = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_builtin_reachable(plan: Plan, workers: list[str]) -> None:
    """``target: builtin`` listens on this machine's loopback: only workers on this machine can reach it."""
    if plan.target_url is not None:
        return
    local = _local_addresses()
    for worker in workers:
        host = urlsplit(worker if "://" in worker else f"tcp://{worker}").hostname or ""
        if not _is_loopback(host) and host not in local:
            raise ClusterError(f"target: builtin serves on 127.0.0.1 of this machine, which Dask worker {worker} "
                               f"cannot reach: give the scenario a target URL every worker can reach")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_addresses() -> set[str]:
    addresses = {socket.gethostname()}
    with contextlib.suppress(OSError):
        addresses |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    return addresses
