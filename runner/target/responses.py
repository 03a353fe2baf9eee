"""Bytes of the built-in target's responses, and the query options that shape them.

Everything here is pure: it builds byte strings (or lists of them for one
``writelines``) and parses query strings, so the connection logic in
:mod:`runner.target.server` and the faults in :mod:`runner.target.faults`
share one way of writing heads and bodies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl

__all__ = [
    "CHUNK_SIZE",
    "MAX_BODY_SIZE",
    "BadRequest",
    "ResponseOptions",
    "build_response",
    "make_html_body",
    "parse_options",
    "split_target",
    "status_line",
]

MAX_BODY_SIZE = 256 * 1024 * 1024
"""Largest body ``?size=`` may ask for; larger requests are clamped to it."""

CHUNK_SIZE = 16 * 1024
"""Largest chunk written with ``?chunked=1``."""

SERVER_HEADER = b"Server: runner-target\r\n"
HTML_TYPE = b"Content-Type: text/html; charset=utf-8\r\n"
TEXT_TYPE = b"Content-Type: text/plain; charset=utf-8\r\n"
JSON_TYPE = b"Content-Type: application/json\r\n"
CHUNKED_HEADER = b"Transfer-Encoding: chunked\r\n"
ZERO_DELAY_HEADER = b"delay: 0.000\r\n"
CONNECTION_CLOSE = b"Connection: close\r\n"
CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"
END_OF_HEADERS = b"\r\n"

_FULL_CHUNK_PREFIX = b"%x\r\n" % CHUNK_SIZE
_CHUNK_SEPARATOR = b"\r\n"
_LAST_CHUNK = b"0\r\n\r\n"

_BODYLESS_STATUSES = frozenset({204, 304})
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})

_HTML_PREFIX = (
    b'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
    b"<title>runner target</title></head><body><pre>\n"
)
_HTML_SUFFIX = b"\n</pre></body></html>\n"
FILLER_LINE = b"The quick brown fox jumps over the lazy dog. 0123456789\n"


def make_html_body(size: int) -> bytes:
    """Return an HTML document of exactly ``size`` bytes.

    Sizes too small for the HTML skeleton get plain filler text, so the byte
    count is always exact -- load tests compute throughput from it.
    """
    if size <= 0:
        return b""
    filler_size = size - len(_HTML_PREFIX) - len(_HTML_SUFFIX)
    if filler_size < 0:
        return filler(size)
    return b"".join((_HTML_PREFIX, filler(filler_size), _HTML_SUFFIX))


def filler(size: int) -> bytes:
    """``size`` bytes of repeated plain text."""
    whole_lines, remainder = divmod(size, len(FILLER_LINE))
    return FILLER_LINE * whole_lines + FILLER_LINE[:remainder]


_status_lines: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """Status lines are built once per code and reused."""
    line = _status_lines.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1"))
        _status_lines[status] = line
    return line


def delay_header(delay: float) -> bytes:
    if delay == 0:
        return ZERO_DELAY_HEADER
    return b"delay: %.3f\r\n" % delay


def split_target(url: bytes) -> tuple[bytes, bytes]:
    """Split a request target into (path, query), accepting absolute-form."""
    if not url.startswith(b"/") and b"://" in url:
        authority_and_path = url.split(b"://", 1)[1]
        slash = authority_and_path.find(b"/")
        url = authority_and_path[slash:] if slash >= 0 else b"/"
    path, _, query = url.partition(b"?")
    query = query.partition(b"#")[0]
    return path, query


class BadRequest(ValueError):
    """A well-formed request whose query asks for something impossible (answered 400)."""


@dataclass(slots=True)
class ResponseOptions:
    delay: float | None = None
    size: int | None = None
    chunked: bool = False
    status: int = 200


def parse_options(query: bytes) -> ResponseOptions:
    options = ResponseOptions()
    if not query:
        return options
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == "delay":
            options.delay = parse_number(key, value, float)
            if not math.isfinite(options.delay) or options.delay < 0:
                raise BadRequest(f"delay must be a finite number >= 0, got {value!r}")
        elif key == "size":
            size = parse_number(key, value, int)
            if size < 0:
                raise BadRequest(f"size must be >= 0, got {value!r}")
            options.size = min(size, MAX_BODY_SIZE)
        elif key == "chunked":
            word = value.strip().lower()
            if word in _TRUE_WORDS:
                options.chunked = True
            elif word in _FALSE_WORDS:
                options.chunked = False
            else:
                raise BadRequest(f"chunked must be 1 or 0, got {value!r}")
        elif key == "status":
            status = parse_number(key, value, int)
            # 1xx would leave the client waiting for a final response.
            if not 200 <= status <= 599:
                raise BadRequest(f"status must be within 200..599, got {value!r}")
            options.status = status
    return options


def parse_number(key: str, value: str, kind: type) -> int | float:
    try:
        return kind(value)
    except ValueError:
        raise BadRequest(f"{key} must be a number, got {value!r}") from None


def build_response(
    common_headers: bytes,
    status: int,
    body: bytes,
    content_type: bytes,
    *,
    head_only: bool,
    chunked: bool,
    delay_header: bytes,
    connection_header: bytes,
    extra_headers: bytes = b"",
) -> list:
    """Return the response as a list of byte strings for one ``writelines``.

    Small responses are joined into one element; a large body stays a
    separate element so it is never copied. ``extra_headers`` are complete
    header lines (each ending with CRLF) added before the end of the head.
    """
    if status in _BODYLESS_STATUSES:
        framing = b""
        body = b""
        chunked = False
    elif chunked:
        framing = CHUNKED_HEADER
    else:
        framing = b"Content-Length: %d\r\n" % len(body)
    head = b"".join(
        (
            status_line(status),
            common_headers,
            content_type,
            framing,
            delay_header,
            connection_header,
            extra_headers,
            END_OF_HEADERS,
        )
    )
    if head_only or not body and not chunked:
        return [head]
    if chunked:
        return _chunked_parts(head, body)
    if len(body) <= 64 * 1024:
        return [head + body]
    return [head, body]


def _chunked_parts(head: bytes, body: bytes) -> list:
    """Frame ``body`` as chunks of at most CHUNK_SIZE bytes, without copying it."""
    parts = [head]
    view = memoryview(body)
    size = len(body)
    for start in range(0, size, CHUNK_SIZE):
        length = min(CHUNK_SIZE, size - start)
        parts.append(_FULL_CHUNK_PREFIX if length == CHUNK_SIZE else b"%x\r\n" % length)
        parts.append(view[start : start + length])
        parts.append(_CHUNK_SEPARATOR)
    parts.append(_LAST_CHUNK)
    return parts
