"""The aiohttp engine over https: TLS settings, TLS failures, keepalive: false and timing phases.

Every server is real and on loopback: aiohttp.web with an ssl context from
trustme (in a thread with its own loop), a blocking ``ssl`` server for the
failures an asyncio server cannot show (it drops its TLS alerts when a
handshake fails; OpenSSL servers such as nginx send them), and raw sockets
for handshakes that end badly. Requests go through the engine's transports as
a virtual user sends them, so what is checked is what the user gets: the
outcome, ``opened`` and ``first_byte_ns``.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

import pytest
import trustme
import uvloop
from aiohttp import web

from runner.engines.aiohttp_engine import AiohttpEngine
from runner.engines.fast import FastEngine
from runner.plan import Plan, RequestPlan, StagePlan, TlsPlan
from runner.target.config import TargetConfig
from runner.templates import compile_template

from .conftest import ThreadedServer

# -- certificates ---------------------------------------------------------------------------


@dataclass
class Pki:
    ca: trustme.CA
    server: trustme.LeafCert
    expired: trustme.LeafCert
    ca_file: str
    client_cert: str
    client_key: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    expired = ca.issue_cert("127.0.0.1", "localhost", not_before=past, not_after=past + datetime.timedelta(days=30))
    client = ca.issue_cert("client.example.test")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(directory / "client.pem"))
    client.private_key_pem.write_to_path(str(directory / "client.key"))
    return Pki(ca, server, expired, str(directory / "ca.pem"), str(directory / "client.pem"),
               str(directory / "client.key"))


def server_context(pki: Pki, *, cert: trustme.LeafCert | None = None, require_client: bool = False,
                   max_version: ssl.TLSVersion | None = None, names: list | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (cert or pki.server).configure_cert(context)
    if require_client:
        pki.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    if max_version is not None:
        context.maximum_version = max_version
    if names is not None:
        context.sni_callback = lambda ssl_object, name, ctx: names.append(name)
    return context


# -- servers --------------------------------------------------------------------------------


class TlsWebServer(ThreadedServer):
    """An aiohttp.web app over https (or http without a context) that counts requests and connections."""

    def __init__(self, context: ssl.SSLContext | None):
        self.requests = 0
        self.connections: set = set()  # the transports that carried requests (kept alive, so never reused ids)

        async def handle(request: web.Request) -> web.Response:
            self.requests += 1
            self.connections.add(request.transport)
            return web.Response(text="hello over tls")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        super().__init__(app, ssl_context=context)
        self.context = context


class SocketServer:
    """A blocking TCP server on 127.0.0.1: ``handle(connection)`` runs in a thread per connection."""

    def __init__(self, handle, scheme: str = "https"):
        self.handle = handle
        self.scheme = scheme
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []

    def __enter__(self) -> "SocketServer":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.listener.close()
        for connection in self.open:
            connection.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.open.append(connection)
            threading.Thread(target=self._one, args=(connection,), daemon=True).start()

    def _one(self, connection: socket.socket) -> None:
        try:
            self.handle(connection)
        except OSError:
            pass

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


def alerting_tls(context: ssl.SSLContext):
    """A handler that speaks TLS with the blocking ssl module, which sends its alert when a handshake fails."""

    def handle(connection: socket.socket) -> None:
        with context.wrap_socket(connection, server_side=True) as tls:
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    return handle


def close_after_hello(connection: socket.socket) -> None:
    connection.recv(65536)  # the ClientHello
    connection.close()


class KeepsAlive:
    """Plain http that answers every request and keeps the connection open, even when asked to close it."""

    def __init__(self):
        self.connections = 0
        self.heads: list[bytes] = []

    def __call__(self, connection: socket.socket) -> None:
        self.connections += 1
        pending = b""
        while True:
            data = connection.recv(65536)
            if not data:
                return
            pending += data
            while b"\r\n\r\n" in pending:
                head, pending = pending.split(b"\r\n\r\n", 1)
                self.heads.append(head)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")


def never_answer(connection: socket.socket) -> None:
    connection.recv(65536)
    time.sleep(3)


# -- sending requests as a virtual user does ----------------------------------------------


def request(index: int = 0, tls: TlsPlan | None = None, keepalive: bool = True, connect_timeout_s: float = 5.0,
            path: str = "/") -> RequestPlan:
    return RequestPlan(index, f"r{index}", "GET", path, compile_template(path, {}, set(), None), (), None, 5.0, True,
                       connect_timeout_s=connect_timeout_s, tls=tls, keepalive=keepalive)


def plan_of(*requests: RequestPlan, engine: str = "aiohttp") -> Plan:
    return Plan("tls", "tls.yaml", None, TargetConfig(), engine, tuple(requests),
                (StagePlan(0, "only", "closed", len(requests), None, 1, 1),), ())


@dataclass
class Outcome:
    status: int | None
    error: str | None
    detail: str
    opened: tuple | None
    first_byte_ns: int
    end_ns: int
    sent_ns: int = 0


@dataclass
class User:
    """What a transport needs of a virtual user; it keeps each outcome with the transport's phases."""

    seq: int = 0
    worker: int = 0
    number: int = 0
    iteration: int = 0
    vars: dict = field(default_factory=dict)
    cookie_header: str | None = None
    transport: object = None
    future: asyncio.Future | None = None

    def on_response(self, status: int, received: int, headers, body) -> None:
        self._settle(status, None, "")

    def on_failure(self, error_class: str, detail: str) -> None:
        self._settle(None, error_class, detail)

    def crashed(self, error: BaseException) -> None:
        self.future.set_exception(error)

    def _settle(self, status, error, detail) -> None:
        transport = self.transport
        outcome = Outcome(status, error, detail, transport.opened, transport.first_byte_ns, time.perf_counter_ns())
        transport.opened = None  # as the virtual user does: a connection is counted once
        self.future.set_result(outcome)


