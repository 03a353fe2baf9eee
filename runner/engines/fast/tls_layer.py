"""TLS for the fast engine: memory BIOs between the loop's TCP transport and the HTTP connection protocol.

Why neither of the obvious ways:

- the loop's own TLS transport (``create_connection(ssl=...)``) runs a
  general state machine per record, with a write backlog and flow control,
  and cost about 15 µs of CPU per small request here, halving the https rate;
- an ``ssl.SSLSocket`` reads from the kernel itself, and without OpenSSL's
  read-ahead (which the ssl module cannot turn on) every record takes two
  ``read`` calls, one for its 5-byte header and one for the rest.

Here the loop reads raw bytes in C, as many as have arrived, into one shared
buffer; :class:`TlsLayer` hands them to OpenSSL's memory BIO and decrypts
the records into the engine's shared read buffer, where the HTTP protocol
(:mod:`.protocol`) parses them exactly as it parses plain http. A request is
encrypted by one ``SSLObject.write`` and sent by one transport write. So an
https response costs one ``read`` system call, like a plain one.

:class:`TlsLayer` is the asyncio protocol of the TCP connection and, towards
the HTTP protocol, the transport (``write``, ``close``, ``abort``): the HTTP
side does not know whether it speaks through TLS.
"""

from __future__ import annotations

import asyncio
import ssl

#: Raw bytes the loop may read at once, into the engine's one raw buffer.
RAW_BUFFER_BYTES = 256 * 1024

_WantRead = ssl.SSLWantReadError
_Closed = (ssl.SSLZeroReturnError, ssl.SSLEOFError)


class TlsLayer(asyncio.BufferedProtocol):
    """One TLS connection: shakes hands, then encrypts for and decrypts to its HTTP protocol."""

    __slots__ = ("_transport", "_incoming", "_outgoing", "_sslobj", "_raw", "_conn", "handshake", "_error",
                 "_read", "_write", "_size")

    def __init__(self, loop: asyncio.AbstractEventLoop, context: ssl.SSLContext, server_name: str | None,
                 raw_view: memoryview) -> None:
        self._transport = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._sslobj = context.wrap_bio(self._incoming, self._outgoing, server_side=False,
                                        server_hostname=server_name)
        self._raw = raw_view  # shared by the engine's connections: filled and consumed synchronously
        self._conn = None  # the HTTP protocol, once the handshake is done
        self.handshake: asyncio.Future = loop.create_future()  # resolves when the handshake is complete
        self._error: BaseException | None = None  # a TLS error that ended the connection
        # The C object's own read/write, without ssl.SSLObject's Python wrapper frame per call.
        inner = getattr(self._sslobj, "_sslobj", self._sslobj)
        self._read = inner.read
        self._write = inner.write
        self._size = 0

    # -- towards the HTTP protocol: a transport ---------------------------------------------------

    def attach(self, conn) -> None:
        """Hand the connection to its HTTP protocol (after the handshake)."""
        self._conn = conn
        self._size = len(conn._read_view)  # decrypted bytes go to the engine's shared read buffer
        conn.connection_made(self)
        if self._incoming.pending:  # records that came with the end of the handshake
            self._decrypt(0)

    def write(self, data) -> None:
        transport = self._transport
        if transport.is_closing():
            return  # as asyncio's transports do; connection_lost will report the request
        try:
            self._write(data)
        except ssl.SSLError as exc:
            self._end(exc)
            return
        transport.write(self._outgoing.read())

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default=None):
        if name == "ssl_object":
            return self._sslobj
        return self._transport.get_extra_info(name, default)

    # -- towards the loop: a protocol ------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self._transport = transport
        self._shake()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._raw

    def buffer_updated(self, nbytes: int) -> None:
        incoming = self._incoming
        incoming.write(self._raw[:nbytes])
        conn = self._conn
        if conn is None:
            if not self.handshake.done():
                self._shake()
            return
        # The common case inline: what arrived is one whole record (a small response).
        try:
            count = self._read(self._size, conn._read_view)
        except _WantRead:  # the rest of a record is still on its way
            return
        except ssl.SSLError as exc:
            self._failed(0, exc)
            return
        if not count:  # close_notify: the server is done
            self._failed(0, None)
            return
        if not incoming.pending and count < self._size:
            conn.buffer_updated(count)
            if self._outgoing.pending:
                self._flush()
            return
        self._decrypt(count)

    def eof_received(self):
        if self._conn is not None:
            return self._conn.eof_received()
        return None  # during the handshake: connection_lost fails it

    def connection_lost(self, exc) -> None:
        exc = self._error or exc
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError(
                "the server closed the connection during the TLS handshake"))
            return
        if self._conn is not None:
            self._conn.connection_lost(exc)

    # -- TLS ---------------------------------------------------------------------------------------

    def _shake(self) -> None:
        try:
            self._sslobj.do_handshake()
        except _WantRead:
            self._flush()
            return
        except (ssl.SSLError, OSError) as exc:  # certificate, version, alert...
            self._flush()
            if not self.handshake.done():
                self.handshake.set_exception(exc)
            self._transport.abort()
            return
        self._flush()
        if not self.handshake.done():
            self.handshake.set_result(None)

    def _decrypt(self, filled: int) -> None:
        """Decrypt the other complete records, then give the HTTP protocol all of it in one call.

        ``filled`` bytes at the start of the read buffer are decrypted already
        (0: nothing read yet). Records that arrived together (a
        head and a body written apart) reach the parser together, as they
        would over plain http; OpenSSL is not asked for more once the BIO is
        empty (that would only raise).
        """
        conn = self._conn
        view = conn._read_view
        size = len(view)
        read = self._read
        incoming = self._incoming
        transport = self._transport
        decrypted = self._sslobj.pending  # plaintext OpenSSL holds when a record did not fit the buffer
        while True:
            while filled < size and (incoming.pending or decrypted()):
                try:
                    count = read(size - filled, view[filled:] if filled else view)
                except _WantRead:  # the rest of a record is still on its way
                    break
                except ssl.SSLError as exc:  # an alert, a damaged record
                    self._failed(filled, exc)
                    return
                if not count:  # close_notify
                    self._failed(filled, None)
                    return
                filled += count
            if filled:
                conn.buffer_updated(filled)
                if transport.is_closing():
                    return
            if filled < size:
                break
            filled = 0  # the shared buffer was full: the rest goes in a second helping
        if self._outgoing.pending:  # post-handshake messages (key update...) to answer
            self._flush()

    def _failed(self, filled: int, exc: BaseException | None) -> None:
        """The record stream ended: hand over what was decrypted, then close_notify (EOF) or a TLS error."""
        conn = self._conn
        if filled:
            conn.buffer_updated(filled)
        if exc is None or isinstance(exc, _Closed):
            if not conn.eof_received():
                self._transport.close()
            return
        self._end(exc)

    def _flush(self) -> None:
        if self._outgoing.pending:
            self._transport.write(self._outgoing.read())

    def _end(self, exc: BaseException) -> None:
        """A TLS error ends the connection; the HTTP protocol learns it as connection_lost's exception."""
        self._error = exc
        self._transport.abort()
