"""Faults the built-in target commits on request, so clients can be tested against them.

A request whose path starts with ``/fault/<kind>`` (anything after the kind,
such as ``/fault/reset/17``, is ignored) gets a broken answer instead of the
normal one. Query parameters tune some kinds:

==================  ==========================================================
kind                what the server does
==================  ==========================================================
reset               reads the request, then resets the connection (RST:
                    SO_LINGER 0 and close)
hang                reads the request and never answers; the connection stays
                    open until the client goes away or the server stops
slow-headers        sends the status line, then the rest of the head one byte
                    per ``?interval=`` seconds (default 0.2), then a 2-byte body
slow-body           sends a complete head (``Content-Length: ?size=``, default
                    32), then ``?step=`` body bytes (default 1) per ``?interval=``
malformed-status    a garbage status line, then closes
malformed-headers   a valid status line, then a header line without a colon,
                    then closes
short-body          announces ``Content-Length: ?size=`` (default 1024), sends
                    half of it, then closes
bad-chunked         ``Transfer-Encoding: chunked`` with an invalid chunk-size
                    line, then closes
huge                a body of ``?size=`` bytes (default 64 MiB), streamed from
                    one reused block under flow control, then closes
status-burst        an ordinary response whose status is ``?status=`` (default
                    503) for the first ``?n=`` (default 5) requests of every
                    ``?window=`` (default 10) status-burst requests, else 200;
                    or, with ``?p=``, 503 with that probability from a RNG
                    seeded with the server's seed
close               an ordinary 200 response, then the server closes the
                    connection without having sent ``Connection: close``
==================  ==========================================================

The kinds up to ``huge`` take the connection over once their turn comes:
nothing after them on that connection is answered, and the connection ends
as described. Every fault request counts once in ``/__runner/stats`` when the
server acts on it; ``/__runner/reset`` also restarts the status-burst
counter and RNGs.

A target can also commit faults on ordinary paths: ``TargetConfig.faults``
maps kinds to probabilities, drawn per request from a RNG seeded with the
server's seed (``status-burst`` then always means a 503).
"""

from __future__ import annotations

import math
import socket
import struct
from random import Random
from urllib.parse import parse_qsl

from .responses import (
    CONNECTION_CLOSE,
    END_OF_HEADERS,
    HTML_TYPE,
    TEXT_TYPE,
    BadRequest,
    filler,
    parse_number,
    status_line,
)

__all__ = ["FAULT_KINDS", "FAULT_PREFIX", "TAKEOVER_KINDS", "Fault", "FaultState", "parse_fault", "start_takeover"]

FAULT_PREFIX = b"/fault/"

#: Kinds that take the connection over (everything but status-burst and close).
TAKEOVER_KINDS = frozenset({
    "reset", "hang", "slow-headers", "slow-body", "malformed-status", "malformed-headers",
    "short-body", "bad-chunked", "huge",
})
FAULT_KINDS = tuple(sorted(TAKEOVER_KINDS | {"status-burst", "close"}))

DEFAULT_INTERVAL_S = 0.2
DEFAULT_HUGE_SIZE = 64 * 1024 * 1024
#: Upper bound of ``huge``'s ``?size=`` (streamed, so it costs time, not memory).
MAX_HUGE_SIZE = 1 << 40
#: Upper bound of the trickled sizes: at one byte per tick anything longer never ends in practice.
MAX_TRICKLE_SIZE = 1024 * 1024
#: One block of filler reused for every write of a huge body.
_BLOCK = memoryview(filler(256 * 1024))
#: Blocks written per event-loop turn before yielding to other connections.
_BLOCKS_PER_TURN = 64

_MALFORMED_STATUS = b"HTTP/1.1 abc Garbage\r\nContent-Length: 2\r\n\r\nok"
_BAD_CHUNK = b"zz\r\nhello\r\n0\r\n\r\n"
_LINGER_ZERO = struct.pack("ii", 1, 0)


