"""The fast engine: HTTP/1.1 keep-alive on raw asyncio Protocols and httptools, driven by callbacks.

Each virtual user owns at most one TCP connection (its :class:`FastTransport`),
opened on its first request and again after any close; requests are never
pipelined. The transport is itself the thing the connection reports to: when
the last byte of a response arrives, the protocol's parser callback calls
``set_result`` on it, which calls the user's ``on_response``, which records
the answer and writes the user's next request, all in that one callback.
No coroutine, no Future and no task exists per request; a task exists only
while a connection is being opened.

There is no timer per request either: one watchdog task per engine wakes a
few times per timeout period and fails every request whose deadline has
passed with ``read_timeout``. Connecting (name lookup included) is bounded by
``connect_timeout_s`` and by the total ``timeout_s``, whichever ends first,
and fails as ``connect_timeout``. Read timeouts (silence), a response size
cap and captures live in :class:`~.protocol._CheckedConnection`, used only by
plans that ask for them.

``https://`` targets get a TLS layer of memory BIOs (:mod:`.tls_layer`)
between the TCP transport and the same protocol, so the request path is the
same callbacks; the handshake
is part of opening a connection, timed apart from the TCP connect, and a
handshake that fails is a ``tls`` error whose sample says why
(:func:`runner.tls.tls_failure`). A connection made with one ``tls:`` setting
is reused only by requests with the same setting.

Timing phases cost one clock read per response (its first byte) and two per
connection opened; the virtual user turns them into histograms
(``first_byte_ns`` and ``opened``, see :class:`runner.engines.base.Transport`).

:func:`unsupported_reason` says why a plan cannot use this engine (a scheme
other than http and https), and the constructor refuses such a plan.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from dataclasses import replace
from urllib.parse import urlsplit

from ...plan import Plan, RequestPlan
from ...secrets import basic_authorization, url_credentials, with_authorization
from ...tls import ClientContexts, server_name, tls_failure
from ..base import TransportError, describe, open_channel
from .encoding import Encoded, FastEngineUnsupported
from .protocol import _CheckedConnection, _Connection, _error_class_for_connect, _HeaderConnection, lost_error
from .tls_layer import RAW_BUFFER_BYTES, TlsLayer

__all__ = ["FastEngine", "FastEngineUnsupported", "unsupported_reason"]

_WATCHDOG_MIN_S = 0.01
_WATCHDOG_MAX_S = 0.1
_perf_ns = time.perf_counter_ns


def unsupported_reason(plan: Plan, base_url: str | None) -> str | None:
    """Why ``plan`` against ``base_url`` cannot run on the fast engine, or None if it can."""
    url = base_url if base_url is not None else plan.target_url
    if url is None:  # the built-in target: plain http on loopback
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return "this target URL"
    if scheme not in ("http", "https"):
        return f"{scheme or 'scheme-less'} targets"
    return None


def _render_failed(user, request: RequestPlan, detail: str) -> None:
    if user.request is request:  # still that request (not one of a later stage)
        user.on_failure("other", detail)


class FastTransport:
    """One virtual user's connection slot; reconnects lazily whenever the connection is gone.

    It is also the connection's ``waiter``: ``set_result``/``set_exception``
    report the request in flight to the user, and ``done()`` tells the
    protocol whether anyone still waits (after ``abort``, nobody does).
    """

    __slots__ = ("_engine", "_loop", "_conn", "_encoded", "user", "pending", "captured", "_opening",
                 "first_byte_ns", "opened", "_handshake_from")

    def __init__(self, engine: "FastEngine", loop: asyncio.AbstractEventLoop, user):
        self._engine = engine
        self._loop = loop
        self._conn = None
        self._encoded = engine._encoded
        self.user = user
        self.pending = False
        self.captured = None  # (headers, body) of the response in flight, set by checked connections
        self._opening: asyncio.Task | None = None
        self.first_byte_ns = 0  # set by the connection when a response's first byte arrives
        self.opened = None  # (connect_us, tls_us or -1, ready_ns) of a connection opened for a request
        self._handshake_from = 0  # perf_counter_ns when the TLS handshake under way began; 0: none

    # -- what the user calls ------------------------------------------------------------------

    def send(self, request: RequestPlan, user) -> None:
        self.user = user
        encoded = self._encoded[request.index]
        data = encoded.whole
        if data is None:
            try:
                data = encoded.render(user)
            except Exception as exc:  # a template that cannot render for this user: count, never crash
                self._loop.call_soon(_render_failed, user, request, describe(exc))
                return
        self.pending = True
        self.captured = None
        self.first_byte_ns = 0
        conn = self._conn
        if (conn is None or not conn.alive or conn.waiter is not None or conn.tls is not encoded.tls
                or encoded.fresh):
            # No connection yet, it was closed, an aborted request left it mid-response,
            # it was made with other TLS settings, or the request wants a connection of its own.
            self._open_and_send(data, encoded, request.timeout_s)
            return
        loop = self._loop
        conn.waiter = self
        conn.deadline = loop.time() + request.timeout_s
        conn.received = 0
        conn.head_chunks.clear()
        conn.sent = data  # a reused connection: the request may be retried once
        conn.encoded = encoded
        if encoded.is_head:
            conn.parser = conn.head_parser()
        try:
            conn.transport.write(data)
        except RuntimeError:  # the transport was closed under us: start over on a new connection
            conn.waiter = None
            conn.alive = False
            self._open_and_send(data, encoded, request.timeout_s)
            return
        if encoded.body is not None:
            conn.transport.write(encoded.body)

    async def prepare(self, timeout_s: float) -> None:
        """Open the connection now, before any request (the open model readies its users this way).

        A failure is not an error here: the first request connects again and reports what happens.
        """
        conn = self._conn
        if (conn is not None and conn.alive) or self.pending or self._engine._encoded[0].fresh:
            return  # (a request that wants a fresh connection would not use this one)
        try:
            await self._connect(self._loop.time() + timeout_s, self._engine._encoded[0])
        except TransportError:
            pass

    def abort(self) -> None:
        """Forget the request in flight (the user counted it as cut off) and drop its connection."""
        self.pending = False
        self.captured = None
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()
        conn = self._conn
        if conn is not None and conn.waiter is not None:
            conn.waiter = None
            conn.alive = False
            if conn.transport is not None:
                conn.transport.abort()

    def close(self) -> None:
        self.abort()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- what the connection calls (the waiter interface) --------------------------------------

    def done(self) -> bool:
        return not self.pending

    def set_result(self, result: tuple) -> None:
        if not self.pending:
            return
        self.pending = False
        captured = self.captured
        try:
            if captured is None:
                self.user.on_response(result[0], result[1], None, None)
            else:
                self.captured = None
                self.user.on_response(result[0], result[1], captured[0], captured[1])
        except Exception as exc:  # a bug in the user must not leave it waiting forever
            self.user.crashed(exc)

    def set_exception(self, error: TransportError) -> None:
        if not self.pending:
            return
        self.pending = False
        self.captured = None
        try:
            self.user.on_failure(error.error_class, str(error))
        except Exception as exc:
            self.user.crashed(exc)

    # -- connecting ------------------------------------------------------------------------------

    def _open_and_send(self, data: bytes, encoded: Encoded, timeout_s: float) -> None:
        loop = self._loop
        now = loop.time()
        task = loop.create_task(self._connect_then_send(data, encoded, now + timeout_s,
                                                        now + encoded.connect_timeout))
        self._opening = task

    async def _connect_then_send(self, data: bytes, encoded: Encoded, deadline: float,
                                 connect_deadline: float) -> None:
        try:
            conn = await self._connect(min(deadline, connect_deadline), encoded)
        except TransportError as exc:
            self._opening = None
            self.set_exception(exc)
            return
        except Exception as exc:  # a bug must not leave the user waiting forever: count it
            self._opening = None
            self.set_exception(TransportError("other", f"{type(exc).__name__}: {exc}"))
            return
        self._opening = None
        if not self.pending:  # aborted meanwhile
            return
        if not conn.alive and conn.waiter is None and conn not in self._engine._connections:
            # Lost between opening and now (a server refusing the client certificate after a
            # TLS 1.3 handshake does that): nothing will report it but this.
            self.set_exception(lost_error(conn.lost) if conn.lost is not None else TransportError(
                "closed_early", "the server closed the new connection before the request was sent"))
            return
        conn.start(self, data, encoded, deadline, retryable=False)

    def _retry(self, waiter, data: bytes, encoded: Encoded, deadline: float) -> None:
        """Send a request again on a new connection; its outcome settles as the original would have."""
        self._opening = self._loop.create_task(self._connect_then_send(
            data, encoded, deadline, self._loop.time() + encoded.connect_timeout))

    async def _connect(self, deadline: float, encoded: Encoded) -> _Connection:
        """A new connection for ``encoded``'s settings, established by ``deadline`` (else connect_timeout)."""
        engine = self._engine
        loop = self._loop
        old = self._conn
        self._conn = None
        if old is not None:
            old.close()
        self._handshake_from = 0
        try:
            addresses = await engine._addresses(deadline)
            conn = None
            last_error: BaseException | None = None
            for position, (family, address) in enumerate(addresses):
                try:
                    conn = await asyncio.wait_for(self._open(family, address, encoded),
                                                  max(deadline - loop.time(), 0.0))
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
            if self._handshake_from:  # connected, but the handshake did not end in time
                self._handshake_from = 0
                raise TransportError("tls", tls_failure(TimeoutError("the TLS handshake timed out"))) from None
            raise TransportError(_error_class_for_connect(exc), describe(exc)) from None
        self._conn = conn
        return conn

    async def _open(self, family: int, address: tuple, encoded: Encoded) -> _Connection:
        """Connect to ``address``, then shake hands when the request is https; time both."""
        loop = self._loop
        factory = self._engine._connection_class
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            started = _perf_ns()
            await loop.sock_connect(sock, address)
            connected = _perf_ns()
            context = encoded.ssl
            if context is None:
                _, conn = await loop.create_connection(lambda: factory(self), sock=sock)
                self.opened = ((connected - started) // 1000, -1, connected)
            else:
                # If the handshake fails, the TCP connect still happened and is reported as such.
                self.opened = ((connected - started) // 1000, -1, connected)
                self._handshake_from = connected  # a timeout from here on is the handshake's
                layer = TlsLayer(loop, context, encoded.server_name, self._engine._raw_view)
                await loop.create_connection(lambda: layer, sock=sock)
                try:
                    await layer.handshake
                except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
                    self._handshake_from = 0
                    layer.abort()
                    raise TransportError("tls", tls_failure(exc)) from None
                except BaseException:  # cancelled: the connect deadline passed mid-handshake
                    layer.abort()
                    raise
                self._handshake_from = 0
                conn = factory(self)
                layer.attach(conn)
                ready = _perf_ns()
                self.opened = ((connected - started) // 1000, (ready - connected) // 1000, ready)
        except BaseException:
            sock.close()
            raise
        conn.tls = encoded.tls
        return conn



#: Size of the engine's one read buffer (see _Connection.get_buffer).
_READ_BUFFER_BYTES = 256 * 1024


class FastEngine:
    """HTTP/1.1 keep-alive engine for http:// and https:// targets; one connection per virtual user."""

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
        secure = parts.scheme.lower() == "https"
        default_port = 443 if secure else 80
        try:
            port = parts.port or default_port
        except ValueError:
            raise FastEngineUnsupported(f"the target URL has an invalid port: {base_url!r}") from None
        self.host = host
        self.port = port
        self.base_url = base
        # Everything after scheme://host:port is a prefix of every request path,
        # exactly as the aiohttp engine joins base_url + path.
        path_prefix = base[len(parts.scheme) + 3 + len(parts.netloc):]
        shown_host = f"[{host}]" if ":" in host else host if host.isascii() else host.encode("idna").decode("ascii")
        host_header = (shown_host if port == default_port else f"{shown_host}:{port}").encode("ascii")
        for position, request in enumerate(plan.flow):
            if request.index != position:  # channels look requests up by index
                raise ValueError("plan.flow indexes must be 0..n-1 in order")
        self._encoded = tuple(Encoded(request, host_header, path_prefix) for request in plan.flow)
        self.secure = secure
        if secure:
            self._contexts = ClientContexts()
            same: dict = {}
            for encoded in self._encoded:
                # Equal settings become one object: a connection's reuse check is an identity test.
                encoded.tls = same.setdefault(encoded.tls, encoded.tls)
                encoded.ssl = self._contexts.get(encoded.tls)
                encoded.server_name = server_name(encoded.tls, host)
        else:
            for encoded in self._encoded:
                encoded.tls = None  # tls: settings mean nothing to an http target
        self._resolved = self._numeric_addresses(host, port)
        self._resolving: asyncio.Future | None = None
        self._connections: set[_Connection] = set()
        self._read_view = memoryview(bytearray(_READ_BUFFER_BYTES))
        # https: raw records land here before they are decrypted into _read_view
        self._raw_view = memoryview(bytearray(RAW_BUFFER_BYTES)) if secure else None
        self._transports: list[FastTransport] = []
        # The optional features cost per-response work only when the plan uses them.
        encoded = self._encoded
        self._silence_limits = any(e.read_timeout is not None for e in encoded)
        checked = self._silence_limits or any(e.limit or e.captures for e in encoded)
        checked = checked or any(e.cookies for e in encoded)
        if any(e.capture_headers for e in encoded):
            self._connection_class = _HeaderConnection
        else:
            self._connection_class = _CheckedConnection if checked else _Connection
        shortest = min([r.timeout_s for r in plan.flow]
                       + [r.read_timeout_s for r in plan.flow if r.read_timeout_s is not None] or [1.0])
        self._tick_s = min(max(shortest / 10.0, _WATCHDOG_MIN_S), _WATCHDOG_MAX_S)
        self._watchdog: asyncio.Task | None = None
        self._closed = False

    # -- Engine interface ---------------------------------------------------

    def transport(self, user) -> FastTransport:
        if self._closed:
            raise RuntimeError("the engine is closed")
        loop = asyncio.get_running_loop()
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = loop.create_task(self._watch(loop))
        transport = FastTransport(self, loop, user)
        self._transports.append(transport)
        return transport

    async def open_channel(self, worker: int = 0):
        """One request at a time, awaitable (tools and tests); see :func:`runner.engines.base.open_channel`."""
        return await open_channel(self, worker)

    async def aclose(self) -> None:
        self._closed = True
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            try:
                await watchdog
            except asyncio.CancelledError:
                pass
        for transport in self._transports:
            opening = transport._opening
            if opening is not None:
                opening.cancel()
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
