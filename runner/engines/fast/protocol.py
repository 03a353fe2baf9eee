"""The fast engine's protocol: one TCP connection and the one request in flight on it.

Responses are parsed incrementally by ``httptools`` and their bodies are only
counted (or a prefix kept when a request captures), so the request is
reported right after its last body byte arrives. The object waiting for the
answer (``waiter``) is the user's transport itself: ``set_result`` and
``set_exception`` hand the outcome straight to the virtual user, so no
Future exists per request. Errors are classified like the aiohttp engine's,
so both engines report the same classes for the same faults.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from typing import TYPE_CHECKING

import httptools

from ...tls import tls_failure
from ..base import TransportError, connect_errno_class, describe, lost_errno_class

if TYPE_CHECKING:
    from .encoding import Encoded
    from .engine import FastTransport


_new_parser = httptools.HttpResponseParser
_ParserError = httptools.HttpParserError
_ParserUpgrade = httptools.HttpParserUpgrade
_ParserCallbackError = httptools.HttpParserCallbackError
_InvalidState = asyncio.InvalidStateError
_perf_ns = time.perf_counter_ns


def _error_class_for_connect(exc: BaseException) -> str:
    """Classify a failed connection attempt like the aiohttp engine does."""
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "connect_timeout"
    code = getattr(exc, "errno", None)
    if code == errno.ETIMEDOUT:
        return "connect_timeout"
    return connect_errno_class(code) or "other"


def _error_class_for_lost(exc: BaseException) -> str:
    """Classify an exception that ended an established connection mid-response."""
    if isinstance(exc, ssl.SSLError):
        # A TLS record the peer mangled (bad MAC, an alert) is a TLS fault; an abrupt end of the stream is not.
        return "closed_early" if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) else "tls"
    known = lost_errno_class(getattr(exc, "errno", None))
    if known is not None:
        return known
    if isinstance(exc, OSError):
        return "closed_early"
    return "other"



def lost_error(exc: BaseException) -> TransportError:
    """The error of a request whose connection ``exc`` ended; a TLS alert is worded as a handshake failure is."""
    error_class = _error_class_for_lost(exc)
    return TransportError(error_class, tls_failure(exc) if error_class == "tls" else describe(exc))


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
    # Set-Cookie lines cannot be joined with commas (their dates contain commas): one per line.
    headers[key] = text if previous is None else previous + ("\n" if key == "set-cookie" else ", ") + text


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
        if self.conn.encoded.capture_headers or self.conn.encoded.cookies:
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
        conn.completed += 1
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

    Parser callbacks are only ``on_message_begin``, ``on_body`` and
    ``on_message_complete`` (the fewer Python calls per response the better);
    the raw bytes that arrive before the first body byte are kept until the
    next request so that an EOF can be judged (see :func:`_ended_by_eof`)
    without parsing headers on the hot path.

    A completed response is handed to the user only after the parser has
    seen every byte of the read it ended in (:meth:`_feed`), because the
    user sends its next request on this connection at once: bytes a server
    put after the end of a response (a wrong Content-Length, a body on a 204)
    are then judged as part of that response, never of the next request.
    """

    __slots__ = (
        "channel", "transport", "parser", "main_parser", "alive", "waiter", "deadline", "received",
        "head_chunks", "sent", "encoded", "_read_view", "completed", "tls", "lost", "outcome", "answered",
    )

    def __init__(self, channel: "FastTransport"):
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
        self.completed = 0  # responses completed on this connection
        self.tls = None  # the TlsPlan it was made with (https), for the reuse check
        self.lost = None  # what ended the connection while no request was on it
        self.outcome = None  # (status, received) of a response complete in the read being parsed...
        self.answered = None  # ...and its waiter: both handed over by _feed once the read is parsed

    def start(self, waiter: asyncio.Future, data: bytes, encoded: "Encoded", deadline: float,
              retryable: bool) -> None:
        """Send a request (the slow paths; :meth:`_FastChannel.send` inlines this)."""
        self.waiter = waiter
        self.deadline = deadline
        self.received = 0
        self.head_chunks.clear()
        self.sent = data if retryable else None
        self.encoded = encoded
        if encoded.is_head:
            self.parser = self.head_parser()
        transport = self.transport
        transport.write(data)
        if encoded.body is not None:
            transport.write(encoded.body)

    def head_parser(self):
        """A parser for the response to a HEAD request (see :class:`_HeadResponse`)."""
        return _HeadResponse(self).parser

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
        if self.received and self.waiter is not None:
            self._feed(data)  # inside a body: only the parser needs the bytes
            return
        if self.waiter is None or self.head_chunks:
            self.data_received(data)  # the rare paths, or the rest of a head that came in pieces
            return
        # The first bytes of a response, most often all of it: the head is kept (for an EOF
        # to be judged, see _ended_by_eof) only when the response is not complete after them.
        self.channel.first_byte_ns = _perf_ns()
        completed = self.completed
        self._feed(data)
        if self.completed == completed and self.waiter is not None:
            self.head_chunks.append(bytes(data))

    def data_received(self, data) -> None:
        if self.waiter is None:
            # Bytes nobody asked for: the connection cannot be trusted any more.
            self.alive = False
            self.transport.abort()
            return
        if not self.received:
            if not self.head_chunks:
                self.channel.first_byte_ns = _perf_ns()
            self.head_chunks.append(bytes(data))  # the shared read buffer is reused: keep a copy
        self._feed(data)

    def _feed(self, data) -> None:
        """Give bytes to the parser, then hand over the response they completed, if any.

        A parse failure ends the request in flight; bytes that fail to parse
        after a response completed in the same read fail that response.
        """
        try:
            self.parser.feed_data(data)
        except _ParserUpgrade:
            self._upgraded()
        except _ParserCallbackError as exc:
            self._trailing_failure()
            self.fail("other", f"fast engine callback error: {describe(exc.__context__ or exc)}")
        except _ParserError as exc:
            if self._trailing_failure():
                self.fail("protocol_error", f"bytes after the end of the response: {exc}")
            else:
                self.fail("protocol_error", str(exc))
        outcome = self.outcome
        if outcome is not None:
            waiter = self.answered
            self.outcome = self.answered = None
            try:
                waiter.set_result(outcome)
            except _InvalidState:
                pass  # the request was cancelled; the connection is still good

    def _trailing_failure(self) -> bool:
        """A parse failure after a complete response: put that response back in flight to fail it."""
        if self.outcome is None:
            return False
        self.waiter = self.answered
        self.outcome = self.answered = None
        return True

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
            self.lost = exc  # a new connection lost before its first request: that request learns why
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
                error = lost_error(exc)
        elif exc is not None:
            error = lost_error(exc)
        elif _ended_by_eof(self.head_chunks):
            self._completed_by_eof(waiter)
            return
        else:
            error = TransportError("closed_early", "the server closed the connection before a complete response")
        waiter.set_exception(error)

    # -- httptools callbacks (main parser) -----------------------------------

    def on_message_begin(self) -> None:
        if self.outcome is not None:
            # Another response starts right after the one just completed, which no request asked
            # for: the completed one stands (as on the aiohttp engine), the connection is not used again.
            self.alive = False
            self.transport.close()

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
        self.completed += 1
        if status == 101 or not parser.should_keep_alive():
            self.alive = False
            self.transport.close()
        self.answered = waiter
        self.outcome = (status, self.received)  # handed over by _feed once the read is parsed

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

    def __init__(self, channel: "FastTransport"):
        super().__init__(channel)
        self.reads = 0  # data_received calls so far
        self.watched = None  # the waiter the watchdog saw last, with the read count then and since when
        self.watched_reads = 0
        self.quiet_since = 0.0
        self.captured_headers: dict = {}
        self.captured_body = bytearray()

    def buffer_updated(self, nbytes: int) -> None:
        self.reads += 1  # the watchdog tells silence from a slow trickle by this count
        data = self._read_view[:nbytes]
        if self.waiter is None or not self.received:
            _Connection.data_received(self, data)  # the head is kept as it arrives: cookies are read from it
            return
        self._feed(data)

    def data_received(self, data) -> None:
        self.reads += 1  # (also reached directly, without buffer_updated, by tests and retries)
        super().data_received(data)

    # -- httptools callbacks (main parser) -----------------------------------

    def on_message_begin(self) -> None:
        _Connection.on_message_begin(self)
        encoded = self.encoded
        if encoded is not None and encoded.captures and self.outcome is None:
            self.captured_headers = {}
            self.captured_body = bytearray()

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
        headers = self.captured_headers
        if not headers and self.encoded.cookies:
            headers = _set_cookies(self.head_chunks)
        return headers, bytes(self.captured_body)


