"""Per-request accounting that only adds, and merges exactly.

One :class:`RequestStats` exists per (stage, flow request step); a virtual
user calls :meth:`RequestStats.judged` (a response, its verdict already
decided next to it: status rule, checks, captures) or
:meth:`RequestStats.timed_failure` (no response) once per request and
nothing else. Stage, request-name and run totals are
built afterwards by :meth:`RequestStats.merge`, so every total is the exact
sum of its parts: ``requests == ok + failed`` holds at every level.

Besides counts, a failure may leave its message behind: the first few
distinct messages of each error class (``error_samples``), so that a report
can say what an ``other`` was. Keeping them costs nothing on success and, on
failure, only a length check once a class has its share.
"""

from __future__ import annotations

from .histogram import Histogram

#: Distinct messages kept per error class (per stats object, and after every merge).
ERROR_SAMPLES_PER_CLASS = 5
#: Longer messages are cut to this many characters, so a result stays small whatever an engine says.
ERROR_SAMPLE_CHARS = 300


#: The timing phases every summary reports, in the order a request passes through them.
PHASES = ("connect", "tls", "ttfb", "receive")


def is_ok_status(status: int) -> bool:
    """A response counts as ok when its status is below 400 (redirects are ok, not followed)."""
    return status < 400


class RequestStats:
    """Counters and latency histogram of one request name in one stage."""

    __slots__ = ("ok", "failed", "dropped", "bytes", "status_codes", "errors", "latency", "service", "checks",
                 "error_samples", "skipped", "connect", "tls", "ttfb", "receive")

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.dropped = 0  # open model: arrivals that found no free slot and were never sent
        self.bytes = 0
        self.status_codes: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.latency = Histogram()  # from the intended send time (open model) or the send (closed)
        self.service = Histogram()  # from the actual send: what the server alone took
        self.checks: dict[str, list[int]] = {}  # check name -> [passes, fails]
        self.error_samples: dict[str, list[str]] = {}  # error class -> first distinct messages
        self.skipped = 0  # flow steps not sent because a capture earlier in the iteration failed
        # Timing phases (see PHASES). connect and tls get one value per connection a request
        # opened (a reused keep-alive connection adds none), ttfb and receive one per response.
        self.connect = Histogram()  # TCP connect, name lookup excluded
        self.tls = Histogram()  # TLS handshake (https only)
        self.ttfb = Histogram()  # request written -> first response byte (k6: http_req_waiting)
        self.receive = Histogram()  # first response byte -> last one (k6: http_req_receiving)

    @property
    def requests(self) -> int:
        return self.ok + self.failed

    def response(self, status: int, body_bytes: int, latency_us: int) -> None:
        """Record a request that got an HTTP response (any status)."""
        codes = self.status_codes
        codes[status] = codes.get(status, 0) + 1
        if status < 400:
            self.ok += 1
        else:
            self.failed += 1
        self.bytes += body_bytes
        self.latency.record(latency_us)

    def failure(self, error_class: str, latency_us: int, error: BaseException | None = None) -> None:
        """Record a request that got no HTTP response; ``error_class`` names why.

        ``error`` is the exception that ended it, if any: its message becomes
        a sample while the class has fewer than ERROR_SAMPLES_PER_CLASS.
        """
        self.failed += 1
        self.errors[error_class] = self.errors.get(error_class, 0) + 1
        self.latency.record(latency_us)
        if error is not None:
            kept = self.error_samples.get(error_class)
            if kept is None or len(kept) < ERROR_SAMPLES_PER_CLASS:
                self._keep_sample(error_class, error_message(error))

    def judged(self, status: int, body_bytes: int, latency_us: int, service_us: int, ok: bool,
               error_class: str | None = None) -> None:
        """Record a response whose verdict (status rule, checks, captures) the virtual user decided.

        ``error_class`` names why an answered request still failed (``capture_failed``);
        ``service_us`` < 0 means "same as latency" (closed model: adopted at the stage's end).
        """
        codes = self.status_codes
        codes[status] = codes.get(status, 0) + 1
        if ok:
            self.ok += 1
        else:
            self.failed += 1
            if error_class is not None:
                self.errors[error_class] = self.errors.get(error_class, 0) + 1
        self.bytes += body_bytes
        self.latency.record(latency_us)
        if service_us >= 0:
            self.service.record(service_us)

    def sample(self, error_class: str, message: str) -> None:
        """Keep ``message`` among the class's samples while it has fewer than its share (failures only)."""
        kept = self.error_samples.get(error_class)
        if kept is None or len(kept) < ERROR_SAMPLES_PER_CLASS:
            if len(message) > ERROR_SAMPLE_CHARS:
                message = message[:ERROR_SAMPLE_CHARS - 1] + "…"
            self._keep_sample(error_class, message)

    def _keep_sample(self, error_class: str, message: str) -> None:
        if message == error_class:  # a TransportError without detail says nothing the count does not
            return
        kept = self.error_samples.setdefault(error_class, [])
        if message not in kept and len(kept) < ERROR_SAMPLES_PER_CLASS:
            kept.append(message)

    def timed_failure(self, error_class: str, latency_us: int, service_us: int,
                      error: BaseException | None = None) -> None:
        """Like :meth:`failure`, plus the service time from the actual send (none when < 0)."""
        self.failure(error_class, latency_us, error)
        if service_us >= 0:
            self.service.record(service_us)

    def adopt_latency_as_service(self) -> None:
        """Closed model: a request is sent when it is due, so service time equals latency."""
        self.service = self.latency.copy()

    def merge(self, other: "RequestStats") -> "RequestStats":
        """Add ``other`` into this one and return self."""
        self.ok += other.ok
        self.failed += other.failed
        self.dropped += other.dropped
        self.bytes += other.bytes
        for code, count in other.status_codes.items():
            self.status_codes[code] = self.status_codes.get(code, 0) + count
        for name, count in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + count
        self.latency.merge(other.latency)
        self.service.merge(other.service)
        for name, (passes, fails) in other.checks.items():
            tally = self.checks.setdefault(name, [0, 0])
            tally[0] += passes
            tally[1] += fails
        for name, messages in other.error_samples.items():
            for message in messages:
                self._keep_sample(name, message)
        self.skipped += other.skipped
        for phase in PHASES:
            getattr(self, phase).merge(getattr(other, phase))
        return self

    @classmethod
    def merged(cls, parts: "list[RequestStats]") -> "RequestStats":
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    def __repr__(self) -> str:
        return f"<RequestStats requests={self.requests} ok={self.ok} failed={self.failed}>"


