"""The fast engine: HTTP/1.1 keep-alive on raw asyncio Protocols and httptools.

Each channel (worker) owns at most one TCP connection, opened on its first
request and again after any close; requests are never pipelined. Everything
that does not depend on the individual request is encoded once, when the
engine is built: a static request is one prepared ``bytes``, a templated one
is ``method + path prefix`` and a constant tail around the rendered path.
Responses are parsed incrementally by ``httptools`` and their bodies are only
counted, so ``send`` returns right after the last body byte has arrived.

Per request the hot path allocates one Future, the request bytes (none for a
static request) and the result tuple: ``send`` is a plain method returning
that Future, so not even a coroutine object is created while the connection
is up. There is no timer per request: one watchdog task per engine wakes a few
times per timeout period and fails every request whose deadline has passed
with ``read_timeout``. Errors are classified like the
aiohttp engine's (see :func:`runner.engines.aiohttp_engine.classify`), so the
two engines report the same error classes for the same faults.

Connecting (name lookup included) is bounded by ``connect_timeout_s`` and by
the total ``timeout_s``, whichever ends first, and fails as
``connect_timeout``. The optional per-request features -- ``read_timeout_s``
(the watchdog fails a request that received nothing for that long, measured
to within one tick), ``max_response_bytes`` (the connection is dropped as soon
as the body exceeds it: ``body_too_large``) and captures (``channel.captured``)
-- live in :class:`_CheckedConnection` and :class:`_CheckedChannel`, used only
by plans that ask for them; other plans run the exact code path they always did.

Only ``http://`` targets are supported; :func:`unsupported_reason` says why a
plan cannot use this engine, and the constructor refuses such a plan.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
from dataclasses import replace
from urllib.parse import quote, urlsplit

import httptools

from ..errors import UsageError
from ..plan import Plan, RequestPlan
from ..secrets import basic_authorization, url_credentials, with_authorization
from .base import TransportError, describe

__all__ = ["FastEngine", "FastEngineUnsupported", "unsupported_reason"]

_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.EADDRINUSE, errno.ENOBUFS})
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH})

#: Bodies up to this size are glued to the request head (one write); larger ones are written separately.
_INLINE_BODY_MAX = 64 * 1024
#: Characters a rendered path may contain to be sent as is (RFC 3986 pchar, '/', '?', '%').
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*\Z")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_WATCHDOG_MIN_S = 0.01
_WATCHDOG_MAX_S = 0.1

_new_parser = httptools.HttpResponseParser
_ParserError = httptools.HttpParserError
_ParserUpgrade = httptools.HttpParserUpgrade
_ParserCallbackError = httptools.HttpParserCallbackError
_InvalidState = asyncio.InvalidStateError
_Cancelled = asyncio.CancelledError


class FastEngineUnsupported(UsageError, ValueError):
    """The plan or target uses something the fast engine does not implement."""


def unsupported_reason(plan: Plan, base_url: str | None) -> str | None:
    """Why ``plan`` against ``base_url`` cannot run on the fast engine, or None if it can."""
    url = base_url if base_url is not None else plan.target_url
    if url is None:  # the built-in target: plain http on loopback
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return "this target URL"
    if scheme == "https":
        return "https targets"
    if scheme != "http":
        return f"{scheme or 'scheme-less'} targets"
    return None


def _error_class_for_connect(exc: BaseException) -> str:
    """Classify a failed connection attempt like the aiohttp engine does."""
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "connect_timeout"
    code = getattr(exc, "errno", None)
    if code == errno.ECONNREFUSED:
        return "connect_refused"
    if code in _UNREACHABLE_ERRNOS:
        return "unreachable"
    if code in _RESOURCE_ERRNOS:
        return "client_resource"
    if code == errno.ETIMEDOUT:
        return "connect_timeout"
    return "other"


def _error_class_for_lost(exc: BaseException) -> str:
    """Classify an exception that ended an established connection mid-response."""
    code = getattr(exc, "errno", None)
    if code in _RESET_ERRNOS:
        return "reset"
    if code in _UNREACHABLE_ERRNOS:  # an ICMP error ended the connection: the route went away
        return "unreachable"
    if code in _RESOURCE_ERRNOS:
        return "client_resource"
    if isinstance(exc, OSError):
        return "closed_early"
    return "other"


def _quote_path(path: str) -> bytes:
    """Percent-encode what may not appear raw in a request target (like yarl does)."""
    path = path.partition("#")[0]
    path = _BAD_PERCENT.sub("%25", path)
    return quote(path, safe="!$&'()*+,;=:@/?%~").encode("ascii")


def _check_header(name: str, value: str) -> None:
    for text in (name, value):
        if "\r" in text or "\n" in text or "\0" in text:
            raise FastEngineUnsupported(f"header {name!r} contains a line break or NUL character")
    if not name or ":" in name or " " in name:
        raise FastEngineUnsupported(f"invalid header name {name!r}")


class _Encoded:
    """One RequestPlan as bytes: all of it when static, else the pieces around the path."""

    __slots__ = ("whole", "prefix", "tail", "body", "render", "plain", "is_head", "idempotent",
                 "connect_timeout", "read_timeout", "limit", "capture_headers", "capture_body", "captures")

    def __init__(self, request: RequestPlan, host_header: bytes, path_prefix: str):
        names = {name.lower() for name, _ in request.headers}
        lines = []
        if "host" not in names:
            lines.append(b"Host: " + host_header + b"\r\n")
        for name, value in request.headers:
            _check_header(name, value)
            if name.lower() == "content-length":
                continue  # always computed from the body below
            lines.append(name.encode("utf-8") + b": " + value.encode("utf-8") + b"\r\n")
        if "user-agent" not in names:
            lines.append(b"User-Agent: runner\r\n")
        body = request.body
        if body is not None:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        head_tail = b" HTTP/1.1\r\n" + b"".join(lines) + b"\r\n"
        inline = body is not None and len(body) <= _INLINE_BODY_MAX
        self.tail = head_tail + body if inline else head_tail
        self.body = None if body is None or inline else body
        self.prefix = request.method.encode("ascii") + b" "
        self.is_head = request.method == "HEAD"
        self.idempotent = request.method in _IDEMPOTENT_METHODS
        self.connect_timeout = min(request.connect_timeout_s, request.timeout_s)
        self.read_timeout = request.read_timeout_s
        self.limit = max(request.max_response_bytes, 0)
        self.capture_headers = bool(request.capture_headers)
        self.capture_body = max(request.capture_body, 0)
        self.captures = self.capture_headers or self.capture_body > 0
        self.render = request.render_path
        self.plain = False
        self.whole = None
        prefix_path = path_prefix
        if request.is_static:
            self.whole = self.prefix + self.encode_path(prefix_path + request.render_path(0, 0)) + self.tail
        else:
            # seq and worker only ever contribute digits, so one sample render
            # tells whether every render can be sent without quoting.
            sample = prefix_path + request.render_path(0, 0)
            self.plain = sample.isascii() and _PLAIN_PATH.match(sample) is not None
            self.prefix += self.encode_path(prefix_path)

    def encode_path(self, path: str) -> bytes:
        if path.isascii() and _PLAIN_PATH.match(path) is not None:
            return path.encode("ascii")
        return _quote_path(path)


class _HeadInspector:
    """Re-reads a response head to learn whether its body is framed (length or chunked)."""

    __slots__ = ("parser", "framed", "complete")

    def __init__(self) -> None:
        self.parser = _new_parser(self)
        self.framed = False
        self.complete = False  # the head of a final (non-1xx) response was complete

    def on_message_begin(self) -> None:
        self.framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self.framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status >= 200 or status == 101:
            self.complete = True


def _add_header(headers: dict, name: bytes, value: bytes) -> None:
    """Add one response header to a capture: lower-case name, repeated headers joined with ", "."""
    key = name.decode("utf-8", "replace").lower()
    text = value.decode("utf-8", "replace").strip()
    previous = headers.get(key)
    headers[key] = text if previous is None else previous + ", " + text


def _ended_by_eof(chunks: list) -> bool:
    """At EOF: did the bytes in ``chunks`` start a complete response whose body ends at close?

    A final response head without Content-Length and without chunked coding
    has a body delimited by the close; anything else cut short by the close
    is incomplete.
    """
    inspector = _HeadInspector()
    feed = inspector.parser.feed_data
    try:
        for chunk in chunks:
            feed(chunk)
    except _ParserError:
        return False
    return inspector.complete and not inspector.framed


class _HeadResponse:
    """Parser callbacks for the response to a HEAD request, which ends with its head.

    httptools does not know the request method and would wait for the body a
    HEAD response announces, so a HEAD request gets a parser of its own that
    completes at headers-complete; the connection's main parser, idle at a
    message boundary meanwhile, takes over again for the next response.
    """

    __slots__ = ("conn", "parser", "connection", "headers")

    def __init__(self, conn: "_Connection"):
        self.conn = conn
        self.parser = _new_parser(self)
        self.connection = b""
        self.headers = None

    def on_message_begin(self) -> None:
        self.connection = b""
        if self.conn.encoded.capture_headers:
            self.headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp's should_keep_alive() would say no for a HEAD response without
        # Content-Length (it expects a body up to EOF), so decide from the
        # Connection header and the version ourselves.
        if name.lower() == b"connection":
            self.connection += b"," + value.lower()
        if self.headers is not None:
            _add_header(self.headers, name, value)

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        if status < 200 and status != 101:
            return  # an interim response: the final one follows
        conn = self.conn
        conn.parser = conn.main_parser
        waiter = conn.waiter
        if waiter is None:
            return
        conn.waiter = None
        if parser.get_http_version() == "1.1":
            keep_alive = b"close" not in self.connection
        else:
            keep_alive = b"keep-alive" in self.connection
        if status == 101 or not keep_alive:
            conn.alive = False
            conn.transport.close()
        if conn.encoded.captures:
            conn.channel.captured = (self.headers or {}, b"")
        try:
            waiter.set_result((status, 0))
        except _InvalidState:
            pass


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection and the state of the one request in flight on it.

    Parser callbacks are only ``on_body`` and ``on_message_complete`` (the
    fewer Python calls per response the better); the raw bytes that arrive
    before the first body byte are kept until the next request so that an
    EOF can be judged (see :func:`_ended_by_eof`) without parsing headers on
    the hot path.
    """

    __slots__ = (
        "channel", "transport", "parser", "main_parser", "alive", "waiter", "deadline", "received",
        "head_chunks", "sent", "encoded", "_read_view",
    )

    def __init__(self, channel: "_FastChannel"):
        self.channel = channel
        self.transport = None
        self.parser = self.main_parser = _new_parser(self)
        self.alive = False
        self.waiter = None  # the Future of the request in flight (possibly cancelled), if any
        self.deadline = 0.0
        self.received = 0
        self.head_chunks = []  # what arrived for this request before its first body byte
        self.sent = None  # the request bytes in flight when it may be retried, else None
        self.encoded = None
        self._read_view = channel._engine._read_view

    def start(self, waiter: asyncio.Future, data: bytes, encoded: _Encoded, deadline: float,
              retryable: bool) -> None:
        """Send a request (the slow paths; :meth:`_FastChannel.send` inlines this)."""
        self.waiter = waiter
        self.deadline = deadline
        self.received = 0
        self.head_chunks.clear()
        self.sent = data if retryable else None
        self.encoded = encoded
        if encoded.is_head:
            self.parser = _HeadResponse(self).parser
        transport = self.transport
        transport.write(data)
        if encoded.body is not None:
            transport.write(encoded.body)

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.alive = True
        self.channel._engine._connections.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        # Reads land in one buffer shared by every connection of the engine: the loop
        # hands it out and takes it back synchronously, so no bytes object is made per read.
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        data = self._read_view[:nbytes]
        if self.waiter is None or not self.received:
            self.data_received(data)  # the rare paths and the head of a response
            return
        self._feed(data)  # inside a body: only the parser needs the bytes

    def data_received(self, data) -> None:
        if self.waiter is None:
            # Bytes nobody asked for: the connection cannot be trusted any more.
            self.alive = False
            self.transport.abort()
            return
        if not self.received:
            self.head_chunks.append(bytes(data))  # the shared read buffer is reused: keep a copy
        self._feed(data)

    def _feed(self, data) -> None:
        """Give bytes to the parser; a parse failure ends the request in flight."""
        try:
            self.parser.feed_data(data)
        except _ParserUpgrade:
            self._upgraded()
        except _ParserCallbackError as exc:
            self.fail("other", f"fast engine callback error: {describe(exc.__context__ or exc)}")
        except _ParserError as exc:
            self.fail("protocol_error", str(exc))

    def eof_received(self) -> None:
        # The transport closes now and connection_lost (which decides what the
        # EOF meant) runs soon after: no request may be written in between.
        self.alive = False
        return None

    def connection_lost(self, exc) -> None:
        self.alive = False
        self.channel._engine._connections.discard(self)
        waiter = self.waiter
        if waiter is None:
            return
        self.waiter = None
        if waiter.done():  # the request was cancelled
            return
        if not self.head_chunks and (exc is None or _error_class_for_lost(exc) in ("reset", "closed_early")):
            # Not one byte of the response. On a reused connection the server
            # probably closed it as idle while the request was on its way: an
            # idempotent request is retried once on a new connection, as
            # RFC 9112 9.3.1 allows and aiohttp does.
            if self.sent is not None and self.encoded.idempotent:
                self.channel._retry(waiter, self.sent, self.encoded, self.deadline)
                return
            if exc is None:
                error = TransportError("closed_early", "the server closed the connection without answering")
            else:
                error = TransportError(_error_class_for_lost(exc), describe(exc))
        elif exc is not None:
            error = TransportError(_error_class_for_lost(exc), describe(exc))
        elif _ended_by_eof(self.head_chunks):
            self._completed_by_eof(waiter)
            return
        else:
            error = TransportError("closed_early", "the server closed the connection before a complete response")
        waiter.set_exception(error)

    # -- httptools callbacks (main parser) -----------------------------------

    def on_body(self, body: bytes) -> None:
        self.received += len(body)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is None:
            return
        parser = self.parser
        status = parser.get_status_code()
        if status < 200 and status != 101:
            return  # an interim (1xx) response: keep waiting for the final one
        self.waiter = None
        if status == 101 or not parser.should_keep_alive():
            self.alive = False
            self.transport.close()
        try:
            waiter.set_result((status, self.received))
        except _InvalidState:
            pass  # the request was cancelled; the connection is still good

    # -- helpers -----------------------------------------------------------

    def _completed_by_eof(self, waiter: asyncio.Future) -> None:
        """The response's body was delimited by the close and is complete."""
        waiter.set_result((self.parser.get_status_code(), self.received))

    def _upgraded(self) -> None:
        # Only a 101 gets here; its response completed before the parser paused.
        self.alive = False
        if self.transport is not None:
            self.transport.abort()
        if self.waiter is not None:
            self.fail("protocol_error", "the server switched protocols")

    def fail(self, error_class: str, detail: str = "") -> None:
        """End the request in flight with ``error_class`` and drop the connection."""
        self.alive = False
        waiter = self.waiter
        self.waiter = None
        transport = self.transport
        if transport is not None:
            transport.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(TransportError(error_class, detail))

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()