class _HeaderConnection(_CheckedConnection):
    """A checked connection that also keeps every response header (checks or captures read them).

    Only plans that need headers pay for a Python call per header; a cookie
    jar alone makes do with :func:`_set_cookies`, one search of the head.
    """

    __slots__ = ()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.encoded.capture_headers:
            _add_header(self.captured_headers, name, value)


def _set_cookies(chunks: list) -> dict:
    """``{"set-cookie": lines}`` from the raw head of a response, or ``{}``: one search when there is none.

    The jar needs only Set-Cookie, so instead of a parser callback per header
    the head (kept anyway, see :func:`_ended_by_eof`) is searched once.
    """
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    start = 0
    end = raw.find(b"\r\n\r\n")
    while end >= 0 and raw[start + 9:start + 10] == b"1" and raw[start + 9:start + 12] != b"101":
        start = end + 4  # an interim (1xx) head: the final response's head follows
        end = raw.find(b"\r\n\r\n", start)
    head = raw[start:end] if end >= 0 else raw[start:]
    lowered = head.lower()
    start = lowered.find(b"\nset-cookie:")
    if start < 0:
        return {}
    lines = []
    while start >= 0:
        value_start = start + len(b"\nset-cookie:")
        value_end = head.find(b"\r\n", value_start)
        lines.append(head[value_start:value_end if value_end >= 0 else len(head)].strip().decode("latin-1"))
        start = lowered.find(b"\nset-cookie:", value_start)
    return {"set-cookie": "\n".join(lines)}

