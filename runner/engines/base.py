"""The one narrow interface between virtual users and an HTTP engine.

An engine is built from a :class:`~runner.plan.Plan` and gives each virtual
user a :class:`Transport`. ``transport.send(request, user)`` starts one
request rendered for that user (its templates, its cookies) and returns at
once; the outcome comes back later as a call of ``user.on_response(status,
body_bytes, headers, body)`` or ``user.on_failure(error_class, detail)``, with
a stable error class (:data:`ERROR_CLASSES`). That is all the executor, the
metrics and the reporters ever know about HTTP, so engines can be swapped
without touching them.

:func:`open_channel` wraps a transport as a :class:`Channel` that sends one
request at a time and can be awaited (a Future per request): for tools and
tests that want a single request's outcome, never for the load itself.
"""

from __future__ import annotations

import errno
from typing import Awaitable, Protocol

from ..plan import Plan, RequestPlan

#: Stable, documented names of the ways a request can fail without a response.
ERROR_CLASSES = (
    "connect_refused",   # nothing listens at the target port
    "unreachable",       # no route to the target's host or network (EHOSTUNREACH, ENETUNREACH)
    "connect_timeout",   # the TCP connection was not established in time
    "read_timeout",      # connected, but the response did not arrive in time
    "reset",             # the peer reset the connection (ECONNRESET, EPIPE)
    "closed_early",      # the peer closed the connection before a full response
    "protocol_error",    # the response was not valid HTTP/1.1
    "body_too_large",    # the response body exceeded the configured cap
    "dns",               # the host name did not resolve
    "tls",               # the TLS handshake or certificate check failed
    "client_resource",   # the generator ran out of a local resource (files, ports)
    "other",             # anything else; the report keeps the count
)


class TransportError(Exception):
    """A request ended without an HTTP response; ``error_class`` says why.

    ``str(error)`` is the detail: what a user reads among a result's
    ``error_samples`` to tell apart failures of one class.
    """

    __slots__ = ("error_class",)

    def __init__(self, error_class: str, detail: str = ""):
        super().__init__(detail or error_class)
        self.error_class = error_class


class Transport(Protocol):
    """One virtual user's connection (for example one keep-alive TCP connection).

    ``send`` never reports synchronously: the user's callbacks always run
    later, from the event loop, so a user can send its next request from
    inside them. ``abort`` drops the request in flight without reporting it
    (the user has already counted it as cut off).

    Timing phases are read by the user from two attributes when an answer
    arrives (no clock is read for them anywhere else):

    - ``first_byte_ns``: ``time.perf_counter_ns()`` when the first byte of
      the response in hand arrived (0 when the engine cannot tell);
    - ``opened``: ``(connect_us, tls_us, ready_ns)`` when this request had
      to open its connection (TCP connect time, TLS handshake time or -1 for
      plain http, and the perf_counter_ns at which the connection was ready
      to write the request), else None. The user takes it and sets it back
      to None, so a connection is counted once.
    """

    first_byte_ns: int
    opened: tuple[int, int, int] | None

    def send(self, request: RequestPlan, user) -> None:
        ...

    async def prepare(self, timeout_s: float) -> None:
        """Connect ahead of the first request, where the engine can (failures are left to that request)."""
        ...

    def abort(self) -> None:
        ...

    def close(self) -> None:
        ...


_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.EADDRINUSE, errno.ENOBUFS})
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH})


def connect_errno_class(code: int | None) -> str | None:
    """The error class of a failed connect's errno, or None if the errno does not decide it.

    Both engines use it, so the same fault is the same class whichever engine met it.
    """
    if code == errno.ECONNREFUSED:
        return "connect_refused"
    if code in _UNREACHABLE_ERRNOS:
        return "unreachable"
    if code in _RESOURCE_ERRNOS:
        return "client_resource"
    return None