class _CheckedConnection(_Connection):
    """A connection for plans that use read timeouts, a response size cap or captures.

    Plans that use none of them get :class:`_Connection`, whose per-response
    work is exactly what it was before these features existed. Here every
    ``data_received`` is counted (the watchdog tells silence from progress by
    the count), every body piece is checked against the cap, and headers and
    a body prefix are kept for requests that capture them.
    """

    __slots__ = ("reads", "watched", "watched_reads", "quiet_since", "captured_headers", "captured_body")

    def __init__(self, channel: "_FastChannel"):
        super().__init__(channel)
        self.reads = 0  # data_received calls so far
        self.watched = None  # the waiter the watchdog saw last, with the read count then and since when
        self.watched_reads = 0
        self.quiet_since = 0.0
        self.captured_headers: dict = {}
        self.captured_body = bytearray()

    def buffer_updated(self, nbytes: int) -> None:
        self.reads += 1  # the watchdog tells silence from a slow trickle by this count
        super().buffer_updated(nbytes)

    def data_received(self, data) -> None:
        self.reads += 1  # (also reached directly, without buffer_updated, by tests and retries)
        super().data_received(data)

    # -- httptools callbacks (main parser) -----------------------------------

    def on_message_begin(self) -> None:
        encoded = self.encoded
        if encoded is not None and encoded.captures:
            self.captured_headers = {}
            self.captured_body = bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.encoded.capture_headers:
            _add_header(self.captured_headers, name, value)

    def on_body(self, body: bytes) -> None:
        received = self.received + len(body)
        self.received = received
        encoded = self.encoded
        keep = encoded.capture_body - len(self.captured_body)
        if keep > 0:
            self.captured_body += body[:keep]
        if encoded.limit and received > encoded.limit and self.waiter is not None:
            self.fail("body_too_large", f"the response body exceeded {encoded.limit} bytes")

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is None:
            return
        status = self.parser.get_status_code()
        if (status >= 200 or status == 101) and self.encoded.captures:
            self.channel.captured = self._capture()
        _Connection.on_message_complete(self)

    def _completed_by_eof(self, waiter: asyncio.Future) -> None:
        if self.encoded.captures:
            self.channel.captured = self._capture()
        _Connection._completed_by_eof(self, waiter)

    def _capture(self) -> tuple[dict, bytes]:
        return self.captured_headers, bytes(self.captured_body)


