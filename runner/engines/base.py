"""The one narrow interface between the executor and an HTTP engine.

An engine is built from a :class:`~runner.plan.Plan` and hands out one
:class:`Channel` per worker. A channel sends one request at a time and returns
``(status, body_bytes)``; a request that gets no HTTP response raises
:class:`TransportError` carrying a stable error class. That is all the
executor, the metrics and the reporters ever know about HTTP, so engines can
be swapped without touching them.
"""

from __future__ import annotations

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
    """Builds channels for one run of one plan."""

    name: str

    async def open_channel(self, worker: int) -> Channel:
        ...

    async def aclose(self) -> None:
        ...


class EngineFactory(Protocol):
    name: str

    def __call__(self, plan: Plan, base_url: str) -> Engine:
        ...