def send(url: str, *sends: RequestPlan, engine_class=AiohttpEngine, flow: tuple = ()) -> list[Outcome]:
    """Send ``sends`` one after another from one virtual user of a fresh engine; the outcomes."""
    flow = flow or tuple({r.index: r for r in sends}.values())

    async def main() -> list[Outcome]:
        engine = engine_class(plan_of(*flow), url)
        user = User()
        user.transport = engine.transport(user)
        outcomes = []
        try:
            for step in sends:
                user.future = asyncio.get_running_loop().create_future()
                sent = time.perf_counter_ns()
                user.transport.send(step, user)
                outcome = await asyncio.wait_for(user.future, 15)
                outcome.sent_ns = sent
                outcomes.append(outcome)
        finally:
            user.transport.close()
            await engine.aclose()
        return outcomes

    return uvloop.run(main())


def one(url: str, tls: TlsPlan | None = None, **options) -> Outcome:
    return send(url, request(tls=tls, **options))[0]


# -- settings -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https(pki):
    names: list = []
    with TlsWebServer(server_context(pki, names=names)) as server:
        server.names = names
        yield server


def test_verified_with_the_scenario_ca(pki, https):
    outcomes = send(https.url, *[request(tls=TlsPlan(ca=pki.ca_file))] * 3)
    assert [o.status for o in outcomes] == [200, 200, 200]


def test_system_cas_do_not_trust_a_private_ca(https):
    outcome = one(https.url)  # tls: None means verify with the system's CAs
    assert outcome.error == "tls"
    assert outcome.detail.startswith("certificate verify failed"), outcome.detail
    assert "https://" not in outcome.detail


def test_verify_false_accepts_any_certificate(https):
    assert one(https.url, TlsPlan(verify=False)).status == 200


def test_server_name_is_sent_and_checked(pki, https):
    before = len(https.names)
    assert one(https.url, TlsPlan(ca=pki.ca_file, server_name="localhost")).status == 200
    assert https.names[before:] == ["localhost"]  # the SNI the server saw
    wrong = one(https.url, TlsPlan(ca=pki.ca_file, server_name="other.example.test"))
    assert wrong.error == "tls"
    assert wrong.detail.startswith("hostname mismatch"), wrong.detail


