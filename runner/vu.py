"""Virtual users: small state machines advanced by their transport's callbacks.

A :class:`VirtualUser` owns its connection (a transport from the engine),
its variables (captures and data rows), its cookie jar and its place in a
compiled flow. The engine reports each answer by calling
:meth:`VirtualUser.on_response` or :meth:`VirtualUser.on_failure`; the user
records it, applies checks and captures, and sends its next request at once
from that same callback. There is no coroutine and no Future per request, and
no task per user: a think step is one ``call_later`` handle.

What a user may do next is decided by its :class:`StageRun` (one per stage
and process): the closed model hands out request tickets until the stage's
``requests`` or ``duration`` is used up, and gates users during a ramp; the
open model gives a user one flow iteration per arrival and takes it back
when the iteration ends (:mod:`runner.models`).
"""

from __future__ import annotations

import asyncio
import random
import time

from .captures import MISSING
from .metrics.recorder import FlowStats, RequestStats
from .plan import FlowPlan, Plan, RequestPlan, StagePlan, ThinkPlan

#: The error class of a response that lacked a value a capture needed.
CAPTURE_FAILED = "capture_failed"
#: The error class of requests still in flight when a stage's grace period ran out.
CUT_OFF = "cut_off"

_perf_ns = time.perf_counter_ns


class StageRun:
    """One stage in one process: counters, budget and the users taking part.

    ``take`` is the closed model's ticket counter: it returns the next
    sequence number, or -1 once the stage's request budget or duration is
    spent or the run is stopping. ``finished`` resolves when every user has
    stopped (closed) or come back idle (open).
    """

    __slots__ = ("plan", "stats", "flows", "loop", "control", "open", "limit", "taken", "deadline", "offset",
                 "step", "allowed", "parked", "active", "finished", "idle", "started", "zero", "late",
                 "scheduled", "rng", "flow_cycle", "dispatching", "timed")

    def __init__(self, stage: StagePlan, plan: Plan, loop: asyncio.AbstractEventLoop, control, rng: random.Random):
        self.plan = stage
        self.stats = [RequestStats() for _ in plan.flow]
        self.flows = [FlowStats() for _ in plan.flow_plans()]
        self.loop = loop
        self.control = control
        self.open = stage.model == "open"
        self.limit = stage.requests if stage.requests is not None else 1 << 62
        self.taken = 0
        self.deadline = float("inf")
        self.timed = False  # a deadline is set (the clock is read per request only then)
        self.offset = stage.seq_offset
        self.step = stage.seq_step
        self.allowed = 1 << 62  # closed ramps lower this; users numbered at or above it wait
        self.parked: list[VirtualUser] = []
        self.active = 0
        self.finished: asyncio.Future = loop.create_future()
        self.idle: list[VirtualUser] = []
        self.started = 0  # requests sent (for the time series' in-flight count)
        self.zero: float | None = None  # perf_counter() at the stage's time zero
        self.late = 0
        self.scheduled = 0
        self.rng = rng
        self.flow_cycle = weighted_cycle(plan.flow_plans())
        self.dispatching = self.open  # open model: arrivals are still being handed out

    def take(self) -> int:
        """The next request's sequence number, or -1 when the stage has no more to send."""
        taken = self.taken
        if taken >= self.limit or self.control.stopping or (self.timed and self.loop.time() >= self.deadline):
            if self.parked:  # users a ramp held back would otherwise wait for the deadline to stop
                self.set_allowed(self.allowed)
            return -1
        self.taken = taken + 1
        return self.offset + taken * self.step

    def next_seq(self) -> int:
        """Open model: sequence numbers of the requests in arrival iterations (no budget here)."""
        taken = self.taken
        self.taken = taken + 1
        return self.offset + taken * self.step

    def user_stopped(self) -> None:
        self.active -= 1
        done = (not self.dispatching and len(self.idle) >= self.active) if self.open else self.active <= 0
        if done and not self.finished.done():
            self.finished.set_result(None)

    def user_idle(self, user: "VirtualUser") -> None:
        """Open model: ``user`` finished its iteration and may take the next arrival."""
        self.idle.append(user)
        if not self.dispatching and len(self.idle) >= self.active and not self.finished.done():
            self.finished.set_result(None)

    def set_allowed(self, allowed: int) -> None:
        """Closed ramp: let users numbered below ``allowed`` run; wake the parked ones now allowed."""
        self.allowed = allowed
        if self.parked:
            waiting, self.parked = self.parked, []
            over = (self.taken >= self.limit or self.control.stopping
                    or (self.timed and self.loop.time() >= self.deadline))
            for user in waiting:
                if user.local < allowed or over:
                    self.loop.call_soon(self._wake, user)
                else:
                    self.parked.append(user)

    def _wake(self, user: "VirtualUser") -> None:
        if user.run is self and not user.stopped:  # not a wake-up left over from an earlier stage
            user.next_iteration()


