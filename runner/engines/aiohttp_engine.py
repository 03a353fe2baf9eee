"""The aiohttp engine: the full-featured HTTP client behind the Engine interface.

One ``ClientSession`` with one ``TCPConnector`` sized to the largest stage's
concurrency is shared by all workers, so connections are reused and the number
of open sockets never exceeds the concurrency. Redirects are not followed (a
load test measures the response it got), and bodies are counted as they stream
in, never kept (beyond a request's ``capture_body`` prefix).

Timeouts map onto ``aiohttp.ClientTimeout``: ``timeout_s`` is ``total``,
``connect_timeout_s`` is ``connect`` (DNS, pool wait, TCP connect and TLS
handshake; striking during the handshake it is a ``tls`` failure),
``read_timeout_s`` is ``sock_read`` (longest silence between reads).
Timeouts are not rounded up to whole seconds (``ceil_threshold``), so they
fire when the fast engine's do.

https requests take their ``ssl.SSLContext`` from one
:class:`~runner.tls.ClientContexts` per engine. aiohttp's pool keys
connections on the context object and ``server_hostname``, so a connection
made with one ``tls:`` setting never serves a request with another.
``keepalive: false`` requests send ``Connection: close``, are given a pool key
of their own (``ssl=False`` for http, a second context object for https) so
they never pick up a kept-alive connection, and their connections are closed
after the response whatever the server answers.

Timing phases cost one clock read per request (the response head's arrival,
taken when aiohttp hands over the response, before the body is read) and no
``TraceConfig`` (whose signals are coroutines awaited on every request).
Opening a connection is observed where it happens, in a connector subclass:
aiohttp connects the socket first (happy eyeballs, through our
``socket_factory``, which notes the start) and only then hands it to the
loop's ``create_connection``, which builds the protocol (TCP is up: the
handshake starts) and calls its ``connection_made`` when TLS is up. Each
driver task carries its transport in a context variable, so these hooks know
which request they work for without any per-request bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import socket
import ssl
import time
from urllib.parse import urlsplit

import aiohttp
from aiohttp.client_proto import ResponseHandler

from ..plan import Plan, RequestPlan
from ..tls import ClientContexts, server_name, tls_failure
from .base import TransportError, connect_errno_class, describe, lost_errno_class, open_channel

_READ_CHUNK = 1 << 16
_perf_ns = time.perf_counter_ns
#: An ssl error that only says the stream ended: after the handshake that is a close, not a TLS fault.
_SSL_ENDED = (ssl.SSLEOFError, ssl.SSLZeroReturnError)
#: The transport whose request the current task is sending (each driver task sets its own).
_DRIVER: contextvars.ContextVar["AiohttpTransport | None"] = contextvars.ContextVar("runner_aiohttp_driver",
                                                                                   default=None)
#: The code of the connector method(s) a request is in while it waits for a connection.
_CONNECT_CODES = frozenset(
    code for code in (getattr(getattr(cls, "connect", None), "__code__", None)
                      for cls in (aiohttp.BaseConnector, aiohttp.TCPConnector))
    if code is not None
)


def _ssl_error(exc: BaseException | None) -> BaseException | None:
    """The ``ssl`` module's error behind an aiohttp exception, or None.

    aiohttp wraps it: a connector error keeps it as ``certificate_error`` or
    ``os_error``, a connection lost mid-response as the ``__cause__`` of a
    ClientOSError (a TLS alert the server sent after the client's side of the
    handshake ended, as TLS 1.3 servers do when they reject a client certificate).
    """
    for _ in range(6):
        # aiohttp's certificate error is itself an ssl.CertificateError: unwrap before testing
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            exc = exc.certificate_error
        elif isinstance(exc, aiohttp.ClientConnectorError):
            exc = exc.os_error
        elif exc is None or isinstance(exc, ssl.SSLError):
            return exc
        else:
            exc = exc.__cause__
    return None


def _tls_detail(exc: BaseException) -> str:
    """The sample text of a TLS failure: :func:`runner.tls.tls_failure` of what really failed."""
    cause = _ssl_error(exc)
    if cause is not None:
        return tls_failure(cause)
    if isinstance(exc, asyncio.TimeoutError):
        # aiohttp's text names the URL; the fast engine's words, so both engines group alike
        return tls_failure(TimeoutError("the TLS handshake timed out"))
    if isinstance(exc, aiohttp.ClientConnectorError):
        return tls_failure(exc.os_error)
    return tls_failure(exc)


def classify(exc: BaseException) -> str:
    """Map an aiohttp / OS exception to one of ``ERROR_CLASSES``.

    A failure during a TLS handshake that is not an ssl error (the server
    closing or resetting, a timeout) is found by the transport, which knows
    the handshake was under way (see :meth:`AiohttpEngine.exchange`).
    """
    dns_error = getattr(aiohttp, "ClientConnectorDNSError", None)
    if dns_error is not None and isinstance(exc, dns_error):
        return "dns"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "tls"
    cause = _ssl_error(exc)
    if cause is not None and not isinstance(cause, _SSL_ENDED):
        return "tls"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect_timeout"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "read_timeout"
    if isinstance(exc, asyncio.TimeoutError):
        # The total timeout: connect_timeout if it struck while connecting, like the fast engine.
        return "connect_timeout" if _while_connecting(exc) else "read_timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed_early"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "closed_early" if "not complete" in str(exc).lower() else "protocol_error"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "protocol_error"
    os_error = getattr(exc, "os_error", None) if isinstance(exc, aiohttp.ClientConnectorError) else exc
    code = getattr(os_error, "errno", None)
    if isinstance(exc, aiohttp.ClientConnectorError):
        known = connect_errno_class(code)
        if known is not None:
            return known
        if code is not None and "Name or service" in str(os_error):
            return "dns"
        return "other"
    known = lost_errno_class(code)
    if known is not None:
        return known
    if isinstance(exc, aiohttp.ClientConnectionError):
        return "closed_early"
    return "other"


def _detail(exc: BaseException, error_class: str = "") -> str:
    """The failure's detail for error samples, without the request URL.

    aiohttp writes the whole URL into a ClientResponseError's text: with a
    ``{seq}`` path every message would differ (filling the few sample slots
    with copies of one problem), and a URL may hold a secret in encoded form.
    TLS failures get the stable reason both engines give.
    """
    if error_class == "tls":
        return _tls_detail(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: {exc.status}, {exc.message}"
    return describe(exc)


def _timeout(request: RequestPlan) -> aiohttp.ClientTimeout:
    total = request.timeout_s
    return aiohttp.ClientTimeout(total=total, connect=min(request.connect_timeout_s, total),
                                 sock_read=request.read_timeout_s, ceil_threshold=math.inf)


def _captured_headers(raw_headers) -> dict[str, str]:
    """Response headers as the fast engine captures them: lower-case names, repeats joined with ", "."""
    headers: dict[str, str] = {}
    for name, value in raw_headers:
        key = name.decode("utf-8", "replace").lower()
        text = value.decode("utf-8", "replace").strip()
        previous = headers.get(key)
        headers[key] = text if previous is None else previous + ("\n" if key == "set-cookie" else ", ") + text
    return headers


def _while_connecting(exc: BaseException) -> bool:
    """Did the total timeout interrupt the request while it was getting a connection?

    aiohttp raises the same TimeoutError whenever its total timeout strikes;
    the cancellation it converted still carries the frames it went through,
    and one of them is the connector's ``connect`` if the request had no
    connection yet. Only failed requests pay for this look.
    """
    seen = 0
    while exc is not None and seen < 8:
        traceback = exc.__traceback__
        while traceback is not None:
            if traceback.tb_frame.f_code in _CONNECT_CODES:
                return True
            traceback = traceback.tb_next
        exc = exc.__context__
        seen += 1
    return False


class AiohttpTransport:
    """One virtual user's driver: a task that sends each request the user asks for.

    aiohttp is coroutine-based, so a user gets one long-lived task (not one
    per request) that waits for the next ``send`` and reports the outcome to
    the user, exactly as the fast engine's callbacks do. The task names this
    transport in :data:`_DRIVER`, where the connector's hooks find it.
    """

    __slots__ = ("_engine", "_user", "_next", "_wake", "_task", "first_byte_ns", "opened",
                 "_socket_ns", "_tcp_ns", "_ready_ns")

    def __init__(self, engine: "AiohttpEngine", user):
        self._engine = engine
        self._user = user
        self._next: RequestPlan | None = None
        self._wake: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self.first_byte_ns = 0  # when the head of the response in hand arrived; 0: no response
        self.opened: tuple[int, int, int] | None = None  # (connect_us, tls_us or -1, ready_ns), see base.Transport
        # Stamps of the connection this request is opening (perf_counter_ns, 0: not reached):
        self._socket_ns = 0  # the socket was made and its connect began
        self._tcp_ns = 0  # TCP was up (the loop built the protocol); the TLS handshake began
        self._ready_ns = 0  # the protocol was told the connection is ready (TLS is up)

    def send(self, request: RequestPlan, user) -> None:
        self._user = user
        self._next = request
        task = self._task
        if task is None or task.done():
            self._task = asyncio.get_running_loop().create_task(self._drive())
            return
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def prepare(self, timeout_s: float) -> None:
        """Nothing to do ahead of time: aiohttp's pool connects on demand."""

    def abort(self) -> None:
        self._next = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    def close(self) -> None:
        self.abort()

    def _connection_opened(self, started_ns: int, secure: bool) -> None:
        """Note the connection this request just opened (the connector calls it)."""
        tcp = self._tcp_ns
        start = self._socket_ns or started_ns
        if not tcp:  # the protocol hook is missing (another aiohttp): only the total is known
            ready = _perf_ns()
            self.opened = ((ready - start) // 1000, 0 if secure else -1, ready)
            return
        self._tcp_ns = 0  # the handshake is over: a later failure is not a TLS one
        if secure:
            ready = self._ready_ns or _perf_ns()
            self.opened = ((tcp - start) // 1000, (ready - tcp) // 1000, ready)
        else:
            self.opened = ((tcp - start) // 1000, -1, tcp)

    def _connection_failed(self, started_ns: int) -> None:
        """Opening failed: if TCP was up, the connect still happened (the fast engine reports it too)."""
        tcp = self._tcp_ns
        if tcp:
            self.opened = ((tcp - (self._socket_ns or started_ns)) // 1000, -1, tcp)

    async def _drive(self) -> None:
        _DRIVER.set(self)
        loop = asyncio.get_running_loop()
        exchange = self._engine.exchange
        while True:
            request = self._next
            if request is None:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
                continue
            self._next = None
            user = self._user
            self.first_byte_ns = self._tcp_ns = 0
            self.opened = None  # an aborted request may have left one nobody took
            try:
                status, received, headers, body = await exchange(request, user, self)
            except TransportError as exc:
                outcome = (user.on_failure, exc.error_class, str(exc))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                error_class = classify(exc)
                outcome = (user.on_failure, error_class, _detail(exc, error_class))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an engine bug must not stop the user: count it
                outcome = (user.on_failure, "other", describe(exc))
            else:
                outcome = (user.on_response, status, received, headers, body)
            try:
                outcome[0](*outcome[1:])
            except Exception as exc:  # a bug in the user must not end this driver
                user.crashed(exc)


class _TimedHandler(ResponseHandler):
    """aiohttp's response protocol, telling the request that opens it when TCP and then TLS were up.

    The loop builds the protocol once the socket is connected (aiohttp
    connects it before calling ``create_connection``) and calls
    ``connection_made`` when the TLS handshake has ended (at once for http).
    """

    __slots__ = ("_driver",)

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(loop)
        driver = self._driver = _DRIVER.get()
        if driver is not None:
            driver._tcp_ns = _perf_ns()

    def connection_made(self, transport) -> None:
        driver = self._driver
        if driver is not None:
            self._driver = None  # only the opening request is timed
            driver._ready_ns = _perf_ns()
        super().connection_made(transport)


def _timed_socket(addr_info) -> socket.socket:
    """aiohttp's socket factory: a plain socket, noting when the request's TCP connect began."""
    driver = _DRIVER.get()
    if driver is not None and not driver._socket_ns:  # happy eyeballs: the first attempt's start
        driver._socket_ns = _perf_ns()
    family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
    return socket.socket(family=family, type=kind, proto=proto)


class _Connector(aiohttp.TCPConnector):
    """The pool, watching the connections it opens (never the ones it reuses: nothing per request)."""

    def __init__(self, **options):
        try:
            super().__init__(socket_factory=_timed_socket, **options)
        except TypeError:  # aiohttp before 3.12 takes no socket factory: the connect is timed from DNS on
            super().__init__(**options)
        # The protocol factory is aiohttp's own attribute; without it only the total time is known.
        if isinstance(getattr(self, "_factory", None), functools.partial):
            self._factory = functools.partial(_TimedHandler, loop=self._loop)

    async def _create_connection(self, req, *args, **kwargs):
        driver = _DRIVER.get()
        if driver is None:  # not from a driver task (nothing to report to)
            return await super()._create_connection(req, *args, **kwargs)
        driver._socket_ns = driver._tcp_ns = driver._ready_ns = 0
        started = _perf_ns()
        try:
            protocol = await super()._create_connection(req, *args, **kwargs)
        except BaseException:
            driver._connection_failed(started)
            raise
        driver._connection_opened(started, req.is_ssl())
        if req.headers.get("Connection", "").lower() == "close":
            protocol.force_close()  # closed when released, even if the server would keep it open
        return protocol


class AiohttpEngine:
    """Engine on one shared aiohttp session; each user's transport is a thin driver over it."""

    name = "aiohttp"

    def __init__(self, plan: Plan, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.flow = plan.flow
        self.headers = [_request_headers(r) for r in plan.flow]
        self.timeouts = [_timeout(r) for r in plan.flow]
        parts = urlsplit(self.base_url)
        self.secure = parts.scheme.lower() == "https"
        # Per request: the ``ssl`` and ``server_hostname`` arguments (together they key aiohttp's pool).
        self.ssl: list = []
        self.server_hostname: list[str | None] = []
        if self.secure:
            self.contexts = ClientContexts()
            self.fresh_contexts = ClientContexts()  # keepalive: false: other objects, so another pool key
            host = parts.hostname or ""
            for request in plan.flow:
                contexts = self.contexts if request.keepalive else self.fresh_contexts
                self.ssl.append(contexts.get(request.tls))
                named = request.tls is not None and request.tls.server_name
                self.server_hostname.append(server_name(request.tls, host) if named else None)
        else:
            # tls: settings mean nothing to http; ssl=False is only a pool key there (keepalive: false)
            self.ssl = [True if request.keepalive else False for request in plan.flow]
            self.server_hostname = [None] * len(plan.flow)
        connector = _Connector(
            limit=plan.max_concurrency, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=False,
        )
        # The users' own jars decide which cookies are sent (the same as on the fast engine).
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            # only the headers the fast engine sends too: no Accept, no Accept-Encoding (bodies are never
            # decompressed, so captures and checks must not get compressed ones), no guessed Content-Type
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            headers={"User-Agent": "runner"},
        )

    def transport(self, user) -> AiohttpTransport:
        return AiohttpTransport(self, user)

    async def open_channel(self, worker: int = 0):
        """One request at a time, awaitable (tools and tests); see :func:`runner.engines.base.open_channel`."""
        return await open_channel(self, worker)

    async def exchange(self, request: RequestPlan, user,
                       driver: AiohttpTransport | None = None) -> tuple[int, int, dict | None, bytes | None]:
        """Send ``request`` rendered for ``user``; (status, body bytes, captured headers, captured body).

        ``driver`` (the transport sending it) gets the response head's arrival
        time, and tells whether a failure struck during a TLS handshake.
        """
        index = request.index
        request = self.flow[index]  # the engine's plan is the authority (it may add headers)
        url = self.base_url + request.target.render(user)
        headers = self.headers[index]
        if request.header_templates or request.send_cookies:
            headers = dict(headers)
            for name, template in request.header_templates:
                headers[name] = template.render(user).replace("\r", " ").replace("\n", " ")
            cookie = user.cookie_header if request.send_cookies else None
            if cookie:
                headers["Cookie"] = cookie
        body = request.body
        if request.body_template is not None:
            body = request.body_template.render(user)
            if type(body) is str:
                body = body.encode("utf-8")
        limit = request.max_response_bytes
        keep = request.capture_body
        prefix = bytearray()
        try:
            async with self.session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False,
                timeout=self.timeouts[index], ssl=self.ssl[index], server_hostname=self.server_hostname[index],
            ) as response:
                if driver is not None:
                    driver.first_byte_ns = _perf_ns()
                length = response.content_length
                if not keep and not limit and length is not None and length <= _READ_CHUNK:
                    # small bodies in one call: measurably cheaper than the chunk loop
                    received = len(await response.read())
                else:
                    received = 0
                    content = response.content
                    while True:
                        chunk = await content.read(_READ_CHUNK)
                        if not chunk:
                            break
                        received += len(chunk)
                        if len(prefix) < keep:
                            prefix += chunk[:keep - len(prefix)]
                        if limit > 0 and received > limit:
                            response.close()  # drop the connection: the rest of the body is never read
                            raise TransportError("body_too_large", f"the response body exceeded {limit} bytes")
                if request.capture_headers or keep > 0 or request.send_cookies:
                    if request.capture_headers:
                        captured = _captured_headers(response.raw_headers)
                    else:  # the jar needs only Set-Cookie
                        lines = response.headers.getall("Set-Cookie", ())
                        captured = {"set-cookie": "\n".join(lines)} if lines else {}
                    return response.status, received, captured, bytes(prefix)
                return response.status, received, None, None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            if driver is not None and driver._tcp_ns and self.secure:
                # TCP was up and TLS never was: whatever ended it (a reset, a close, the
                # connect timeout) ended a handshake.
                driver._tcp_ns = 0
                raise TransportError("tls", _tls_detail(exc)) from None
            error_class = classify(exc)
            raise TransportError(error_class, _detail(exc, error_class)) from None

    async def aclose(self) -> None:
        await self.session.close()


def _request_headers(request: RequestPlan) -> dict[str, str]:
    """A request's constant headers; ``keepalive: false`` adds ``Connection: close`` unless it has one."""
    headers = dict(request.headers)
    if not request.keepalive and not any(name.lower() == "connection" for name in headers):
        headers["Connection"] = "close"
    return headers