class _FastChannel:
    """One worker's connection slot; reconnects lazily whenever the connection is gone.

    ``send`` is a plain method that returns the request's Future (an
    awaitable, as the Channel interface requires) when the connection is up:
    no coroutine object and no extra frame per request. It returns a
    coroutine only when it must connect first.
    """

    __slots__ = ("_engine", "_loop", "_conn", "_encoded", "captured")

    def __init__(self, engine: "FastEngine", loop: asyncio.AbstractEventLoop):
        self._engine = engine
        self._loop = loop
        self._conn = None
        self._encoded = engine._encoded
        self.captured = None  # set by the connection when a request captures (only on _CheckedChannel)

    def send(self, request: RequestPlan, seq: int, worker: int):
        conn = self._conn
        if conn is None or not conn.alive or conn.waiter is not None:
            # No connection yet, it was closed, or a cancelled request left it mid-response.
            return self._connect_and_send(request, seq, worker)
        encoded = self._encoded[request.index]
        data = encoded.whole
        if data is None:
            path = encoded.render(seq, worker)
            if encoded.plain:
                data = encoded.prefix + path.encode("ascii") + encoded.tail
            else:
                data = encoded.prefix + encoded.encode_path(path) + encoded.tail
        loop = self._loop
        waiter = loop.create_future()
        conn.waiter = waiter
        conn.deadline = loop.time() + request.timeout_s
        conn.received = 0
        conn.head_chunks.clear()
        conn.sent = data  # a reused connection: the request may be retried once
        conn.encoded = encoded
        if encoded.is_head:
            conn.parser = _HeadResponse(conn).parser
        try:
            conn.transport.write(data)
        except RuntimeError:  # the transport was closed under us: start over on a new connection
            conn.waiter = None
            conn.alive = False
            return self._connect_and_send(request, seq, worker)
        if encoded.body is not None:
            conn.transport.write(encoded.body)
        return waiter

    async def _connect_and_send(self, request: RequestPlan, seq: int, worker: int) -> tuple[int, int]:
        loop = self._loop
        now = loop.time()
        deadline = now + request.timeout_s  # the timeout covers connecting, like aiohttp's total
        encoded = self._encoded[request.index]
        data = encoded.whole
        if data is None:
            data = encoded.prefix + encoded.encode_path(encoded.render(seq, worker)) + encoded.tail
        conn = await self._connect(now + encoded.connect_timeout)
        waiter = loop.create_future()
        conn.start(waiter, data, encoded, deadline, retryable=False)
        try:
            return await waiter
        except _Cancelled:
            conn.fail("other", "the request was cancelled before its response arrived")
            raise

    def _retry(self, waiter: asyncio.Future, data: bytes, encoded: _Encoded, deadline: float) -> None:
        task = self._loop.create_task(self._resend(waiter, data, encoded, deadline))
        retries = self._engine._retries
        retries.add(task)
        task.add_done_callback(retries.discard)

    async def _resend(self, waiter: asyncio.Future, data: bytes, encoded: _Encoded, deadline: float) -> None:
        """Send a request again on a new connection; its outcome settles the original Future."""
        try:
            conn = await self._connect(min(deadline, self._loop.time() + encoded.connect_timeout))
        except TransportError as exc:
            if not waiter.done():
                waiter.set_exception(exc)
            return
        if waiter.done():  # cancelled meanwhile
            return
        conn.start(waiter, data, encoded, deadline, retryable=False)

    async def _connect(self, deadline: float) -> _Connection:
        """A new connection, established by ``deadline`` (else connect_timeout)."""
        engine = self._engine
        loop = self._loop
        old = self._conn
        self._conn = None
        if old is not None:
            old.close()
        try:
            addresses = await engine._addresses(deadline)
            conn = None
            last_error: BaseException | None = None
            for position, (family, address) in enumerate(addresses):
                try:
                    conn = await asyncio.wait_for(self._open(family, address), max(deadline - loop.time(), 0.0))
                except (OSError, asyncio.TimeoutError) as exc:
                    last_error = exc
                    if isinstance(exc, asyncio.TimeoutError):
                        break
                    continue
                if position:  # try the address that worked first from now on
                    engine._resolved = [addresses[position]] + [a for a in addresses if a != addresses[position]]
                break
            if conn is None:
                raise last_error or OSError(errno.ECONNREFUSED, "no address to connect to")
        except TransportError:
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            raise TransportError(_error_class_for_connect(exc), describe(exc)) from None
        self._conn = conn
        return conn

    async def _open(self, family: int, address: tuple) -> _Connection:
        loop = self._loop
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
            _, conn = await loop.create_connection(lambda: self._engine._connection_class(self), sock=sock)
        except BaseException:
            sock.close()
            raise
        return conn

    async def aclose(self) -> None:
        conn = self._conn
        self._conn = None
        if conn is not None:
            if conn.waiter is not None:
                conn.fail("other", "the channel was closed")
            conn.close()


