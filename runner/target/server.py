"""The built-in target server: the embedded HTTP/1.1 server that load tests hit.

It exists so that a scenario (and the runner's own tests) always has a known,
fast, deterministic server to measure against. Being the thing under load, it
must never be the bottleneck, so it is written directly on asyncio Protocols
(uvloop when available) with ``httptools`` parsing, and the common case -- a
plain keep-alive HTTP/1.1 request without a query -- is a single
``transport.write`` of bytes prepared in advance.

Behaviour (all per request, via the query string):

* ``delay=<seconds>`` delays the response; otherwise, when the config has
  ``delay_max_s > 0``, a delay is drawn from one seeded per-server RNG in
  request-arrival order, so a seed reproduces the same sequence of delays.
* ``size=<bytes>`` changes the body size (capped at 256 MiB),
  ``chunked=1`` switches to ``Transfer-Encoding: chunked``,
  ``status=<code>`` changes the status code.
* ``/fault/<kind>`` answers with a fault (resets, hangs, trickles, broken
  framing, huge bodies, 5xx bursts...; see :mod:`runner.target.faults`).
* ``/__runner/stats`` and ``/__runner/reset`` expose and clear the count of
  answered (non-control) requests, which tests use to check what the server saw.
* ``/login``, ``/items``, ``/cart`` and ``/whoami`` are a small shop API with
  JSON bodies, bearer tokens and a session cookie (see
  :mod:`runner.target.shop`); they honour ``?delay=`` and the seeded delays.

With a TLS context (``python -m runner.target --tls-cert ... --tls-key ...``,
made by :mod:`runner.target.certificate`) the same protocol serves https:
asyncio's TLS layer sits between the socket and :class:`TargetProtocol`, so
every behaviour above is the same over TLS.

Pipelined requests are answered strictly in order even when their delays
differ: each connection keeps a queue of pending responses that timers mark
ready, and the queue is flushed from its head. The bytes of responses are
built by :mod:`runner.target.responses`.

The hot path, cheapest first:

* a read whose bytes equal the connection's last read, when that read was
  exactly one plain request (load generators repeat one request), is
  answered without being parsed again;
* otherwise httptools parses the read, and each plain request only counts a
  "hit"; after the read, all hits go out in one write (so a pipelined batch
  is one write, not one per request). The checks per request avoid what
  costs most in Python: ``in`` with a bytes operand and httptools'
  ``get_http_version``.

Connections start *lean*, with no per-header or body callbacks; the first
shop request turns a connection *full* (see :class:`TargetProtocol`), so the
shop API costs the plain path nothing.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import sys
import traceback
from collections import OrderedDict, deque
from itertools import repeat
from contextlib import suppress
from email.utils import formatdate
from random import Random
from typing import Callable

import httptools

from .config import TargetConfig
from .faults import FAULT_KINDS, FAULT_PREFIX, Fault, FaultState, parse_fault, start_takeover
from .responses import (
    CHUNK_SIZE,
    CONNECTION_CLOSE,
    CONNECTION_KEEP_ALIVE,
    END_OF_HEADERS,
    HTML_TYPE,
    JSON_TYPE,
    MAX_BODY_SIZE,
    SERVER_HEADER,
    TEXT_TYPE,
    ZERO_DELAY_HEADER,
    BadRequest,
    build_response,
    delay_header,
    make_html_body,
    parse_options,
    split_target,
    status_line,
)
from .shop import MAX_BODY_BYTES, SHOP_PATHS, SHOP_PREFIXES, Shop

__all__ = [
    "CHUNK_SIZE",
    "FAULT_KINDS",
    "MAX_BODY_SIZE",
    "TargetConfig",
    "TargetProtocol",
    "make_html_body",
    "run_server",
    "server_tls_context",
    "start_server",
]

# Bodies of at most this size are glued to the default head so the hot path is
# one write; a bigger default body is written as head + body instead.
_FAST_PATH_MAX_BODY = 1024 * 1024

# Recently requested bodies kept so repeated large ``?size=`` requests are not
# rebuilt; bounded both in count and in bytes.
_BODY_CACHE_ENTRIES = 8
_BODY_CACHE_BYTES = 2 * MAX_BODY_SIZE

CONTROL_PREFIX = b"/__runner/"
STATS_PATH = b"/__runner/stats"
RESET_PATH = b"/__runner/reset"
# Paths the hot path must leave to _answer (one startswith with a tuple).
_SPECIAL_PREFIXES = (CONTROL_PREFIX, FAULT_PREFIX, *SHOP_PREFIXES)

# Hits of one read answered as one joined write up to this many bytes; above,
# one writelines of the same prepared bytes repeated (no copy).
_JOIN_LIMIT = 64 * 1024
# More distinct header names than this in one request is not a client we serve.
_MAX_HEADERS = 512
# A read is remembered for answering its repeats without parsing up to this size.
_REPEAT_MAX_BYTES = 4096
# A lean connection keeps at most this many bytes of an unfinished request
# (or of a stream never between requests) before it turns full.
_CARRY_MAX_BYTES = 128 * 1024
# Requests a connection can begin (counted down by a C iterator); never reached.
_BEGIN_BUDGET = 1 << 62
# The carry of a full connection (which keeps none).
_FULL: list[bytes] = []
# What feeding a parser can raise (an upgrade is not an HttpParserError).
_PARSE_ERRORS = (httptools.HttpParserError, httptools.HttpParserUpgrade)


class _Callbacks:
    """The callbacks one httptools parser calls (it looks them up once, by name)."""

    __slots__ = ("on_url", "on_message_complete", "on_message_begin", "on_header", "on_body")

    def __init__(self, *, on_url, on_message_complete, on_message_begin, on_header=None, on_body=None) -> None:
        self.on_url = on_url
        self.on_message_complete = on_message_complete
        self.on_message_begin = on_message_begin
        self.on_header = on_header
        self.on_body = on_body


class _TargetState:
    """Everything the connections of one server share.

    One RNG per server (not per connection) is what makes a seed reproduce
    the same delay sequence regardless of how requests spread over
    connections.
    """

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self.requests = 0
        self.delay_rng = Random(config.seed)
        self.draws_delays = config.delay_max_s > 0
        self.faults = FaultState(config.seed, config.faults)
        self.fault_mix = bool(config.faults)
        self.fast_path = not self.draws_delays and config.body_size <= _FAST_PATH_MAX_BODY and not self.fault_mix
        self.connections: set[TargetProtocol] = set()
        self.shop = Shop()
        self.default_body = make_html_body(config.body_size)
        self._body_cache: OrderedDict[int, bytes] = OrderedDict()
        self._body_cache_bytes = 0
        self.common_headers = b""
        self.default_response = b""
        self.refresh_date()

    def refresh_date(self) -> None:
        """Rebuild the Date-dependent prepared bytes (called once a second)."""
        date = formatdate(usegmt=True).encode("ascii")
        self.common_headers = SERVER_HEADER + b"Date: " + date + b"\r\n"
        if self.fast_path:
            self.default_response = b"".join(
                (
                    status_line(200),
                    self.common_headers,
                    HTML_TYPE,
                    b"Content-Length: %d\r\n" % len(self.default_body),
                    ZERO_DELAY_HEADER,
                    END_OF_HEADERS,
                    self.default_body,
                )
            )

    def draw_delay(self) -> float:
        if not self.draws_delays:
            return 0.0
        return self.delay_rng.uniform(self.config.delay_min_s, self.config.delay_max_s)

    def body(self, size: int | None) -> bytes:
        """The HTML body of ``size`` bytes, from a small cache of recent sizes."""
        if size is None or size == self.config.body_size:
            return self.default_body
        cache = self._body_cache
        body = cache.get(size)
        if body is not None:
            cache.move_to_end(size)
            return body
        body = make_html_body(size)
        cache[size] = body
        self._body_cache_bytes += size
        while len(cache) > _BODY_CACHE_ENTRIES or self._body_cache_bytes > _BODY_CACHE_BYTES:
            _, evicted = cache.popitem(last=False)
            self._body_cache_bytes -= len(evicted)
        return body

    def reset_counters(self) -> None:
        self.requests = 0
        self.faults.reset()

    def close_connections(self) -> None:
        for connection in list(self.connections):
            connection.close()


class _PendingResponse:
    """One queued response of a connection, waiting for its delay or its turn.

    ``fault`` (a takeover fault) replaces the response: when its turn comes
    the fault owns the connection and nothing after it is answered.
    """

    __slots__ = ("ready", "parts", "control", "counted", "close", "head_only", "connection_header", "timer",
                 "fault")

    def __init__(
        self,
        parts: list | None,
        *,
        ready: bool,
        close: bool,
        counted: bool,
        control: bytes | None = None,
        head_only: bool = False,
        connection_header: bytes = b"",
        fault: Fault | None = None,
    ) -> None:
        self.ready = ready
        self.parts = parts
        self.control = control
        self.counted = counted
        self.close = close
        self.head_only = head_only
        self.connection_header = connection_header
        self.timer: asyncio.TimerHandle | None = None
        self.fault = fault


class _Reparse(Exception):
    """Raised by a lean parser's callback at a shop request: parse again with headers (see TargetProtocol)."""