def lost_errno_class(code: int | None) -> str | None:
    """The error class of an errno that ended an established connection, or None if it does not decide it."""
    if code in _RESET_ERRNOS:
        return "reset"
    if code in _UNREACHABLE_ERRNOS:  # an ICMP error ended the connection: the route went away
        return "unreachable"
    if code in _RESOURCE_ERRNOS:
        return "client_resource"
    return None


def describe(exc: BaseException) -> str:
    """``TypeName: text`` (or just ``TypeName``): an exception's detail as error samples show it.

    The type name matters as much as the text: ``TimeoutError()`` has no text
    at all, and "other" failures are told apart mostly by their type. Called
    only when a request failed.
    """
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


class Channel(Protocol):
    """One worker's way of sending requests (for example one keep-alive connection).

    ``captured`` is set by ``send`` when the request asks for it
    (``capture_headers`` / ``capture_body``): ``(headers, body)`` with header
    names lower-cased (repeated headers joined with ", ") and at most
    ``capture_body`` bytes of the body; otherwise it is None. It stays valid
    until the next ``send``.
    """

    captured: tuple[dict[str, str], bytes] | None

    def send(self, request: RequestPlan, seq: int, worker: int) -> Awaitable[tuple[int, int]]:
        """Send one request; resolve to (HTTP status, response body bytes) or raise TransportError.

        An engine may return a Future instead of a coroutine, so the hot path
        creates no coroutine per request; callers only ``await`` the result.
        """
        ...

    async def aclose(self) -> None:
        ...


class Engine(Protocol):
    """Builds transports for one run of one plan."""

    name: str

    def transport(self, user) -> Transport:
        ...

    async def aclose(self) -> None:
        ...


class EngineFactory(Protocol):
    name: str

    def __call__(self, plan: Plan, base_url: str) -> Engine:
        ...


class _OneRequestUser:
    """The least a transport needs of a user, resolving one Future per request."""

    __slots__ = ("seq", "worker", "number", "iteration", "vars", "future", "request", "cookie_header", "captured")

    def crashed(self, error: BaseException) -> None:
        self.on_failure("other", describe(error))

    def __init__(self, worker: int):
        self.seq = 0
        self.worker = self.number = worker
        self.iteration = 0
        self.vars: dict = {}
        self.future = None
        self.request = None
        self.cookie_header = None
        self.captured = None

    def on_response(self, status: int, received: int, headers, body) -> None:
        future, self.future = self.future, None
        request = self.request
        if request is not None and (request.capture_headers or request.capture_body):
            self.captured = (headers if headers is not None else {}, body if body is not None else b"")
        if future is not None and not future.done():
            future.set_result((status, received))

    def on_failure(self, error_class: str, detail: str) -> None:
        future, self.future = self.future, None
        if future is not None and not future.done():
            future.set_exception(TransportError(error_class, detail))


class TransportChannel:
    """A :class:`Channel` over an engine's transport: ``await channel.send(request, seq, worker)``."""

    def __init__(self, engine: Engine, worker: int):
        self._user = _OneRequestUser(worker)
        self._transport = engine.transport(self._user)

    @property
    def captured(self):
        return self._user.captured

    def send(self, request: RequestPlan, seq: int, worker: int):
        import asyncio

        user = self._user
        user.seq, user.worker, user.captured, user.request = seq, worker, None, request
        future = asyncio.get_running_loop().create_future()
        user.future = future
        self._transport.send(request, user)
        return _settle(future, self._transport)

    async def aclose(self) -> None:
        self._transport.close()


async def _settle(future, transport):
    """Await one request; a cancelled wait drops the connection (its answer would be unread)."""
    import asyncio

    try:
        return await future
    except asyncio.CancelledError:
        transport.abort()
        raise


async def open_channel(engine: Engine, worker: int = 0) -> TransportChannel:
    """One request at a time over a fresh transport of ``engine`` (tools and tests)."""
    return TransportChannel(engine, worker)
