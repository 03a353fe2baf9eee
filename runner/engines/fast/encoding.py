"""The fast engine's request encoding: everything that does not vary, as bytes, once.

A static request is one prepared ``bytes``. Otherwise the request line's
method, the constant headers and a constant body are encoded when the engine
is built, and per request only the parts that vary are rendered for the
virtual user (path and query, templated headers and body, its cookies) and
joined around them.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ...errors import UsageError
from ...plan import RequestPlan
from ...templates import DIGIT_FIELDS

#: Bodies up to this size are glued to the request head (one write); larger ones are written separately.
_INLINE_BODY_MAX = 64 * 1024
#: Characters a rendered path may contain to be sent as is (RFC 3986 pchar, '/', '?', '%').
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*\Z")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# A request of any other method without a body says so with "Content-Length: 0", as the aiohttp
# engine does (RFC 9110 8.6 asks it of POST, PUT and PATCH; some servers answer 411 without it).
_NO_CONTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class FastEngineUnsupported(UsageError, ValueError):
    """The plan or target uses something the fast engine does not implement."""


def _quote_path(path: str) -> bytes:
    """Percent-encode what may not appear raw in a request target (like yarl does)."""
    path = path.partition("#")[0]
    path = _BAD_PERCENT.sub("%25", path)
    return quote(path, safe="!$&'()*+,;=:@/?%~").encode("ascii")


def _check_header(name: str, value: str) -> None:
    for text in (name, value):
        if "\r" in text or "\n" in text or "\0" in text:
            raise FastEngineUnsupported(f"header {name!r} contains a line break or NUL character")
    if not name or ":" in name or " " in name:
        raise FastEngineUnsupported(f"invalid header name {name!r}")


class Encoded:
    """One RequestPlan as bytes: all of it when static, else the constant pieces around what varies."""

    __slots__ = ("whole", "prefix", "tail", "body", "plain", "is_head", "idempotent", "target", "headers",
                 "body_template", "cookies", "constant_body", "connect_timeout", "read_timeout", "limit",
                 "capture_headers", "capture_body", "captures", "render", "tls", "ssl", "server_name",
                 "fresh")

    def __init__(self, request: RequestPlan, host_header: bytes, path_prefix: str):
        names = {name.lower() for name, _ in request.headers}
        names.update(name.lower() for name, _ in request.header_templates)
        lines = []
        if "host" not in names:
            lines.append(b"Host: " + host_header + b"\r\n")
        for name, value in request.headers:
            _check_header(name, value)
            if name.lower() == "content-length":
                continue  # always computed from the body below
            lines.append(name.encode("utf-8") + b": " + value.encode("utf-8") + b"\r\n")
        if "user-agent" not in names:
            lines.append(b"User-Agent: runner\r\n")
        if not request.keepalive and "connection" not in names:
            # The server closes after answering (so the TIME_WAIT stays on its side) and the
            # next request opens a new connection: every request pays connect and handshake.
            lines.append(b"Connection: close\r\n")
        for name, _ in request.header_templates:
            _check_header(name, "")
        self.headers = tuple((name.encode("utf-8") + b": ", template) for name, template in request.header_templates
                             if name.lower() != "content-length")
        self.cookies = request.send_cookies
        self.body_template = request.body_template
        body = request.body
        if body is None and request.body_template is None and request.method not in _NO_CONTENT_METHODS:
            body = b""
        self.constant_body = body
        self.prefix = request.method.encode("ascii") + b" "
        self.is_head = request.method == "HEAD"
        self.idempotent = request.method in _IDEMPOTENT_METHODS
        self.connect_timeout = min(request.connect_timeout_s, request.timeout_s)
        self.read_timeout = request.read_timeout_s
        self.limit = max(request.max_response_bytes, 0)
        self.capture_headers = bool(request.capture_headers)
        self.capture_body = max(request.capture_body, 0)
        self.captures = self.capture_headers or self.capture_body > 0 or request.send_cookies
        self.target = request.target
        self.tls = request.tls  # connections are reused only by requests with equal settings
        self.fresh = not request.keepalive  # keepalive: false opens a new connection even when one is open
        self.ssl = None  # the SSLContext (https), set by the engine, which owns the contexts
        self.server_name = None  # SNI and the name the certificate must match (https)
        self.whole = None
        self.body = None
        constant_head = b"".join(lines)
        # Built-in fields only ever contribute digits, so one sample render tells
        # whether every render can be sent without quoting; other fields are checked per request.
        sample = path_prefix + _sample(request.target)
        self.plain = (sample.isascii() and _PLAIN_PATH.match(sample) is not None
                      and _BAD_PERCENT.search(sample) is None
                      and all(field in DIGIT_FIELDS for field in request.target.fields))
        simple = not self.headers and not self.cookies and self.body_template is None
        if simple:
            if body is not None:
                constant_head += b"Content-Length: %d\r\n" % len(body)
            head_tail = b" HTTP/1.1\r\n" + constant_head + b"\r\n"
            inline = body is not None and len(body) <= _INLINE_BODY_MAX
            self.tail = head_tail + body if inline else head_tail
            self.body = None if body is None or inline else body
            constant = request.target.constant
            if constant is not None:
                self.whole = self.prefix + self.encode_path(path_prefix + constant) + self.tail
            self.render = self._render_path_only
        else:
            self.tail = b" HTTP/1.1\r\n" + constant_head
            self.render = self._render_full
        self.prefix += self.encode_path(path_prefix)

    def encode_path(self, path: str) -> bytes:
        if path.isascii() and _PLAIN_PATH.match(path) is not None and _BAD_PERCENT.search(path) is None:
            return path.encode("ascii")
        return _quote_path(path)

    def _path(self, user) -> bytes:
        path = self.target.render(user)
        if self.plain:
            return path.encode("ascii")
        return self.encode_path(path)

    def _render_path_only(self, user) -> bytes:
        """Only the path varies: method + prefix, the rendered path, then the prepared tail."""
        return self.prefix + self._path(user) + self.tail

    def _render_full(self, user) -> bytes:
        """Templated headers, cookies or body: the head is joined per request."""
        parts = [self.prefix, self._path(user), self.tail]
        for name, template in self.headers:
            value = template.render(user)
            if "\r" in value or "\n" in value:
                value = value.replace("\r", " ").replace("\n", " ")
            parts.append(name + value.encode("utf-8") + b"\r\n")
        if self.cookies:
            cookie = user.cookie_header
            if cookie:
                parts.append(b"Cookie: " + cookie.encode("utf-8") + b"\r\n")
        template = self.body_template
        if template is not None:
            body = template.render(user)
            if type(body) is str:
                body = body.encode("utf-8")
        else:
            body = self.constant_body
        if body is not None:
            parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
            parts.append(body)
        else:
            parts.append(b"\r\n")
        return b"".join(parts)


class _SampleUser:
    """Digits for the built-in fields and plain text for the rest: enough to tell if a path needs quoting."""

    seq = worker = number = iteration = 0

    class _Vars(dict):
        def __missing__(self, key):
            return "x"

    vars = _Vars()


def _sample(template) -> str:
    try:
        return template.render(_SampleUser())
    except Exception:
        return "\u00ff"  # unknown: quote per request