def test_connections_are_not_shared_between_settings(pki):
    with TlsWebServer(server_context(pki)) as server:
        verified = request(0, TlsPlan(ca=pki.ca_file))
        unverified = request(1, TlsPlan(verify=False))
        named = request(2, TlsPlan(ca=pki.ca_file, server_name="localhost"))
        outcomes = send(server.url, verified, unverified, named, verified, unverified, named)
    assert [o.status for o in outcomes] == [200] * 6
    assert len(server.connections) == 3
    assert [o.opened is not None for o in outcomes] == [True, True, True, False, False, False]


def test_mutual_tls(pki):
    with TlsWebServer(server_context(pki, require_client=True)) as server:
        with_cert = one(server.url, TlsPlan(ca=pki.ca_file, cert=pki.client_cert, key=pki.client_key))
    assert with_cert.status == 200


def test_mutual_tls_without_a_client_certificate_tls_1_2(pki):
    # TLS 1.2: the server rejects inside the handshake; asyncio's server just drops the connection.
    context = server_context(pki, require_client=True, max_version=ssl.TLSVersion.TLSv1_2)
    with TlsWebServer(context) as server:
        outcome = one(server.url, TlsPlan(ca=pki.ca_file))
    assert outcome.error == "tls"
    assert outcome.detail.startswith("closed during handshake"), outcome.detail


def test_mutual_tls_without_a_client_certificate_tls_1_3_alert(pki):
    # TLS 1.3: the client's side of the handshake is over when the server's alert comes.
    with SocketServer(alerting_tls(server_context(pki, require_client=True))) as server:
        outcome = one(server.url, TlsPlan(ca=pki.ca_file))
    assert outcome.error == "tls"
    assert "CERTIFICATE_REQUIRED" in outcome.detail, outcome.detail


def test_expired_certificate(pki):
    with TlsWebServer(server_context(pki, cert=pki.expired)) as server:
        outcome = one(server.url, TlsPlan(ca=pki.ca_file))
    assert outcome.error == "tls"
    assert outcome.detail.startswith("certificate verify failed"), outcome.detail
    assert "expired" in outcome.detail


def test_protocol_version(pki):
    with SocketServer(alerting_tls(server_context(pki, max_version=ssl.TLSVersion.TLSv1_2))) as server:
        assert one(server.url, TlsPlan(ca=pki.ca_file, min_version="1.2")).status == 200
        outcome = one(server.url, TlsPlan(ca=pki.ca_file, min_version="1.3"))
    assert outcome.error == "tls"
    assert outcome.detail.startswith("protocol version"), outcome.detail


def test_server_closing_during_the_handshake(pki):
    with SocketServer(close_after_hello) as server:
        outcome = one(server.url, TlsPlan(ca=pki.ca_file))
    assert outcome.error == "tls"
    assert outcome.detail.startswith("closed during handshake"), outcome.detail
    connect_us, tls_us, _ = outcome.opened  # the TCP connect happened and is reported; no TLS time
    assert connect_us >= 0 and tls_us == -1


def test_handshake_timeout(pki):
    with SocketServer(never_answer) as server:
        started = time.monotonic()
        outcome = one(server.url, TlsPlan(ca=pki.ca_file), connect_timeout_s=0.3)
    assert outcome.error == "tls"
    assert outcome.detail.startswith("handshake timeout"), outcome.detail
    assert time.monotonic() - started < 2.5


def test_refused_connect_is_not_tls(pki):
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    outcome = one(f"https://127.0.0.1:{port}", TlsPlan(ca=pki.ca_file))
    assert outcome.error == "connect_refused"
    assert outcome.opened is None


# -- keepalive: false ------------------------------------------------------------------------


@pytest.mark.parametrize("secure", [True, False], ids=["https", "http"])
def test_keepalive_false_opens_a_connection_per_request(pki, secure):
    tls = TlsPlan(ca=pki.ca_file)
    with TlsWebServer(server_context(pki) if secure else None) as server:
        outcomes = send(server.url, *[request(tls=tls, keepalive=False)] * 5)
        assert [o.status for o in outcomes] == [200] * 5
        assert (server.requests, len(server.connections)) == (5, 5)
        assert all(o.opened is not None for o in outcomes)
        kept = send(server.url, *[request(tls=tls)] * 5)
        assert [o.opened is not None for o in kept] == [True, False, False, False, False]
        assert (server.requests, len(server.connections)) == (10, 6)


