"""The aiohttp engine: the full-featured HTTP client behind the Engine interface.

One ``ClientSession`` with one ``TCPConnector`` sized to the largest stage's
concurrency is shared by all workers, so connections are reused and the number
of open sockets never exceeds the concurrency. Redirects are not followed (a
load test measures the response it got), and bodies are counted as they stream
in, never kept.
"""

from __future__ import annotations

import asyncio
import errno
import ssl

import aiohttp

from ..plan import Plan, RequestPlan
from .base import TransportError

_READ_CHUNK = 1 << 16
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.EADDRINUSE, errno.ENOBUFS}


def classify(exc: BaseException) -> str:
    """Map an aiohttp / OS exception to one of ``ERROR_CLASSES``."""
    dns_error = getattr(aiohttp, "ClientConnectorDNSError", None)
    if dns_error is not None and isinstance(exc, dns_error):
        return "dns"
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
        return "tls"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect_timeout"
    if isinstance(exc, (aiohttp.SocketTimeoutError, asyncio.TimeoutError)):
        return "read_timeout"
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
        if code in _RESOURCE_ERRNOS:
            return "client_resource"
        if code is not None and "Name or service" in str(os_error):
            return "dns"
        return "connect_refused" if code in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "other"
    if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return "reset"
    if code in _RESOURCE_ERRNOS:
        return "client_resource"
    if isinstance(exc, aiohttp.ClientConnectionError):
        return "closed_early"
    return "other"


class _AiohttpChannel:
    __slots__ = ("_engine",)

    def __init__(self, engine: "AiohttpEngine"):
        self._engine = engine

    async def send(self, request: RequestPlan, seq: int, worker: int) -> tuple[int, int]:
        engine = self._engine
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
            raise TransportError(classify(exc), str(exc)) from None

    async def aclose(self) -> None:
        return None


class AiohttpEngine:
    """Engine on one shared aiohttp session; channels are thin views of it."""

    name = "aiohttp"

    def __init__(self, plan: Plan, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.headers = [dict(r.headers) for r in plan.flow]
        self.timeouts = [aiohttp.ClientTimeout(total=r.timeout_s) for r in plan.flow]
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
