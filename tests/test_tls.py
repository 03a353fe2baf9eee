"""HTTPS against real servers with real certificates: both engines, the same answers.

Every certificate is made by trustme in the test's directory, every server
listens on 127.0.0.1, and every run goes through ``runner run`` (the
in-process CLI), so the scenario's ``tls:`` block is loaded, checked,
compiled and handed to the engine exactly as a user's would be. Each test
runs the same scenario on ``engine: fast`` and ``engine: aiohttp`` and
checks both against what the case must give *and* against each other:
a certificate problem that one engine reports as ``tls`` and the other as
``reset`` would make results incomparable between engines, which is the
thing the shared ``runner.tls`` module exists to prevent.

Servers: an aiohttp.web app behind an ``ssl.SSLContext`` (counting requests,
TLS handshakes and TCP connections), and a blocking socket server for what
an asyncio server cannot show: one that closes at once, closes after reading
the ClientHello, or accepts and never says a word, and a plain TLS server
that sends its refusal as an alert before closing, as OpenSSL servers do.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import trustme
from aiohttp import web

from runner.cli import main

from .conftest import ThreadedServer

ENGINES = ("fast", "aiohttp")
#: Names the ordinary server certificate holds: the address the runs connect to, and localhost.
LOOPBACK = ("127.0.0.1", "localhost")
BODY = "hello over tls"
#: The first words of every ``tls`` error sample (runner/tls.py).
REASONS = ("hostname mismatch", "certificate verify failed", "handshake timeout", "protocol version",
           "closed during handshake", "handshake failed")

SCENARIO = """\
version: 1
name: tls-{engine}
target: https://127.0.0.1:{port}
engine: {engine}
defaults:
  timeout: {timeout}
  connect_timeout: {connect_timeout}
{defaults}flow:
  - name: get
    path: /hello
{request}stages:
  - requests: {requests}
    concurrency: {concurrency}