class Fault:
    """One parsed fault request; only the fields its kind uses matter."""

    __slots__ = ("kind", "interval", "size", "step", "n", "window", "p", "status")

    def __init__(self, kind: str, *, interval: float = DEFAULT_INTERVAL_S, size: int | None = None,
                 step: int = 1, n: int = 5, window: int = 10, p: float | None = None, status: int = 503):
        self.kind = kind
        self.interval = interval
        self.size = size
        self.step = step
        self.n = n
        self.window = window
        self.p = p
        self.status = status

    @property
    def takes_over(self) -> bool:
        return self.kind in TAKEOVER_KINDS


def parse_fault(path: bytes, query: bytes) -> Fault:
    """Parse ``/fault/<kind>[/...]`` and its query; raise BadRequest for what makes no sense."""
    kind = path[len(FAULT_PREFIX):].split(b"/", 1)[0].decode("latin-1")
    if kind not in FAULT_KINDS:
        raise BadRequest(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
    fault = Fault(kind)
    if not query:
        return fault
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == "interval":
            fault.interval = _bounded(key, value, float, 0.001, 60.0)
        elif key == "size":
            fault.size = _bounded(key, value, int, 0, MAX_HUGE_SIZE if kind == "huge" else MAX_TRICKLE_SIZE)
        elif key == "step":
            fault.step = _bounded(key, value, int, 1, MAX_TRICKLE_SIZE)
        elif key == "n":
            fault.n = _bounded(key, value, int, 0, 1 << 31)
        elif key == "window":
            fault.window = _bounded(key, value, int, 1, 1 << 31)
        elif key == "p":
            fault.p = _bounded(key, value, float, 0.0, 1.0)
        elif key == "status":
            fault.status = _bounded(key, value, int, 200, 599)
    if fault.n > fault.window:
        raise BadRequest(f"n ({fault.n}) must not exceed window ({fault.window})")
    return fault


def _bounded(key: str, value: str, kind: type, low: float, high: float):
    number = parse_number(key, value, kind)
    if not (math.isfinite(number) and low <= number <= high):
        raise BadRequest(f"{key} must be within {low}..{high}, got {value!r}")
    return number


class FaultState:
    """What the faults of one server share: the status-burst counter and the seeded RNGs."""

    __slots__ = ("seed", "mix", "burst_seen", "burst_rng", "mix_rng")

    def __init__(self, seed: int, mix: tuple[tuple[str, float], ...] = ()):
        self.seed = seed
        # Cumulative probabilities: one uniform draw per ordinary request picks a kind or none.
        cumulative, total = [], 0.0
        for kind, probability in mix:
            total += probability
            cumulative.append((total, kind))
        self.mix = tuple(cumulative)
        self.reset()

    def reset(self) -> None:
        self.burst_seen = 0
        self.burst_rng = Random(f"status-burst-{self.seed}")
        self.mix_rng = Random(f"faults-{self.seed}")

    def burst_status(self, fault: Fault) -> int:
        """The status of the next status-burst request."""
        if fault.p is not None:
            return fault.status if self.burst_rng.random() < fault.p else 200
        position = self.burst_seen % fault.window
        self.burst_seen += 1
        return fault.status if position < fault.n else 200

    def draw(self) -> Fault | None:
        """For an ordinary request of a target with a fault mix: the fault to commit, if any."""
        draw = self.mix_rng.random()
        for bound, kind in self.mix:
            if draw < bound:
                return Fault(kind, p=1.0) if kind == "status-burst" else Fault(kind)
        return None


# -- taking a connection over --------------------------------------------------------------


def start_takeover(fault: Fault, transport, loop, common_headers: bytes):
    """Commit ``fault`` on a connection that answers nothing else any more.

    Returns an object with ``resume()`` (called when the transport may be
    written again) and ``cancel()`` (called when the connection is lost)
    while the fault keeps writing, else None.
    """
    kind = fault.kind
    if kind == "reset":
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            except OSError:
                pass
        transport.abort()
        return None
    if kind == "hang":
        return None
    if kind == "malformed-status":
        transport.write(_MALFORMED_STATUS)
        transport.close()
        return None
    if kind == "malformed-headers":
        transport.write(status_line(200) + common_headers + b"Content-Length: 2\r\n"
                        b"this header line has no colon\r\n" + END_OF_HEADERS + b"ok")
        transport.close()
        return None
    if kind == "short-body":
        size = 1024 if fault.size is None else fault.size
        transport.write(_head(common_headers, TEXT_TYPE, b"Content-Length: %d\r\n" % size) + filler(size // 2))
        transport.close()
        return None
    if kind == "bad-chunked":
        transport.write(_head(common_headers, TEXT_TYPE, b"Transfer-Encoding: chunked\r\n") + _BAD_CHUNK)
        transport.close()
        return None
    if kind == "slow-headers":
        rest = common_headers + TEXT_TYPE + b"Content-Length: 2\r\n" + CONNECTION_CLOSE + END_OF_HEADERS + b"ok"
        return _Trickle(transport, loop, status_line(200), rest, 1, fault.interval)
    if kind == "slow-body":
        size = 32 if fault.size is None else fault.size
        head = _head(common_headers, TEXT_TYPE, b"Content-Length: %d\r\n" % size + CONNECTION_CLOSE)
        return _Trickle(transport, loop, head, filler(size), fault.step, fault.interval)
    if kind == "huge":
        size = DEFAULT_HUGE_SIZE if fault.size is None else fault.size
        head = _head(common_headers, HTML_TYPE, b"Content-Length: %d\r\n" % size + CONNECTION_CLOSE)
        return _Stream(transport, loop, head, size)
    raise AssertionError(f"{kind} does not take the connection over")


def _head(common_headers: bytes, content_type: bytes, extra: bytes) -> bytes:
    return status_line(200) + common_headers + content_type + extra + END_OF_HEADERS


class _Trickle:
    """Writes ``first`` now, then ``step`` bytes of ``rest`` every ``interval`` seconds, then closes."""

    __slots__ = ("transport", "loop", "rest", "position", "step", "interval", "timer")

    def __init__(self, transport, loop, first: bytes, rest: bytes, step: int, interval: float):
        self.transport = transport
        self.loop = loop
        self.rest = rest
        self.position = 0
        self.step = step
        self.interval = interval
        transport.write(first)
        self.timer = loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        self.timer = None
        transport = self.transport
        if transport.is_closing():
            return
        end = self.position + self.step
        transport.write(self.rest[self.position:end])
        self.position = end
        if end >= len(self.rest):
            transport.close()
        else:
            self.timer = self.loop.call_later(self.interval, self._tick)

    def resume(self) -> None:
        return None  # a few bytes per tick never fill the buffer

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Stream:
    """Writes ``size`` body bytes from one reused block, only while the transport wants more."""

    __slots__ = ("transport", "loop", "remaining", "high", "handle")

    def __init__(self, transport, loop, head: bytes, size: int):
        self.transport = transport
        self.loop = loop
        self.remaining = size
        self.high = transport.get_write_buffer_limits()[1]
        self.handle = None
        transport.write(head)
        self.resume()

    def resume(self) -> None:
        """Write until the transport's buffer is above its high-water mark (then resume_writing calls again)."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        transport = self.transport
        block = _BLOCK
        for _ in range(_BLOCKS_PER_TURN):
            if transport.is_closing():
                return
            remaining = self.remaining
            if remaining <= 0:
                transport.close()
                return
            if remaining >= len(block):
                transport.write(block)
                self.remaining = remaining - len(block)
            else:
                transport.write(block[:remaining])
                self.remaining = 0
            if transport.get_write_buffer_size() > self.high:
                return  # pause_writing was called: resume_writing brings us back
        # The peer reads as fast as we write: let other connections have a turn.
        self.handle = self.loop.call_soon(self.resume)

    def cancel(self) -> None:
        self.remaining = 0
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