def weighted_cycle(flows: tuple[FlowPlan, ...]) -> tuple[int, ...]:
    """Flow indexes interleaved by weight: weights 3 and 1 give (0, 0, 1, 0)-like spreads.

    User ``n`` (closed) or arrival ``n`` (open) runs ``cycle[n % len(cycle)]``,
    so any number of users mixes the flows as close to their weights as it can.
    """
    total = sum(flow.weight for flow in flows)
    credit = [0] * len(flows)
    cycle = []
    for _ in range(total):
        for i, flow in enumerate(flows):
            credit[i] += flow.weight
        best = max(range(len(flows)), key=lambda i: credit[i])
        credit[best] -= total
        cycle.append(flows[best].index)
    return tuple(cycle)


class VirtualUser:
    """One simulated user. Template fields read ``seq``, ``worker``, ``number``, ``iteration``, ``vars``."""

    __slots__ = ("local", "number", "worker", "vars", "jar", "iteration", "seq", "transport", "run", "flows",
                 "flow", "steps", "position", "iteration_start", "due_ns", "sent_ns", "request", "once_done",
                 "iteration_failed", "in_once", "timer", "stopped", "exhausted", "cursors", "row_keys",
                 "drawn", "cycle_position", "plan")

    def __init__(self, local: int, number: int, plan: Plan, cursors: list, row_keys: list):
        self.local = local  # position in this process's pool; ramps gate on it
        self.number = number  # unique across worker processes: {vu}
        self.worker = local  # {worker}, as in earlier versions: the user's number in its process
        self.plan = plan
        self.vars: dict = {}
        self.jar = None  # a runner.cookies.CookieJar once the plan sends cookies
        self.iteration = -1
        self.seq = 0
        self.transport = None
        self.run: StageRun | None = None
        self.flows = plan.flow_plans()
        self.flow: FlowPlan = self.flows[0]
        self.steps: tuple = ()
        self.position = 0
        self.iteration_start = 0
        self.due_ns = 0
        self.sent_ns = 0
        self.request: RequestPlan | None = None
        self.once_done: set[int] = set()
        self.iteration_failed = False
        self.in_once = 0  # steps of the current iteration that belong to the once part
        self.timer = None
        self.stopped = False
        self.exhausted = False  # a unique data table had no row left for this user
        self.cursors = cursors
        self.row_keys = row_keys
        self.drawn: set[int] = set()
        self.cycle_position = local  # each process mixes its own users by weight (numbers stripe across processes)

    # -- iterations ---------------------------------------------------------------------------

    def start(self, run: StageRun) -> None:
        """Closed model: join ``run`` and keep iterating until it has nothing more to send."""
        self.run = run
        self.stopped = False  # the model counted this user in run.active before starting any
        cycle = run.flow_cycle
        self.flow = self.flows[cycle[self.cycle_position % len(cycle)]]
        self.next_iteration()

    def next_iteration(self) -> None:
        run = self.run
        if self.stopped:
            return
        over = run.taken >= run.limit or run.control.stopping or (run.timed and run.loop.time() >= run.deadline)
        if over or self.exhausted:
            self.stop()
            return
        if self.local >= run.allowed:  # a ramp has not reached this user yet
            run.parked.append(self)
            return
        self.begin(0)

    def begin(self, due_ns: int) -> None:
        """Start one iteration of ``self.flow``; ``due_ns`` is the open model's arrival time (0: now)."""
        flow = self.flow
        if (flow.data_per_user or flow.data_per_iteration) and not self._draw_rows(flow):
            run = self.run
            if run.open:  # this arrival cannot run; the user can still serve other flows' arrivals
                run.stats[flow.first_request].dropped += 1
                run.flows[flow.index].dropped += 1
                run.user_idle(self)
                return
            self.exhausted = True
            self.finish_iteration(counted=False)
            return
        self.iteration += 1
        self.iteration_failed = False
        if flow.index in self.once_done or not flow.once:
            self.steps = flow.steps
            self.in_once = 0
        else:
            self.steps = flow.once + flow.steps
            self.in_once = len(flow.once)
        self.position = 0
        self.due_ns = due_ns
        self.iteration_start = due_ns or _perf_ns()
        self.advance()

    def _draw_rows(self, flow: FlowPlan) -> bool:
        """Fill the data columns this iteration uses; False when a unique table has no row left."""
        for table in flow.data_per_user:
            if table not in self.drawn:
                if not self._fill(table):
                    return False
                self.drawn.add(table)
        for table in flow.data_per_iteration:
            if not self._fill(table):
                return False
        return True

    def _fill(self, table: int) -> bool:
        row = self.cursors[table].next()
        if row is None:
            return False
        vars = self.vars
        for key, value in zip(self.row_keys[table], row):
            vars[key] = value
        return True

    def advance(self) -> None:
        """Run steps until a request is on its way, a pause is scheduled, or the iteration ends."""
        steps = self.steps
        run = self.run
        while self.position < len(steps):
            step = steps[self.position]
            self.position += 1
            if step.__class__ is ThinkPlan:
                delay = step.min_s if step.min_s == step.max_s else run.rng.uniform(step.min_s, step.max_s)
                self.timer = run.loop.call_later(delay, self._after_think)
                return
            if run.open:
                if run.control.hurry:
                    self.finish_iteration(counted=False)
                    return
                self.seq = run.next_seq()
            else:
                seq = run.take()
                if seq < 0:
                    self.finish_iteration(counted=False)
                    return
                self.seq = seq
            self.request = step
            run.started += 1
            self.sent_ns = _perf_ns()
            self.transport.send(step, self)
            return
        self.finish_iteration(counted=True)

    def _after_think(self) -> None:
        self.timer = None
        if not self.stopped:
            self.advance()

    def finish_iteration(self, counted: bool) -> None:
        """Record the iteration (when it ran to its end) and go on: next iteration, or back to idle."""
        run = self.run
        flow = self.flow
        if self.in_once and self.position > self.in_once:
            # every once step was answered (a failed capture would have cleared in_once), even
            # if the stage's budget then cut the loop short: the next stage does not log in again
            self.once_done.add(flow.index)
        if counted:
            now = _perf_ns()
            run.flows[flow.index].iteration((now - self.iteration_start) // 1000, self.iteration_failed)
            if flow.single and not run.open and self.local < run.allowed:
                # The commonest loop (one request, nothing else per iteration): send the next now.
                seq = run.take()
                if seq >= 0:
                    request = flow.steps[0]
                    self.iteration += 1
                    self.iteration_failed = False
                    self.iteration_start = self.sent_ns = now
                    self.seq = seq
                    self.request = request
                    run.started += 1
                    self.transport.send(request, self)
                    return
        if run.open:
            self.due_ns = 0
            if self.exhausted:
                self.stop()
            else:
                run.user_idle(self)
        elif counted:
            self.next_iteration()
        else:
            self.stop()

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.run.user_stopped()

    # -- answers from the transport ----------------------------------------------------------

    def on_response(self, status: int, received: int, headers: dict | None, body: bytes | None) -> None:
        """The engine got a complete response for ``self.request``."""
        request = self.request
        if request is None:
            return
        self.request = None
        end = _perf_ns()
        service_us = (end - self.sent_ns) // 1000
        due = self.due_ns
        latency_us = (end - due) // 1000 if due else service_us
        self.due_ns = 0
        stats = self.run.stats[request.index]
        if request.send_cookies and headers is not None:
            set_cookie = headers.get("set-cookie")
            if set_cookie is not None:
                self._jar().update(set_cookie)
        ok = request.has_status_check or status < 400
        if request.checks:
            ok = judge(request, stats, status, received, latency_us, headers, body) and ok
        error = None
        if request.captures:
            vars = self.vars
            for name, extract in request.captures:
                value = extract(status, headers, body)
                if value is MISSING:
                    error = CAPTURE_FAILED
                    ok = False
                    break
                vars[name] = value
        stats.judged(status, received, latency_us, service_us if due or self.run.open else -1, ok, error)
        # Timing phases: the connection's opening (when this request made one) and the response's first byte.
        transport = self.transport
        start = self.sent_ns
        opened = transport.opened
        if opened is not None:
            transport.opened = None
            stats.connect.record(opened[0])
            if opened[1] >= 0:
                stats.tls.record(opened[1])
            if opened[2] > start:  # not a connection readied ahead of the request (open model)
                start = opened[2]
        first = transport.first_byte_ns
        if first:
            stats.ttfb.record((first - start) // 1000)
            stats.receive.record((end - first) // 1000)
        if not ok:
            self.iteration_failed = True
            if error is not None:
                stats.sample(error, f"{request.name}: the response held no value for a capture")
                self._skip_rest()
        if self.stopped:
            return
        if self.position < len(self.steps):
            self.advance()
        else:  # the iteration is complete (advance would only find that out)
            self.finish_iteration(True)

    def on_failure(self, error_class: str, detail: str) -> None:
        """The request got no HTTP response; ``error_class`` says why."""
        request = self.request
        if request is None:
            return
        self.request = None
        end = _perf_ns()
        service_us = (end - self.sent_ns) // 1000
        due = self.due_ns
        self.due_ns = 0
        stats = self.run.stats[request.index]
        stats.timed_failure(error_class, (end - due) // 1000 if due else service_us,
                            service_us if self.run.open else -1)
        stats.sample(error_class, detail)
        transport = self.transport
        opened = transport.opened
        if opened is not None:  # a connection was made (a failed handshake still connected)
            transport.opened = None
            stats.connect.record(opened[0])
            if opened[1] >= 0:
                stats.tls.record(opened[1])
        self.iteration_failed = True
        if request.captures:  # what later steps need never arrived
            self._skip_rest()
        if not self.stopped:
            self.advance()

    def crashed(self, error: BaseException) -> None:
        """A bug in this user's own handling of an answer: keep its message, stop the user, never hang the stage."""
        run = self.run
        request, self.request = self.request, None
        if run is not None:
            index = request.index if request is not None else self.flow.first_request
            run.stats[index].sample("other", f"runner bug in a virtual user: {type(error).__name__}: {error}")
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.stop()

    def _skip_rest(self) -> None:
        """Count the rest of this iteration's requests as skipped and end it here."""
        stats = self.run.stats
        if self.position <= self.in_once:  # the failed step was part of the once steps: run them again next time
            self.in_once = 0
        for step in self.steps[self.position:]:
            if step.__class__ is not ThinkPlan:
                stats[step.index].skipped += 1
        self.position = len(self.steps)

    def _jar(self):
        jar = self.jar
        if jar is None:
            from .cookies import CookieJar
            jar = self.jar = CookieJar()
        return jar

    @property
    def cookie_header(self) -> str | None:
        jar = self.jar
        return jar.header if jar is not None else None

    # -- the end of a stage ----------------------------------------------------------------------

    def cut_off(self) -> None:
        """The grace period is over: count the request in flight as cut off and stand still."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        request = self.request
        if request is not None:
            self.request = None
            end = _perf_ns()
            due = self.due_ns or self.sent_ns
            self.run.stats[request.index].timed_failure(CUT_OFF, (end - due) // 1000, (end - self.sent_ns) // 1000)
            if self.transport is not None:
                self.transport.abort()
        if not self.stopped:
            self.stopped = True
            self.run.active -= 1


def judge(request: RequestPlan, stats: RequestStats, status: int, received: int, latency_us: int,
          headers, body) -> bool:
    """Apply the request's checks next to the response; tally passes and fails per check."""
    passed = True
    tallies = stats.checks
    for name, predicate in request.checks:
        result = predicate(status, received, latency_us, headers, body)
        tally = tallies.get(name)
        if tally is None:
            tally = tallies[name] = [0, 0]
        tally[0 if result else 1] += 1
        passed = passed and result
    return passed