"""


# -- certificates ----------------------------------------------------------------------------------


class Pki:
    """One CA and the certificates the cases need, made once per module (key generation is the slow part)."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.server = self.ca.issue_cert(*LOOPBACK)
        self.localhost_only = self.ca.issue_cert("localhost")
        yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
        self.expired = self.ca.issue_cert(*LOOPBACK, not_before=yesterday - datetime.timedelta(days=30),
                                          not_after=yesterday)
        self.client = self.ca.issue_cert("client.example")

    def server_context(self, cert: trustme.LeafCert | None = None, *, require_client: bool = False,
                       max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (cert or self.server).configure_cert(context)
        if require_client:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        if max_version is not None:
            context.maximum_version = max_version
        return context

    def write(self, directory: Path) -> None:
        """The files a scenario in ``directory`` names by relative path (ca.pem, client.pem, client.key)."""
        self.ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        self.client.cert_chain_pems[0].write_to_path(str(directory / "client.pem"))
        self.client.private_key_pem.write_to_path(str(directory / "client.key"))


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


# -- servers ---------------------------------------------------------------------------------------


class TlsServer(ThreadedServer):
    """The conftest's threaded aiohttp.web server, behind TLS, counting what each layer saw.

    ``counter``: requests (``__all__``) and TLS handshakes the server began
    (``handshakes``, from the SNI callback, which OpenSSL calls for every
    ClientHello whether or not it names a host); ``peers``: the distinct
    client (address, port) pairs that sent a request, i.e. TCP connections
    that carried HTTP; ``sni``: the names clients sent.
    """

    def __init__(self, context: ssl.SSLContext):
        self.counter: Counter = Counter()
        self.peers: set = set()
        self.sni: Counter = Counter()
        self.context = context
        context.sni_callback = self._hello

        async def handle(request: web.Request) -> web.Response:
            self.counter["__all__"] += 1
            self.peers.add(request.transport.get_extra_info("peername"))
            return web.Response(text=BODY)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        super().__init__(app, ssl_context=context, backlog=512)

    def _hello(self, _socket, name, _context) -> None:
        self.counter["handshakes"] += 1
        self.sni[name] += 1


class RawServer:
    """A blocking TCP server on 127.0.0.1, one connection at a time, for what an asyncio server cannot show.

    ``close``: closes each connection as soon as it is accepted; ``hello``:
    reads the ClientHello, then closes; ``silent``: accepts and never
    answers (connections stay open until the server stops); ``tls``: a
    well-behaved TLS server with ``context``, answering one request per
    connection. asyncio's own TLS server drops its pending output when a
    handshake fails, so a client of it sees a bare close instead of the
    alert that says why (protocol version, certificate required); this one
    lets OpenSSL write the alert, then closes gently (FIN, and what the
    client still sends is read, so no reset overtakes the alert).

    ``accepted`` counts connections, ``hellos`` those whose first bytes were
    a TLS handshake record (``hello`` mode), ``served`` the requests
    answered and ``refused`` the server's reasons for failed handshakes.
    """

    def __init__(self, mode: str, context: ssl.SSLContext | None = None):
        self.mode = mode
        self.context = context
        self.accepted = 0
        self.hellos = 0
        self.served = 0
        self.refused: Counter = Counter()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.settimeout(2.0)
            if self.mode == "silent":
                self._held.append(conn)
                continue
            try:
                if self.mode == "hello":
                    if conn.recv(16384)[:1] == b"\x16":
                        self.hellos += 1
                elif self.mode == "tls":
                    self._answer(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _answer(self, conn: socket.socket) -> None:
        secure = self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        try:
            try:
                secure.do_handshake()
                request = b""
                while b"\r\n\r\n" not in request:  # in TLS 1.3 the client's certificate is judged by now
                    chunk = secure.recv(16384)
                    if not chunk:
                        return
                    request += chunk
            except ssl.SSLError as exc:  # OpenSSL has written its alert by now
                self.refused[exc.reason] += 1
                secure.shutdown(socket.SHUT_WR)  # a FIN below the TLS layer, after the alert
                secure.settimeout(0.5)
                while secure.recv(16384):  # until the client closes: closing with unread bytes would reset
                    pass
                return
            body = BODY.encode()
            secure.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                           % (len(body), body))
            self.served += 1
        finally:
            secure.close()

    def __enter__(self) -> "RawServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._listener.close()


# -- running both engines --------------------------------------------------------------------------


def indent(block: str, by: int) -> str:
    return "".join(" " * by + line + "\n" for line in block.strip("\n").splitlines()) if block else ""


def run(tmp_path: Path, engine: str, port: int, *, defaults: str = "", request: str = "", requests: int = 40,
        concurrency: int = 4, timeout: str = "5s", connect_timeout: str = "5s") -> tuple[int, dict, float]:
    """``runner run`` of a one-request scenario in ``tmp_path``; returns (exit code, result, wall seconds).

    ``defaults`` and ``request`` are YAML lines added to ``defaults:`` and to
    the one request (e.g. ``tls: {ca: ca.pem}``), with relative file paths
    starting at ``tmp_path``, where the scenario is written.
    """
    scenario = tmp_path / f"{engine}.yaml"
    scenario.write_text(SCENARIO.format(
        engine=engine, port=port, timeout=timeout, connect_timeout=connect_timeout, defaults=indent(defaults, 2),
        request=indent(request, 4), requests=requests, concurrency=concurrency))
    out = tmp_path / f"{engine}.json"
    started = time.monotonic()
    code = main(["run", str(scenario), "--quiet", "--out", f"json={out}"])
    elapsed = time.monotonic() - started
    return code, orjson.loads(out.read_bytes()), elapsed  # (conftest checks every result against the schema)


def counts(result: dict) -> dict:
    """What must not depend on the engine: the counts and the error classes (not their texts)."""
    totals = result["totals"]
    return {"requests": totals["requests"], "ok": totals["ok"], "failed": totals["failed"],
            "errors": dict(totals["errors"]), "status_codes": dict(totals["status_codes"])}


def samples(result: dict, error_class: str) -> list[str]:
    return result["totals"].get("error_samples", {}).get(error_class, [])


def both(directory: Path, port: int, pki: Pki, *, engines: tuple[str, ...] = ENGINES,
         **options) -> dict[str, tuple[int, dict, float]]:
    """Each engine on the same scenario, in ``directory/<engine>`` with the PKI files beside it."""
    outcomes = {}
    for engine in engines:
        own = directory / engine
        own.mkdir(parents=True)
        pki.write(own)
        outcomes[engine] = run(own, engine, port, **options)
    return outcomes


def assert_engines_agree(outcomes: dict) -> None:
    (first, (code_a, result_a, _)), (second, (code_b, result_b, _)) = outcomes.items()
    assert counts(result_a) == counts(result_b), (
        f"{first} and {second} disagree: {first} {counts(result_a)} vs {second} {counts(result_b)}; "
        f"samples {result_a['totals'].get('error_samples')} vs {result_b['totals'].get('error_samples')}")
    assert code_a == code_b, f"exit codes differ: {first} {code_a}, {second} {code_b}"


def assert_all_ok(outcomes: dict, requests: int) -> None:
    for engine, (code, result, _) in outcomes.items():
        totals = result["totals"]
        assert (totals["requests"], totals["ok"], totals["failed"]) == (requests, requests, 0), (
            f"{engine}: {counts(result)} {totals.get('error_samples')}")
        assert totals["status_codes"] == {"200": requests}, engine
        assert code == 0, f"{engine} exited {code}"


def assert_all_tls(outcomes: dict, requests: int, *reasons: str) -> list[str]:
    """Every request of every engine failed as ``tls``, each sample starting with one of ``reasons``; exit 3."""
    texts = []
    for engine, (code, result, _) in outcomes.items():
        totals = result["totals"]
        assert totals["errors"] == {"tls": requests}, (
            f"{engine}: {counts(result)} {totals.get('error_samples')}")
        assert totals["ok"] == 0 and totals["status_codes"] == {}, engine
        found = samples(result, "tls")
        assert found, f"{engine}: no tls error sample"
        for text in found:
            assert text.startswith(reasons), f"{engine}: sample {text!r} does not start with one of {reasons}"
        texts += found
        assert code == 3, f"{engine}: every handshake failed, yet exit code {code} (expected 3)"
    return texts


# -- the cases -------------------------------------------------------------------------------------


def test_custom_ca_every_request_ok_and_counted_by_the_server(tmp_path, pki):
    """``ca:`` trusts the private CA; the server's own tally, per engine: nothing sent twice, none lost."""
    seen = {}
    with TlsServer(pki.server_context()) as server:
        outcomes = {}
        for engine in ENGINES:
            server.counter.clear()
            outcomes.update(both(tmp_path / engine, server.port, pki, engines=(engine,),
                                 defaults="tls: {ca: ca.pem}", requests=60))
            seen[engine] = server.counter["__all__"]
    assert_all_ok(outcomes, 60)
    assert seen == {engine: 60 for engine in ENGINES}, f"requests the server saw: {seen}"
    assert_engines_agree(outcomes)


def test_default_verification_rejects_a_private_ca(tmp_path, pki):
    """No ``ca:``: the system's CAs do not know trustme's, so no request may get through, and the run exits 3."""
    with TlsServer(pki.server_context()) as server:
        outcomes = both(tmp_path, server.port, pki, requests=20)
        assert server.counter["__all__"] == 0, "a request reached the app over an unverified connection"
    assert_all_tls(outcomes, 20, "certificate verify failed")
    assert_engines_agree(outcomes)


def test_verify_false_accepts_an_unknown_ca(tmp_path, pki):
    with TlsServer(pki.server_context()) as server:
        outcomes = both(tmp_path, server.port, pki, defaults="tls: {verify: false}", requests=40)
        assert server.counter["__all__"] == 80
    assert_all_ok(outcomes, 40)
    assert_engines_agree(outcomes)


def test_server_name_that_the_certificate_lacks_is_a_hostname_mismatch(tmp_path, pki):
    with TlsServer(pki.server_context()) as server:
        outcomes = both(tmp_path, server.port, pki, defaults="tls: {ca: ca.pem, server_name: other.example}",
                        requests=20)
        assert server.counter["__all__"] == 0
        assert set(server.sni) == {"other.example"}, f"SNI sent: {dict(server.sni)}"
    assert_all_tls(outcomes, 20, "hostname mismatch")
    assert_engines_agree(outcomes)


def test_server_name_overrides_the_host_the_certificate_must_match(tmp_path, pki):
    """A certificate for localhost only, reached at 127.0.0.1: refused by address, accepted with ``server_name``.

    The request's own ``tls:`` sets only ``server_name``; ``ca`` still comes
    from ``defaults.tls`` (fields merge one by one), or verification would
    fail for another reason. The server checks the name really went out as SNI.
    """
    with TlsServer(pki.server_context(pki.localhost_only)) as server:
        by_address = both(tmp_path / "address", server.port, pki, defaults="tls: {ca: ca.pem}", requests=20)
        server.sni.clear()
        server.counter.clear()
        by_name = both(tmp_path / "name", server.port, pki, defaults="tls: {ca: ca.pem}",
                       request="tls: {server_name: localhost}", requests=40)
        handshakes = server.counter["handshakes"]
        assert handshakes > 0 and server.sni == Counter({"localhost": handshakes}), (
            f"SNI sent: {dict(server.sni)} in {handshakes} handshakes")
        assert server.counter["__all__"] == 80
    assert_all_tls(by_address, 20, "hostname mismatch")
    assert_engines_agree(by_address)
    assert_all_ok(by_name, 40)
    assert_engines_agree(by_name)


def test_mutual_tls_with_and_without_a_client_certificate(tmp_path, pki):
    """A server that requires a client certificate from the CA: with ``cert``+``key`` every request is ok.

    Without one, TLS 1.3 lets the client finish its side of the handshake
    before the server has judged the (missing) certificate, and this server
    (asyncio's TLS) closes without sending its alert, so the refusal looks
    like the connection closing: a FIN (``closed_early``) or, when the
    client's request was still unread on the server, a reset (``reset``),
    request by request as the timing falls. Those two are one outcome here,
    so the engines are compared with them merged; nothing may get through,
    and the run exits 3. (The next test has a server whose alert arrives.)
    """
    with TlsServer(pki.server_context(require_client=True)) as server:
        accepted = both(tmp_path / "with", server.port, pki,
                        defaults="tls: {ca: ca.pem, cert: client.pem, key: client.key}", requests=40)
        assert server.counter["__all__"] == 80
        server.counter.clear()
        refused = both(tmp_path / "without", server.port, pki, defaults="tls: {ca: ca.pem}", requests=20)
        assert server.counter["__all__"] == 0, "a request without a client certificate reached the app"
    assert_all_ok(accepted, 40)
    assert_engines_agree(accepted)
    merged = {}
    for engine, (code, result, _) in refused.items():
        totals = result["totals"]
        assert totals["ok"] == 0 and totals["failed"] == 20, f"{engine}: {counts(result)}"
        assert set(totals["errors"]) <= {"tls", "reset", "closed_early"}, (
            f"{engine}: {counts(result)} {totals.get('error_samples')}")
        assert code == 3, engine
        merged[engine] = sum((Counter({"closed" if name in ("reset", "closed_early") else name: number})
                              for name, number in totals["errors"].items()), Counter())
    assert merged["fast"] == merged["aiohttp"], f"refusals as the engines saw them: {merged}"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_client_certificate_refused_with_an_alert_is_a_tls_failure(tmp_path, pki, version):
    """A server that says why it refuses (the alert reaches the client) makes every request a ``tls`` failure.

    In TLS 1.2 the refusal ends the client's handshake; in TLS 1.3 it
    arrives after the client's side is done, on the first read, yet it is
    still a TLS failure and its sample must start with a stable reason like
    any other, so that both engines report and group it the same way.
    """
    cap = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
    with RawServer("tls", pki.server_context(require_client=True, max_version=cap)) as server:
        outcomes = both(tmp_path, server.port, pki, defaults="tls: {ca: ca.pem}", requests=20)
        assert server.served == 0 and sum(server.refused.values()) >= 20, (server.served, server.refused)
    assert_all_tls(outcomes, 20, *REASONS)
    assert_engines_agree(outcomes)


def test_expired_certificate(tmp_path, pki):
    with TlsServer(pki.server_context(pki.expired)) as server:
        outcomes = both(tmp_path, server.port, pki, defaults="tls: {ca: ca.pem}", requests=20)
        assert server.counter["__all__"] == 0
    texts = assert_all_tls(outcomes, 20, "certificate verify failed")
    assert all("expired" in text for text in texts), texts
    assert_engines_agree(outcomes)


@pytest.mark.parametrize("mode", ["close", "hello"])
def test_server_that_closes_during_the_handshake(tmp_path, pki, mode):
    """Closed at accept, or right after the ClientHello: a ``tls`` failure, never a success or a hang."""
    with RawServer(mode) as server:
        outcomes = both(tmp_path, server.port, pki, defaults="tls: {ca: ca.pem}", requests=20, concurrency=2)
        assert server.accepted >= 2  # at least one connection per user reached it
        if mode == "hello":
            assert server.hellos >= 2, "the clients never sent a ClientHello"
    assert_all_tls(outcomes, 20, "closed during handshake", "handshake failed")
    assert_engines_agree(outcomes)


def test_handshake_timeout_ends_within_the_timeout(tmp_path, pki):
    """A server that accepts TCP and never answers: each handshake gives up at the 300 ms connect timeout.

    Each failed request must have taken about that long (not the 2 s
    request timeout, and not no time at all), and the whole run of 4
    handshakes per user must end long before 4 request timeouts (8 s).
    """
    with RawServer("silent") as server:
        outcomes = both(tmp_path, server.port, pki, defaults="tls: {ca: ca.pem}", requests=8, concurrency=2,
                        timeout="2s", connect_timeout="300ms")
        assert server.accepted >= 8, f"{server.accepted} connections for 16 requests"
    assert_all_tls(outcomes, 8, "handshake timeout")
    for engine, (_, result, elapsed) in outcomes.items():
        latency = result["totals"]["latency_ms"]
        assert 250 <= latency["min"] and latency["max"] < 1000, f"{engine}: failed requests took {latency}"
        assert elapsed < 6, f"{engine}: the run took {elapsed:.2f} s"
    assert_engines_agree(outcomes)


def test_min_version_above_what_the_server_speaks(tmp_path, pki):
    """``min_version: "1.3"`` against a server that stops at 1.2: refused with the server's protocol_version alert.

    The refusing server is the blocking one, which sends the alert as
    OpenSSL servers (nginx, ...) do; ``"1.2"`` on the same cap is accepted.
    """
    capped = pki.server_context(max_version=ssl.TLSVersion.TLSv1_2)
    with RawServer("tls", capped) as server:
        refused = both(tmp_path / "13", server.port, pki, defaults='tls: {ca: ca.pem, min_version: "1.3"}',
                       requests=20)
        assert server.served == 0
    with TlsServer(pki.server_context(max_version=ssl.TLSVersion.TLSv1_2)) as server:
        accepted = both(tmp_path / "12", server.port, pki, defaults='tls: {ca: ca.pem, min_version: "1.2"}',
                        requests=20)
        assert server.counter["__all__"] == 40
    assert_all_tls(refused, 20, "protocol version")
    assert_engines_agree(refused)
    assert_all_ok(accepted, 20)
    assert_engines_agree(accepted)


def phases(engine: str, result: dict) -> dict:
    block = result["totals"].get("phases_ms")
    if block is None:
        pytest.skip(f"{engine}: the result has no phases_ms yet (runner/result.py is being extended)")
    return block


def connections_per_engine(tmp_path, pki, server: TlsServer, **options) -> dict:
    """Each engine's run, with the TLS handshakes and TCP connections the server saw during it."""
    per_engine = {}
    for engine in ENGINES:
        server.counter.clear()
        server.peers.clear()
        outcome = both(tmp_path / engine, server.port, pki, engines=(engine,), **options)[engine]
        per_engine[engine] = outcome, server.counter["handshakes"], len(server.peers)
    return per_engine


@pytest.mark.parametrize("where", ["defaults", "request"])
def test_keepalive_false_opens_a_connection_per_request(tmp_path, pki, where):
    """Every request its own TCP connection and handshake, as the server counts them and as phases_ms says."""
    place = {"defaults": {"defaults": "tls: {ca: ca.pem}\nkeepalive: false"},
             "request": {"defaults": "tls: {ca: ca.pem}", "request": "keepalive: false"}}[where]
    with TlsServer(pki.server_context()) as server:
        per_engine = connections_per_engine(tmp_path, pki, server, requests=40, concurrency=4, **place)
    outcomes = {engine: outcome for engine, (outcome, _, _) in per_engine.items()}
    assert_all_ok(outcomes, 40)
    assert_engines_agree(outcomes)
    seen = {engine: (handshakes, peers) for engine, (_, handshakes, peers) in per_engine.items()}
    assert seen == {engine: (40, 40) for engine in ENGINES}, f"(handshakes, connections) per engine: {seen}"
    for engine, (_, result, _) in outcomes.items():
        block = phases(engine, result)
        assert (block["connect"]["count"], block["tls"]["count"], block["ttfb"]["count"]) == (40, 40, 40), (
            f"{engine}: {block}")


def test_keepalive_reuses_one_connection_per_user(tmp_path, pki):
    """With keep-alive (the default) each of the 3 users opens one connection and one handshake for 20 requests."""
    with TlsServer(pki.server_context()) as server:
        per_engine = connections_per_engine(tmp_path, pki, server, defaults="tls: {ca: ca.pem}", requests=60,
                                            concurrency=3)
    outcomes = {engine: outcome for engine, (outcome, _, _) in per_engine.items()}
    assert_all_ok(outcomes, 60)
    assert_engines_agree(outcomes)
    seen = {engine: (handshakes, peers) for engine, (_, handshakes, peers) in per_engine.items()}
    assert seen == {engine: (3, 3) for engine in ENGINES}, f"(handshakes, connections) per engine: {seen}"
    for engine, (_, result, _) in outcomes.items():
        block = phases(engine, result)
        assert (block["connect"]["count"], block["tls"]["count"], block["ttfb"]["count"]) == (3, 3, 60), (
            f"{engine}: {block}")
        assert block["tls"]["max"] > 0, f"{engine}: three handshakes took no time? {block['tls']}"


@pytest.mark.parametrize("query", ["size=1000000", "size=300000&chunked=1", "size=0"])
def test_bodies_larger_than_a_record_and_the_read_buffer_arrive_whole(tmp_path, query):
    """A 1 MB body spans many TLS records and several read buffers; every byte is counted, on both engines.

    The fast engine decrypts into a 256 KiB buffer: records that arrive
    together, a buffer that fills, a record split across reads and a chunked
    body all pass through it here.
    """
    size = int(query.split("&")[0].split("=")[1])
    received = {}
    for engine in ENGINES:
        scenario = tmp_path / f"{engine}-big.yaml"
        scenario.write_text(
            "version: 1\nname: big-over-tls\ntarget: builtin\nbuiltin: {tls: true}\n"
            f"engine: {engine}\nflow:\n  - path: /big?{query}\n"
            "stages:\n  - requests: 12\n    concurrency: 3\n")
        out = tmp_path / f"{engine}-big.json"
        assert main(["run", str(scenario), "--quiet", "--out", f"json={out}"]) == 0
        totals = orjson.loads(out.read_bytes())["totals"]
        assert (totals["requests"], totals["ok"]) == (12, 12), totals["errors"]
        received[engine] = totals["bytes"]
    assert received == {engine: 12 * size for engine in ENGINES}