class TargetProtocol(asyncio.Protocol):
    """One client connection: parse with httptools, answer in request order.

    A connection starts *lean*: its parser calls back only for the URL, the
    end of a request and (in C) the start of one, so plain requests cost no
    per-header work. The shop routes need headers and bodies. At the first
    shop request the connection turns *full* for good: a new parser with
    header and body callbacks parses again the bytes since the last point
    where no request was in progress (kept as ``_carry``). It skips the
    requests already answered, so the shop request is answered with its
    headers. A connection whose carry grows past :data:`_CARRY_MAX_BYTES`
    turns full the same way, so the carry stays bounded.
    """

    __slots__ = ("_state", "_loop", "_transport", "_parser", "_url", "_pending", "_closing", "_close_when_drained",
                 "_fault_writer", "_fast", "_hits", "_done", "_begins", "_lean", "_carry", "_carry_bytes",
                 "_carry_done", "_first", "_repeat", "_headers", "_body", "_skip")

    def __init__(self, state: _TargetState) -> None:
        self._state = state
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._pending: deque[_PendingResponse] = deque()
        # Set once no further request may be answered on this connection.
        self._closing = False
        # Set when the connection must close once the pending queue is empty.
        self._close_when_drained = False
        # A fault still writing (trickle or huge body): resumed and cancelled from here.
        self._fault_writer = None
        # Whether plain requests get the prepared default response (per server).
        self._fast = state.fast_path
        # Plain requests parsed but not written yet (written after each read, in one write).
        self._hits = 0
        # Requests completed, and (lean) requests begun: a C iterator counts
        # them down for free, and the two are equal between requests.
        self._done = 0
        self._begins = iter(range(_BEGIN_BUDGET))
        self._lean = True
        # Lean: the reads since the last point between requests (None: the last
        # read ended there), their total size, and _done at that point. Full: _FULL.
        self._carry: list[bytes] | None = None
        self._carry_bytes = 0
        self._carry_done = 0
        # Lean: the current read, when it starts with the request line of the
        # next request to complete; else None.
        self._first: bytes | None = None
        # A read that was exactly one plain request: the same bytes again get
        # the same answer without being parsed.
        self._repeat = b""
        # Full: the current request's headers and (shop paths only) body; a
        # body over MAX_BODY_BYTES is None. Requests still to skip after a re-parse.
        self._headers: dict[bytes, bytes] = {}
        self._body: bytearray | None = bytearray()
        self._skip = 0
        self._parser = httptools.HttpRequestParser(
            _Callbacks(on_url=self.on_url, on_message_complete=self.on_message_complete,
                       on_message_begin=self._begins.__next__)
        )

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._state.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if data == self._repeat and not self._pending:
            # The same bytes as a read that was exactly one plain request, and
            # nothing was parsed since: the same answer, without parsing.
            state = self._state
            self._transport.write(state.default_response)
            state.requests += 1
            return
        if self._carry is not None:
            # A request continues from an earlier read, or the connection is full.
            self._receive_more(data)
            return
        # Lean, and the read starts between requests: with the request line
        # of the next request to complete (see on_message_complete).
        done_before = self._done
        self._first = data
        try:
            self._parser.feed_data(data)
        except _PARSE_ERRORS as error:
            if self._parse_failed(error, data, done_before):
                return
        hits = self._hits
        if hits:
            if hits == 1:
                self._hits = 0
                state = self._state
                self._transport.write(state.default_response)
                state.requests += 1
            else:
                self._write_hits()
        if self._closing:
            return
        if _BEGIN_BUDGET - self._begins.__length_hint__() == self._done:
            # Between requests again: one plain request and nothing else can
            # be answered again without parsing.
            if hits == 1 and self._done == done_before + 1 and len(data) <= _REPEAT_MAX_BYTES:
                self._repeat = data
            else:
                self._repeat = b""
        else:
            self._repeat = b""
            self._carry = [data]
            self._carry_bytes = len(data)
            self._carry_done = done_before

    def _receive_more(self, data: bytes) -> None:
        """A read of a full connection, or of a lean one in the middle of a request."""
        if not self._lean:
            self._feed_full(data)
            return
        carry = self._carry
        self._repeat = b""
        self._first = None
        try:
            self._parser.feed_data(data)
        except _PARSE_ERRORS as error:
            carry.append(data)
            if self._parse_failed(error, b"".join(carry), self._carry_done):
                return
        self._write_hits()
        if self._closing:
            return
        if _BEGIN_BUDGET - self._begins.__length_hint__() == self._done:
            self._carry = None
            return
        carry.append(data)
        self._carry_bytes += len(data)
        if self._carry_bytes > _CARRY_MAX_BYTES:
            # A long request (or a stream never between requests): stop
            # keeping bytes, parse them again fully, and stay full.
            self._go_full(b"".join(carry), self._done - self._carry_done)

    def _parse_failed(self, error: Exception, since_idle: bytes, done_before: int) -> bool:
        """Handle what a lean parser raised; return True when the read needs nothing more.

        ``since_idle`` is the bytes since the last point between requests,
        up to the end of this read, and ``done_before`` the requests
        completed before them.
        """
        if isinstance(error, httptools.HttpParserCallbackError):
            if type(error.__context__) is _Reparse:
                # A shop request: every request before it was answered; parse
                # again from the last point between requests, with headers.
                self._go_full(since_idle, self._done - 1 - done_before)
                return True
            self._callback_failed(error)
        elif isinstance(error, httptools.HttpParserUpgrade):
            self._upgrade_requested()
            return True
        else:
            self._reject(400)
        return False

    def eof_received(self) -> bool | None:
        # Like nginx, treat EOF as the client giving up (a full close looks
        # the same as a half-close from here): pending responses are dropped
        # and not counted, so the count matches what clients could receive.
        return None

    def pause_writing(self) -> None:
        # A client that does not read must not make us buffer without bound.
        with suppress(RuntimeError, AttributeError):
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._fault_writer is not None:
            self._fault_writer.resume()
        elif not self._closing:
            with suppress(RuntimeError, AttributeError):
                self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._hits = 0
        self._carry = None
        for pending in self._pending:
            if pending.timer is not None:
                pending.timer.cancel()
        self._pending.clear()
        if self._fault_writer is not None:
            self._fault_writer.cancel()
            self._fault_writer = None
        self._state.connections.discard(self)
        # The parser holds our bound methods: break the cycle so the
        # connection is freed at once instead of by a later GC pass.
        self._parser = None

    def close(self) -> None:
        """Close this connection (used on server shutdown)."""
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    # -- parsing ------------------------------------------------------------

    def _go_full(self, data: bytes, skip: int) -> None:
        """Turn full: a parser with header and body callbacks parses ``data``, skipping ``skip`` requests.

        ``data`` must start where no request was in progress, and the first
        ``skip`` requests in it must be the ones already answered.
        """
        self._lean = False
        # Never None again, which sends every read to _receive_more.
        self._carry = _FULL
        self._repeat = b""
        self._first = None
        self._url = b""
        self._headers.clear()
        self._body = bytearray()
        self._skip = skip
        self._parser = httptools.HttpRequestParser(
            _Callbacks(on_url=self.on_url, on_message_complete=self._on_full_message_complete,
                       on_message_begin=self._headers.clear, on_header=self._headers.__setitem__,
                       on_body=self.on_body)
        )
        self._feed_full(data)

    def _feed_full(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgrade_requested()
            return
        except httptools.HttpParserCallbackError as error:
            self._callback_failed(error)
        except httptools.HttpParserError:
            self._reject(400)
        self._write_hits()
        if self._url and len(self._headers) > _MAX_HEADERS and not self._closing:
            # A head that never ends must not grow the header dict without bound.
            self._reject(400)

    def _upgrade_requested(self) -> None:
        # The request itself was answered; we do not switch protocols, and
        # the bytes after it are not HTTP/1.1 any more.
        self._write_hits()
        self._closing = True
        self._close_after_pending()

    def _callback_failed(self, error: httptools.HttpParserCallbackError) -> None:
        # A bug in this module, not the client's fault: say so once.
        traceback.print_exception(error.__context__ or error, file=sys.stderr)
        self._reject(500)

    # -- httptools callbacks ----------------------------------------------

    def on_url(self, url: bytes) -> None:
        # The URL may arrive in fragments when a request spans reads.
        self._url += url

    def on_body(self, data: bytes) -> None:
        # (Full parsers only.) Only the shop reads bodies; others are dropped.
        if self._url.startswith(SHOP_PREFIXES):
            body = self._body
            if body is not None:
                if len(body) + len(data) > MAX_BODY_BYTES:
                    self._body = None
                else:
                    body += data

    def _on_full_message_complete(self) -> None:
        if self._skip:
            # Answered before the re-parse.
            self._skip -= 1
            self._url = b""
            self._body = bytearray()
            return
        self.on_message_complete()

    def on_message_complete(self) -> None:
        self._done += 1
        url = self._url
        self._url = b""
        first = self._first
        self._first = None
        if self._closing:
            return
        parser = self._parser
        # Hot path: the default response, already fully prepared; counted
        # here and written once per read by data_received. (An int operand
        # makes ``in`` a memchr; a bytes one first fails as an int, slowly.)
        # The version and method: from the raw request line when the read
        # starts with "GET <url> HTTP/1.1", as asking the parser costs more
        # (it formats the version as a new string each time).
        if (
            self._fast
            and not self._pending
            and 0x3F not in url  # b"?"
            and not url.startswith(_SPECIAL_PREFIXES)
            and parser.should_keep_alive()
            and (
                first is not None
                and (
                    first[:4] == b"GET " and first[len(url) + 5:len(url) + 13] == b"HTTP/1.1"
                    or first[:5] == b"POST " and first[len(url) + 6:len(url) + 14] == b"HTTP/1.1"
                )
                or parser.get_method() != b"HEAD"
                and parser.get_http_version() == "1.1"
            )
        ):
            self._hits += 1
            return
        self._answer(url, parser)

    # -- responses ----------------------------------------------------------

    def _write_hits(self) -> None:
        """Write the answers of the plain requests counted so far, in one write."""
        hits = self._hits
        if not hits:
            return
        self._hits = 0
        state = self._state
        response = state.default_response
        if hits == 1:
            self._transport.write(response)
        elif hits * len(response) <= _JOIN_LIMIT:
            self._transport.write(response * hits)
        else:
            self._transport.writelines(repeat(response, hits))
        state.requests += hits

    def _answer(self, url: bytes, parser: httptools.HttpRequestParser) -> None:
        """Every request the hot path does not take: build, then send or queue."""
        path, query = split_target(url)
        shop_route = path in SHOP_PATHS
        if shop_route and self._lean:
            raise _Reparse
        state = self._state
        keep_alive = parser.should_keep_alive()
        method = parser.get_method()
        head_only = method == b"HEAD"
        if not keep_alive:
            # Later pipelined requests on this connection are not answered.
            self._closing = True
            connection_header = CONNECTION_CLOSE
        elif parser.get_http_version() != "1.1":
            connection_header = CONNECTION_KEEP_ALIVE
        else:
            connection_header = b""
        can_chunk = parser.get_http_version() == "1.1"

        if path == STATS_PATH or path == RESET_PATH:
            # Built when written, so the count includes everything before it.
            self._enqueue(
                _PendingResponse(
                    None,
                    ready=True,
                    close=not keep_alive,
                    counted=False,
                    control=path,
                    head_only=head_only,
                    connection_header=connection_header,
                ),
                delay=0.0,
            )
            return

        body = self._body
        if body is None or body:
            self._body = bytearray()
        if shop_route:
            self._answer_shop(method, path, query, None if body is None else bytes(body),
                              head_only=head_only, close=not keep_alive, connection_header=connection_header)
            return

        try:
            fault = parse_fault(path, query) if path.startswith(FAULT_PREFIX) else None
            options = parse_options(query)
        except BadRequest as error:
            self._enqueue_bad_request(error, head_only, keep_alive, connection_header)
            return
        if fault is None and state.fault_mix:
            fault = state.faults.draw()

        status = options.status
        close = not keep_alive
        if fault is not None:
            if fault.takes_over:
                self._closing = True
                self._enqueue(_PendingResponse(None, ready=True, close=True, counted=True, fault=fault), delay=0.0)
                return
            if fault.kind == "status-burst":
                status = state.faults.burst_status(fault)
            else:  # "close": an ordinary answer, then the connection ends without notice
                self._closing = True
                close = True

        delay = options.delay if options.delay is not None else state.draw_delay()
        parts = build_response(
            state.common_headers,
            status,
            state.body(options.size),
            HTML_TYPE,
            head_only=head_only,
            chunked=options.chunked and can_chunk,
            delay_header=delay_header(delay),
            connection_header=connection_header,
        )
        self._enqueue(_PendingResponse(parts, ready=delay <= 0, close=close, counted=True), delay)

    def _answer_shop(self, method: bytes, path: bytes, query: bytes, body: bytes | None, *, head_only: bool,
                     close: bool, connection_header: bytes) -> None:
        """A shop route: JSON from :class:`Shop`, delayed like any answer (``?delay=`` or the seeded draw)."""
        state = self._state
        try:
            options = parse_options(query)
        except BadRequest as error:
            self._enqueue_bad_request(error, head_only, not close, connection_header)
            return
        status, payload, extra_headers = state.shop.handle(
            b"GET" if head_only else method, path, self._headers, body
        )
        delay = options.delay if options.delay is not None else state.draw_delay()
        parts = build_response(
            state.common_headers, status, payload, JSON_TYPE,
            head_only=head_only, chunked=False,
            delay_header=delay_header(delay), connection_header=connection_header,
            extra_headers=extra_headers,
        )
        self._enqueue(_PendingResponse(parts, ready=delay <= 0, close=close, counted=True), delay)

    def _enqueue_bad_request(self, error: BadRequest, head_only: bool, keep_alive: bool,
                             connection_header: bytes) -> None:
        parts = build_response(
            self._state.common_headers, 400, (str(error) + "\n").encode(), TEXT_TYPE,
            head_only=head_only, chunked=False,
            delay_header=ZERO_DELAY_HEADER, connection_header=connection_header,
        )
        self._enqueue(_PendingResponse(parts, ready=True, close=not keep_alive, counted=True), delay=0.0)

    def _enqueue(self, pending: _PendingResponse, delay: float) -> None:
        if pending.ready and not self._pending:
            self._write(pending)
            return
        self._pending.append(pending)
        if not pending.ready:
            pending.timer = self._loop.call_later(delay, self._on_delay_elapsed, pending)

    def _on_delay_elapsed(self, pending: _PendingResponse) -> None:
        pending.timer = None
        pending.ready = True
        self._flush()

    def _flush(self) -> None:
        pending_queue = self._pending
        while pending_queue and pending_queue[0].ready:
            if self._write(pending_queue.popleft()):
                return
        if not pending_queue and self._close_when_drained:
            self._transport.close()

    def _write(self, pending: _PendingResponse) -> bool:
        """Write one response; return True if the connection is now closed (or a fault owns it)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return True
        # Plain requests of this read that came before this one go first.
        self._write_hits()
        state = self._state
        if pending.fault is not None:
            state.requests += 1
            self._fault_writer = start_takeover(pending.fault, transport, self._loop, state.common_headers)
            return True
        if pending.control is not None:
            if pending.control == RESET_PATH:
                state.reset_counters()
            body = b'{"requests": %d}' % state.requests
            pending.parts = build_response(
                state.common_headers, 200, body, JSON_TYPE,
                head_only=pending.head_only, chunked=False,
                delay_header=ZERO_DELAY_HEADER, connection_header=pending.connection_header,
            )
        parts = pending.parts
        if len(parts) == 1:
            transport.write(parts[0])
        else:
            transport.writelines(parts)
        if pending.counted:
            state.requests += 1
        if pending.close:
            self._closing = True
            transport.close()
            return True
        return False

    def _reject(self, status: int) -> None:
        """Answer an unparseable request (after any earlier ones) and close."""
        self._closing = True
        body = b"bad request\n" if status == 400 else b"internal server error\n"
        parts = build_response(
            self._state.common_headers, status, body, TEXT_TYPE,
            head_only=False, chunked=False,
            delay_header=ZERO_DELAY_HEADER, connection_header=CONNECTION_CLOSE,
        )
        self._enqueue(_PendingResponse(parts, ready=True, close=True, counted=False), delay=0.0)

    def _close_after_pending(self) -> None:
        if self._pending:
            self._close_when_drained = True
        elif self._transport is not None:
            self._transport.close()


async def start_server(host: str, port: int, config: TargetConfig,
                       tls: ssl.SSLContext | None = None) -> asyncio.Server:
    """Start serving on ``host:port`` (port 0 picks a free port) in the running loop; https with ``tls``."""
    server, _ = await _start(host, port, config, tls)
    return server


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The context an https target serves with: ``cert_file`` (certificate and chain) and its key.

    HTTP/1.1 is the only protocol offered by ALPN, so a client that offers h2
    as well still settles on what this server speaks.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def _start(host: str, port: int, config: TargetConfig,
                 tls: ssl.SSLContext | None = None) -> tuple[asyncio.Server, _TargetState]:
    loop = asyncio.get_running_loop()
    state = _TargetState(config)
    server = await loop.create_server(
        lambda: TargetProtocol(state), host, port, reuse_address=True, backlog=4096, ssl=tls
    )
    _keep_date_fresh(loop, server, state)
    return server, state


def _keep_date_fresh(loop: asyncio.AbstractEventLoop, server: asyncio.Server, state: _TargetState) -> None:
    """Refresh the Date header once a second for as long as the server serves."""

    def tick() -> None:
        if server.is_serving():
            state.refresh_date()
            loop.call_later(1.0, tick)

    loop.call_later(1.0, tick)


def run_server(host: str, port: int, config: TargetConfig, announce: bool = True,
               tls: ssl.SSLContext | None = None,
               on_listening: Callable[[str, int], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then return (so the process exits 0).

    With ``announce``, print ``LISTENING <host> <port>`` once accepting, which
    is how a parent process learns the port it picked; ``on_listening`` is
    called with the same address (``runner serve`` tells a person where it
    listens, also when port 0 picked the port). ``tls`` serves https.
    """
    try:
        with asyncio.Runner(loop_factory=_fast_loop_factory()) as runner:
            runner.run(_serve_until_signalled(host, port, config, announce, tls, on_listening))
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were installed: still a clean exit.
        pass


def _fast_loop_factory():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve_until_signalled(host: str, port: int, config: TargetConfig, announce: bool,
                                 tls: ssl.SSLContext | None = None,
                                 on_listening: Callable[[str, int], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    server, state = await _start(host, port, config, tls)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    if announce:
        sys.stdout.write(f"LISTENING {bound_host} {bound_port}\n")
        sys.stdout.flush()
    if on_listening is not None:
        on_listening(bound_host, bound_port)
    try:
        await stop.wait()
    finally:
        server.close()
        state.close_connections()
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=2.0)
