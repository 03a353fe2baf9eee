"""Client TLS for both engines: one ``ssl.SSLContext`` per distinct setting, and what a failure means.

Both engines take their contexts from :class:`ClientContexts` and describe
TLS failures with :func:`tls_failure`, so the same certificate problem is the
same ``tls`` error with the same sample text whichever engine met it. A
context is built once per engine and setting, never per connection: loading
a CA bundle takes milliseconds, a handshake with a ready context does not.
"""

from __future__ import annotations

import ssl

from .plan import TlsPlan

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
#: The default when a request says nothing: verify against the system's CAs.
DEFAULT_TLS = TlsPlan()


def build_context(tls: TlsPlan) -> ssl.SSLContext:
    """A client context for ``tls``; file problems raise ``OSError``/``ssl.SSLError`` (the loader checked them)."""
    if tls.verify:
        # With a CA file, only it is trusted (a staging CA should not widen to the system's).
        context = ssl.create_default_context(cafile=tls.ca)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert is not None:
        # A key encrypted since the load-time check must fail here, never stop the run at a passphrase prompt.
        context.load_cert_chain(tls.cert, tls.key, password=_no_passphrase)
    if tls.min_version is not None:
        context.minimum_version = _VERSIONS[tls.min_version]
    context.set_alpn_protocols(["http/1.1"])  # both engines speak HTTP/1.1 only
    return context


def _no_passphrase() -> bytes:
    raise ValueError("encrypted private keys are not supported")


class ClientContexts:
    """One engine's contexts, by setting (equal ``TlsPlan`` values share one)."""

    __slots__ = ("_contexts",)

    def __init__(self) -> None:
        self._contexts: dict[TlsPlan, ssl.SSLContext] = {}

    def get(self, tls: TlsPlan | None) -> ssl.SSLContext:
        tls = tls or DEFAULT_TLS
        context = self._contexts.get(tls)
        if context is None:
            context = self._contexts[tls] = build_context(tls)
        return context


def server_name(tls: TlsPlan | None, host: str) -> str:
    """The name sent as SNI and checked against the certificate: ``server_name`` or the URL's host."""
    if tls is not None and tls.server_name:
        return tls.server_name
    return host


#: The stable first words of every TLS failure's sample, so reports group them.
HOSTNAME_MISMATCH = "hostname mismatch"
VERIFY_FAILED = "certificate verify failed"
HANDSHAKE_TIMEOUT = "handshake timeout"
PROTOCOL_VERSION = "protocol version"
HANDSHAKE_FAILED = "handshake failed"
CLOSED_IN_HANDSHAKE = "closed during handshake"


def tls_failure(exc: BaseException) -> str:
    """The sample text of a failed TLS handshake: a stable reason, then the library's own words."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or exc.reason or str(exc)
        if "hostname" in str(message).lower() or "ip address mismatch" in str(message).lower():
            return f"{HOSTNAME_MISMATCH}: {message}"
        return f"{VERIFY_FAILED}: {message}"
    if isinstance(exc, (TimeoutError, ssl.SSLError)) and "timed out" in str(exc).lower():
        return f"{HANDSHAKE_TIMEOUT}: {exc}"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        if "VERSION" in reason or "UNSUPPORTED_PROTOCOL" in reason:
            return f"{PROTOCOL_VERSION}: {exc.reason}"
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return f"{CLOSED_IN_HANDSHAKE}: {exc.reason or exc}"
        return f"{HANDSHAKE_FAILED}: {exc.reason or exc}"
    if isinstance(exc, (TimeoutError,)):
        return f"{HANDSHAKE_TIMEOUT}: the handshake did not end within the request's time limit"
    if isinstance(exc, (ConnectionError, EOFError)) or (isinstance(exc, OSError) and "handshake" in str(exc).lower()):
        text = str(exc)
        if "taking longer" in text:  # the loop's own handshake timeout
            return f"{HANDSHAKE_TIMEOUT}: {text}"
        return f"{CLOSED_IN_HANDSHAKE}: {type(exc).__name__}{': ' + text if text else ''}"
    return f"{HANDSHAKE_FAILED}: {type(exc).__name__}: {exc}"
