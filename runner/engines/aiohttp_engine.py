"""The aiohttp engine: the full-featured HTTP client behind the Engine interface.

One ``ClientSession`` with one ``TCPConnector`` sized to the largest stage's
concurrency is shared by all workers, so connections are reused and the number
of open sockets never exceeds the concurrency. Redirects are not followed (a
load test measures the response it got), and bodies are counted as they stream
in, never kept (beyond a request's ``capture_body`` prefix).

Timeouts map onto ``aiohttp.ClientTimeout``: ``timeout_s`` is ``total``,
``connect_timeout_s`` is ``connect`` (DNS, pool wait and TCP connect),
``read_timeout_s`` is ``sock_read`` (longest silence between reads).
Timeouts are not rounded up to whole seconds (``ceil_threshold``), so they
fire when the fast engine's do.
"""

from __future__ import annotations

import asyncio
import errno
import math
import ssl

import aiohttp

from ..plan import Plan, RequestPlan
from .base import TransportError, describe

_READ_CHUNK = 1 << 16
#: The code of the connector method(s) a request is in while it waits for a connection.
_CONNECT_CODES = frozenset(
    code for code in (getattr(getattr(cls, "connect", None), "__code__", None)
                      for cls in (aiohttp.BaseConnector, aiohttp.TCPConnector))
    if code is not None
)
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.EADDRINUSE, errno.ENOBUFS}
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH}


def classify(exc: BaseException) -> str:
    """Map an aiohttp / OS exception to one of ``ERROR_CLASSES``."""
    dns_error = getattr(aiohttp, "ClientConnectorDNSError", None)
    if dns_error is not None and isinstance(exc, dns_error):
        return "dns"
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
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
        if code == errno.ECONNREFUSED:
            return "connect_refused"
        if code in _UNREACHABLE_ERRNOS:
            return "unreachable"
        if code in _RESOURCE_ERRNOS:
            return "client_resource"
        if code is not None and "Name or service" in str(os_error):
            return "dns"
        return "other"
    if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return "reset"
    if code in _UNREACHABLE_ERRNOS:
        return "unreachable"
    if code in _RESOURCE_ERRNOS:
        return "client_resource"
    if isinstance(exc, aiohttp.ClientConnectionError):
        return "closed_early"
    return "other"


def _detail(exc: BaseException) -> str:
    """The failure's detail for error samples, without the request URL.

    aiohttp writes the whole URL into a ClientResponseError's text: with a
    ``{seq}`` path every message would differ (filling the few sample slots
    with copies of one problem), and a URL may hold a secret in encoded form.
    """
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
        headers[key] = text if previous is None else previous + ", " + text
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


class _AiohttpChannel:
    __slots__ = ("_engine", "captured")

    def __init__(self, engine: "AiohttpEngine"):
        self._engine = engine
        self.captured = None

    async def send(self, request: RequestPlan, seq: int, worker: int) -> tuple[int, int]:
        engine = self._engine
        if engine.checked[request.index]:
            return await self._send_checked(request, seq, worker)
        url = engine.base_url + request.render_path(seq, worker)
        try:
            async with engine.session.request(
                request.method, url, headers=engine.headers[request.index], data=request.body,
                allow_redirects=False, timeout=engine.timeouts[request.index],
            ) as response:
                length = response.content_length
                if length is not None and length <= _READ_CHUNK:
                    # small bodies in one call: measurably cheaper than the chunk loop
                    return response.status, len(await response.read())
                received = 0
                content = response.content
                while True:
                    chunk = await content.read(_READ_CHUNK)
                    if not chunk:
                        break
                    received += len(chunk)
                return response.status, received
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise TransportError(classify(exc), _detail(exc)) from None

    async def _send_checked(self, request: RequestPlan, seq: int, worker: int) -> tuple[int, int]:
        """``send`` for requests with a response size cap or captures (and every request of a plan with captures)."""
        self.captured = None
        engine = self._engine
        url = engine.base_url + request.render_path(seq, worker)
        limit = request.max_response_bytes
        keep = request.capture_body
        prefix = bytearray()
        try:
            async with engine.session.request(
                request.method, url, headers=engine.headers[request.index], data=request.body,
                allow_redirects=False, timeout=engine.timeouts[request.index],
            ) as response:
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
                if request.capture_headers or keep > 0:
                    headers = _captured_headers(response.raw_headers) if request.capture_headers else {}
                    self.captured = (headers, bytes(prefix))
                return response.status, received
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise TransportError(classify(exc), _detail(exc)) from None

    async def aclose(self) -> None:
        return None


class AiohttpEngine:
    """Engine on one shared aiohttp session; channels are thin views of it."""

    name = "aiohttp"

    def __init__(self, plan: Plan, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.headers = [dict(r.headers) for r in plan.flow]
        self.timeouts = [_timeout(r) for r in plan.flow]
        # Requests that need the slower send: a size cap, or any capture in the plan
        # (so that ``captured`` is reset by every send of such a plan).
        captures = any(r.capture_headers or r.capture_body > 0 for r in plan.flow)
        self.checked = [captures or r.max_response_bytes > 0 for r in plan.flow]
        connector = aiohttp.TCPConnector(
            limit=plan.max_concurrency, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=False,
        )
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",), headers={"User-Agent": "runner"},
        )

    async def open_channel(self, worker: int) -> _AiohttpChannel:
        return _AiohttpChannel(self)

    async def aclose(self) -> None:
        await self.session.close()
