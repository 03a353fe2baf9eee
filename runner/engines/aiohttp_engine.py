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
import math
import ssl

import aiohttp

from ..plan import Plan, RequestPlan
from .base import TransportError, connect_errno_class, describe, lost_errno_class, open_channel

_READ_CHUNK = 1 << 16
#: The code of the connector method(s) a request is in while it waits for a connection.
_CONNECT_CODES = frozenset(
    code for code in (getattr(getattr(cls, "connect", None), "__code__", None)
                      for cls in (aiohttp.BaseConnector, aiohttp.TCPConnector))
    if code is not None
)


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
    the user, exactly as the fast engine's callbacks do.
    """

    __slots__ = ("_engine", "_user", "_next", "_wake", "_task")

    def __init__(self, engine: "AiohttpEngine", user):
        self._engine = engine
        self._user = user
        self._next: RequestPlan | None = None
        self._wake: asyncio.Future | None = None
        self._task: asyncio.Task | None = None

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

    async def _drive(self) -> None:
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
            try:
                status, received, headers, body = await exchange(request, user)
            except TransportError as exc:
                outcome = (user.on_failure, exc.error_class, str(exc))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                outcome = (user.on_failure, classify(exc), _detail(exc))
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


class AiohttpEngine:
    """Engine on one shared aiohttp session; each user's transport is a thin driver over it."""

    name = "aiohttp"

    def __init__(self, plan: Plan, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.flow = plan.flow
        self.headers = [dict(r.headers) for r in plan.flow]
        self.timeouts = [_timeout(r) for r in plan.flow]
        connector = aiohttp.TCPConnector(
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

    async def exchange(self, request: RequestPlan, user) -> tuple[int, int, dict | None, bytes | None]:
        """Send ``request`` rendered for ``user``; (status, body bytes, captured headers, captured body)."""
        request = self.flow[request.index]  # the engine's plan is the authority (it may add headers)
        url = self.base_url + request.target.render(user)
        headers = self.headers[request.index]
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
                request.method, url, headers=headers, data=body,
                allow_redirects=False, timeout=self.timeouts[request.index],
            ) as response:
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
            raise TransportError(classify(exc), _detail(exc)) from None

    async def aclose(self) -> None:
        await self.session.close()