def test_keepalive_false_closes_even_when_the_server_would_keep_the_connection():
    server_side = KeepsAlive()
    with SocketServer(server_side, scheme="http") as server:
        outcomes = send(server.url, *[request(keepalive=False)] * 4)
    assert [o.status for o in outcomes] == [200] * 4
    assert server_side.connections == 4
    assert all(b"\r\nConnection: close" in head for head in server_side.heads)


@pytest.mark.parametrize("secure", [True, False], ids=["https", "http"])
def test_keepalive_false_never_takes_a_kept_alive_connection(pki, secure):
    tls = TlsPlan(ca=pki.ca_file)
    with TlsWebServer(server_context(pki) if secure else None) as server:
        kept, fresh = request(0, tls), request(1, tls, keepalive=False)
        outcomes = send(server.url, kept, fresh, kept, fresh, kept)
    assert [o.status for o in outcomes] == [200] * 5
    assert [o.opened is not None for o in outcomes] == [True, True, False, True, False]
    assert len(server.connections) == 3  # one kept alive for three requests, one for each of the others


# -- phases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("secure", [True, False], ids=["https", "http"])
def test_phases(pki, secure):
    with TlsWebServer(server_context(pki) if secure else None) as server:
        first, second = send(server.url, *[request(tls=TlsPlan(ca=pki.ca_file))] * 2)
    assert first.status == second.status == 200
    connect_us, tls_us, ready_ns = first.opened
    assert connect_us >= 0
    if secure:
        assert tls_us > 0
    else:
        assert tls_us == -1
    # the connection was ready after the request was sent and before its answer began
    assert first.sent_ns < ready_ns <= first.first_byte_ns <= first.end_ns
    assert connect_us + max(tls_us, 0) <= (ready_ns - first.sent_ns) // 1000
    assert second.opened is None  # reused
    assert second.sent_ns < second.first_byte_ns <= second.end_ns


def test_failure_leaves_no_first_byte(https):
    outcome = one(https.url)
    assert outcome.error == "tls"
    assert outcome.first_byte_ns == 0


# -- the same faults, the same classes on both engines ---------------------------------------


def fault_servers(pki):
    return {
        "system CAs": (lambda: TlsWebServer(server_context(pki)), TlsPlan()),
        "server_name": (lambda: TlsWebServer(server_context(pki)),
                        TlsPlan(ca=pki.ca_file, server_name="x.example.test")),
        "expired": (lambda: TlsWebServer(server_context(pki, cert=pki.expired)), TlsPlan(ca=pki.ca_file)),
        "version": (lambda: SocketServer(alerting_tls(server_context(pki, max_version=ssl.TLSVersion.TLSv1_2))),
                    TlsPlan(ca=pki.ca_file, min_version="1.3")),
        "closed": (lambda: SocketServer(close_after_hello), TlsPlan(ca=pki.ca_file)),
        "mtls 1.2": (lambda: TlsWebServer(server_context(pki, require_client=True,
                                                         max_version=ssl.TLSVersion.TLSv1_2)), TlsPlan(ca=pki.ca_file)),
        "mtls 1.3 alert": (lambda: SocketServer(alerting_tls(server_context(pki, require_client=True))),
                           TlsPlan(ca=pki.ca_file)),
        "ok": (lambda: TlsWebServer(server_context(pki)), TlsPlan(ca=pki.ca_file)),
    }


@pytest.mark.parametrize("fault", ["system CAs", "server_name", "expired", "version", "closed", "mtls 1.2",
                                   "mtls 1.3 alert", "ok"])
def test_both_engines_classify_alike(pki, fault):
    make, tls = fault_servers(pki)[fault]
    results = {}
    for engine_class in (AiohttpEngine, FastEngine):
        with make() as server:
            outcome = send(server.url, request(tls=tls), engine_class=engine_class)[0]
        results[engine_class.name] = (outcome.status, outcome.error, outcome.detail.split(":")[0])
    assert results["aiohttp"][:2] == results["fast"][:2], results
    if results["aiohttp"][1] == "tls":
        assert results["aiohttp"][2] == results["fast"][2] or fault == "mtls 1.3 alert", results