def error_message(error: BaseException) -> str:
    """What a sample says: a TransportError's detail, or ``TypeName: text`` for anything else.

    Anything else is an exception no engine expected (counted as ``other``);
    its type is usually the most telling part.
    """
    text = str(error)
    if getattr(error, "error_class", None) is None:
        name = type(error).__name__
        text = f"{name}: {text}" if text else name
    if len(text) > ERROR_SAMPLE_CHARS:
        text = text[:ERROR_SAMPLE_CHARS - 1] + "…"
    return text


class FlowStats:
    """Iterations of one flow in one stage: how many, how many failed, and how long each took.

    An iteration's duration runs from its start (the arrival's due time in the
    open model) to the end of its last step, think time included, so it is
    what one pass of the user journey costs. Iterations cut short by the end
    of a stage are not counted.
    """

    __slots__ = ("iterations", "failed", "dropped", "duration")

    def __init__(self) -> None:
        self.iterations = 0
        self.failed = 0  # iterations in which some request failed
        self.dropped = 0  # open model: arrivals of this flow that found no free user
        self.duration = Histogram()

    def iteration(self, duration_us: int, failed: bool) -> None:
        self.iterations += 1
        if failed:
            self.failed += 1
        self.duration.record(duration_us)

    def merge(self, other: "FlowStats") -> "FlowStats":
        self.iterations += other.iterations
        self.failed += other.failed
        self.dropped += other.dropped
        self.duration.merge(other.duration)
        return self