class _CheckedChannel(_FastChannel):
    """The channel of a plan with captures: ``captured`` describes the last send only."""

    __slots__ = ()

    def send(self, request: RequestPlan, seq: int, worker: int):
        self.captured = None
        return _FastChannel.send(self, request, seq, worker)


#: Size of the engine's one read buffer (see _Connection.get_buffer).
_READ_BUFFER_BYTES = 256 * 1024


class FastEngine:
    """HTTP/1.1 keep-alive engine for plain http:// targets; one connection per worker."""

    name = "fast"

    def __init__(self, plan: Plan, base_url: str):
        # Plans from the compiler carry URL credentials as a header already; a bare URL gets the same treatment.
        base_url, user, password = url_credentials(base_url)
        if user is not None:
            plan = replace(plan, flow=with_authorization(plan.flow, basic_authorization(user, password)))
        reason = unsupported_reason(plan, base_url)
        if reason is not None:
            raise FastEngineUnsupported(
                f"the fast engine does not support {reason} ({base_url}); use 'engine: aiohttp' or 'engine: auto'"
            )
        base = base_url.rstrip("/")
        parts = urlsplit(base)
        host = parts.hostname
        if not host:
            raise FastEngineUnsupported(f"the target URL has no host: {base_url!r}")
        try:
            port = parts.port or 80
        except ValueError:
            raise FastEngineUnsupported(f"the target URL has an invalid port: {base_url!r}") from None
        self.host = host
        self.port = port
        self.base_url = base
        # Everything after scheme://host:port is a prefix of every request path,
        # exactly as the aiohttp engine joins base_url + path.
        path_prefix = base[len(parts.scheme) + 3 + len(parts.netloc):]
        shown_host = f"[{host}]" if ":" in host else host if host.isascii() else host.encode("idna").decode("ascii")
        host_header = (shown_host if port == 80 else f"{shown_host}:{port}").encode("ascii")
        for position, request in enumerate(plan.flow):
            if request.index != position:  # channels look requests up by index
                raise ValueError("plan.flow indexes must be 0..n-1 in order")
        self._encoded = tuple(_Encoded(request, host_header, path_prefix) for request in plan.flow)
        self._resolved = self._numeric_addresses(host, port)
        self._resolving: asyncio.Future | None = None
        self._connections: set[_Connection] = set()
        self._read_view = memoryview(bytearray(_READ_BUFFER_BYTES))
        self._retries: set[asyncio.Task] = set()
        # The optional features cost per-response work only when the plan uses them.
        encoded = self._encoded
        self._silence_limits = any(e.read_timeout is not None for e in encoded)
        checked = self._silence_limits or any(e.limit or e.captures for e in encoded)
        self._connection_class = _CheckedConnection if checked else _Connection
        self._channel_class = _CheckedChannel if any(e.captures for e in encoded) else _FastChannel
        shortest = min([r.timeout_s for r in plan.flow]
                       + [r.read_timeout_s for r in plan.flow if r.read_timeout_s is not None] or [1.0])
        self._tick_s = min(max(shortest / 10.0, _WATCHDOG_MIN_S), _WATCHDOG_MAX_S)
        self._watchdog: asyncio.Task | None = None
        self._closed = False

    # -- Engine interface ---------------------------------------------------

    async def open_channel(self, worker: int) -> _FastChannel:
        if self._closed:
            raise RuntimeError("the engine is closed")
        loop = asyncio.get_running_loop()
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = loop.create_task(self._watch(loop))
        return self._channel_class(self, loop)

    async def aclose(self) -> None:
        self._closed = True
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            try:
                await watchdog
            except asyncio.CancelledError:
                pass
        for task in list(self._retries):
            task.cancel()
        for conn in list(self._connections):
            if conn.waiter is not None:
                conn.fail("other", "the engine was closed with the request in flight")
            conn.close()
        self._connections.clear()

    # -- internals ----------------------------------------------------------

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail every request in flight whose deadline has passed (one timer for all)."""
        tick = self._tick_s
        connections = self._connections
        sleep = asyncio.sleep
        silence_limits = self._silence_limits
        while True:
            await sleep(tick)
            now = loop.time()
            expired = [c for c in connections if c.waiter is not None and c.deadline <= now]
            for conn in expired:
                conn.fail("read_timeout", "no complete response within the request timeout")
            if silence_limits:
                self._check_silence(now)

    def _check_silence(self, now: float) -> None:
        """Fail requests that received nothing for longer than their read timeout.

        Progress is a change of the connection's ``reads`` count between two
        ticks, so silence is measured to within one tick (a tenth of the
        shortest timeout, at most 0.1 s) and the hot path keeps no clock.
        """
        silent = []
        for conn in self._connections:
            waiter = conn.waiter
            if waiter is None:
                continue
            limit = conn.encoded.read_timeout
            if limit is None:
                continue
            if waiter is not conn.watched or conn.reads != conn.watched_reads:
                conn.watched = waiter
                conn.watched_reads = conn.reads
                conn.quiet_since = now
            elif now - conn.quiet_since >= limit:
                silent.append(conn)
        for conn in silent:
            conn.watched = None
            conn.fail("read_timeout", f"nothing received for {conn.encoded.read_timeout} s")

    @staticmethod
    def _numeric_addresses(host: str, port: int) -> list | None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        if address.version == 6:
            return [(socket.AF_INET6, (host, port, 0, 0))]
        return [(socket.AF_INET, (host, port))]

    async def _addresses(self, deadline: float) -> list:
        """The target's addresses, resolved once per engine (name lookups are slow and shared)."""
        resolved = self._resolved
        if resolved is not None:
            return resolved
        loop = asyncio.get_running_loop()
        resolving = self._resolving
        if resolving is None or resolving.done():  # none yet, or the last one failed
            resolving = self._resolving = loop.create_task(self._resolve(loop))
            # Every waiter may have timed out: retrieve the outcome so it is never "unretrieved".
            resolving.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(resolving), max(deadline - loop.time(), 0.0))
        except asyncio.TimeoutError:
            # aiohttp counts time spent resolving against the connection, too.
            raise TransportError("connect_timeout", f"resolving {self.host} timed out") from None
        except (socket.gaierror, UnicodeError) as exc:
            raise TransportError("dns", describe(exc)) from None

    async def _resolve(self, loop: asyncio.AbstractEventLoop) -> list:
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        addresses = []
        for family, _, _, _, address in infos:
            if family in (socket.AF_INET, socket.AF_INET6) and (family, address) not in addresses:
                addresses.append((family, address))
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"no IPv4/IPv6 address for {self.host}")
        self._resolved = addresses
        return addresses
