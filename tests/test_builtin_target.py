"""Tests of the built-in target server, run as a real child process on loopback.

No mocks: the load runner's own tests trust this server's counts and delays,
so these tests check them over real sockets, including the raw-socket cases
(pipelining, malformed requests) that http.client cannot express.
"""

from __future__ import annotations

import http.client
import signal
import socket
import time

import pytest

from runner.target.process import BuiltinTarget
from runner.target.server import CHUNK_SIZE, TargetConfig, make_html_body

IO_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def target():
    with BuiltinTarget(TargetConfig(body_size=1024)) as running:
        yield running


def request(target: BuiltinTarget, path: str, method: str = "GET", headers: dict | None = None):
    connection = http.client.HTTPConnection(target.host, target.port, timeout=IO_TIMEOUT_S)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, chunk_sizes: list[int]):
        self.status = status
        self.headers = headers
        self.body = body
        self.chunk_sizes = chunk_sizes


class RawConnection:
    """A socket plus a minimal HTTP/1.1 response reader, for what http.client hides."""

    def __init__(self, target: BuiltinTarget):
        self.sock = socket.create_connection((target.host, target.port), timeout=IO_TIMEOUT_S)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by server")
        self.buffer += data

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_response(self, head_only: bool = False) -> RawResponse:
        status = int(self._read_line().split(b" ", 2)[1])
        headers = {}
        while line := self._read_line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        chunk_sizes: list[int] = []
        if head_only or status in (204, 304):
            body = b""
        elif headers.get("transfer-encoding") == "chunked":
            pieces = []
            while (size := int(self._read_line(), 16)) > 0:
                chunk_sizes.append(size)
                pieces.append(self._read_exactly(size))
                assert self._read_exactly(2) == b"\r\n"
            assert self._read_line() == b""
            body = b"".join(pieces)
        else:
            body = self._read_exactly(int(headers["content-length"]))
        return RawResponse(status, headers, body, chunk_sizes)

    def is_closed_by_server(self) -> bool:
        """True once the server closed and nothing else is left to read."""
        if self.buffer:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


@pytest.fixture
def raw(target):
    connection = RawConnection(target)
    yield connection
    connection.close()


def get_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


# -- bodies -----------------------------------------------------------------


def test_default_body_has_exact_size_and_headers(target):
    response, body = request(target, "/any/path")
    assert response.status == 200
    assert len(body) == 1024
    assert body == make_html_body(1024)
    assert body.startswith(b"<!DOCTYPE html>")
    assert response.getheader("Content-Length") == "1024"
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert response.getheader("delay") == "0.000"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_any_method_answers_200(target, method):
    response, body = request(target, "/some/where", method=method)
    assert response.status == 200
    assert len(body) == 1024


@pytest.mark.parametrize("size", [0, 1, 50, 200, 1024, 65537])
def test_html_body_sizes_are_exact(size):
    assert len(make_html_body(size)) == size


def test_size_query_returns_large_body(target):
    response, body = request(target, "/big?size=2000000")
    assert response.status == 200
    assert response.getheader("Content-Length") == "2000000"
    assert len(body) == 2_000_000
    # A repeat is served from the cache and must be the same bytes.
    _, again = request(target, "/big?size=2000000")
    assert again == body


def test_chunked_query_decodes_to_the_same_body(target, raw):
    _, plain = request(target, "/?size=100000")
    raw.send(get_bytes("/?chunked=1&size=100000"))
    response = raw.read_response()
    assert response.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.headers
    assert response.body == plain
    assert max(response.chunk_sizes) <= CHUNK_SIZE
    assert sum(response.chunk_sizes) == 100000

    # http.client's own decoder agrees, for the default size too.
    response, body = request(target, "/?chunked=1")
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert body == make_html_body(1024)


def test_status_query_sets_status_and_204_has_no_body(target):
    response, body = request(target, "/?status=404")
    assert response.status == 404
    assert len(body) == 1024

    connection = http.client.HTTPConnection(target.host, target.port, timeout=IO_TIMEOUT_S)
    try:
        connection.request("GET", "/?status=204")
        response = connection.getresponse()
        assert response.status == 204
        assert response.getheader("Content-Length") is None
        assert response.read() == b""
        # Any stray body byte would corrupt the next response on this connection.
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        assert len(response.read()) == 1024
    finally:
        connection.close()


def test_status_204_raw_has_no_body_bytes(target, raw):
    raw.send(get_bytes("/?status=204&chunked=1") + get_bytes("/"))
    first = raw.read_response()
    assert first.status == 204
    assert "content-length" not in first.headers
    assert "transfer-encoding" not in first.headers
    second = raw.read_response()
    assert second.status == 200 and len(second.body) == 1024


def test_head_has_headers_but_no_body(target, raw):
    raw.send(b"HEAD /?size=5000 HTTP/1.1\r\nHost: test\r\n\r\n" + get_bytes("/"))
    head = raw.read_response(head_only=True)
    assert head.status == 200
    assert head.headers["content-length"] == "5000"
    following = raw.read_response()
    assert following.status == 200 and len(following.body) == 1024

    response, body = request(target, "/", method="HEAD")
    assert response.getheader("Content-Length") == "1024"
    assert body == b""


def test_invalid_query_value_is_a_400(target):
    for query in ("delay=soon", "size=-1", "status=99", "chunked=maybe"):
        response, _ = request(target, f"/?{query}")
        assert response.status == 400, query


# -- delays -----------------------------------------------------------------


def delay_sequence(config: TargetConfig, count: int = 12) -> list[str]:
    with BuiltinTarget(config) as seeded:
        connection = http.client.HTTPConnection(seeded.host, seeded.port, timeout=IO_TIMEOUT_S)
        try:
            delays = []
            for _ in range(count):
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                delays.append(response.getheader("delay"))
            return delays
        finally:
            connection.close()


def test_seeded_delays_are_reproducible():
    config = TargetConfig(delay_min_s=0.001, delay_max_s=0.02, seed=1234)
    first = delay_sequence(config)
    second = delay_sequence(config)
    other = delay_sequence(TargetConfig(delay_min_s=0.001, delay_max_s=0.02, seed=4321))
    assert first == second
    assert first != other
    assert all(0.001 <= float(value) <= 0.02 for value in first)
    assert len(set(first)) > 1


def test_delay_query_really_delays(target):
    started = time.perf_counter()
    response, _ = request(target, "/?delay=0.3")
    elapsed = time.perf_counter() - started
    assert response.getheader("delay") == "0.300"
    assert 0.29 <= elapsed < 1.0


def test_pipelined_responses_keep_request_order(target, raw):
    started = time.perf_counter()
    raw.send(get_bytes("/a?delay=0.2") + get_bytes("/b?delay=0") + get_bytes("/c?delay=0.1"))
    responses = [raw.read_response() for _ in range(3)]
    elapsed = time.perf_counter() - started
    assert [r.headers["delay"] for r in responses] == ["0.200", "0.000", "0.100"]
    assert all(r.status == 200 and len(r.body) == 1024 for r in responses)
    # The instant response waited behind the slow one; the batch was not serialised
    # into the sum of the delays (generous bound: CI machines are shared).
    assert 0.19 <= elapsed < 1.0


def test_client_disconnect_mid_delay_is_harmless(target):
    target.reset()
    abandoned = RawConnection(target)
    abandoned.send(get_bytes("/?delay=0.2"))
    time.sleep(0.05)
    abandoned.close()
    time.sleep(0.25)
    assert target.stats() == 0  # nothing was written, so nothing counted
    response, _ = request(target, "/")
    assert response.status == 200


# -- connections ------------------------------------------------------------


def test_keep_alive_serves_100_requests_on_one_connection(target):
    connection = http.client.HTTPConnection(target.host, target.port, timeout=IO_TIMEOUT_S)
    try:
        connection.connect()
        sock = connection.sock
        for _ in range(100):
            connection.request("GET", "/")
            response = connection.getresponse()
            assert response.status == 200
            assert len(response.read()) == 1024
            assert not response.will_close
        assert connection.sock is sock  # never reconnected
    finally:
        connection.close()


def test_connection_close_closes(target, raw):
    raw.send(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    response = raw.read_response()
    assert response.status == 200
    assert response.headers["connection"] == "close"
    assert raw.is_closed_by_server()


def test_http_10_closes_unless_keep_alive(target):
    plain = RawConnection(target)
    try:
        plain.send(b"GET / HTTP/1.0\r\n\r\n")
        assert len(plain.read_response().body) == 1024
        assert plain.is_closed_by_server()
    finally:
        plain.close()

    kept = RawConnection(target)
    try:
        kept.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = kept.read_response()
        assert first.headers["connection"].lower() == "keep-alive"
        kept.send(b"GET /?chunked=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        second = kept.read_response()
        # No chunked encoding for an HTTP/1.0 client.
        assert "transfer-encoding" not in second.headers
        assert len(second.body) == 1024
    finally:
        kept.close()


def test_request_bodies_are_consumed(target, raw):
    sized = b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\nhello world"
    chunked = (
        b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    raw.send(sized + chunked + get_bytes("/after"))
    for _ in range(3):
        response = raw.read_response()
        assert response.status == 200 and len(response.body) == 1024


def test_malformed_request_gets_400_and_close(target, raw):
    raw.send(b"THIS IS NOT HTTP\r\n\r\n")
    response = raw.read_response()
    assert response.status == 400
    assert raw.is_closed_by_server()
    # The server survived.
    response, _ = request(target, "/")
    assert response.status == 200


def test_upgrade_request_is_answered_then_closed(target, raw):
    raw.send(b"GET /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
             + b"\x81\x85not http")
    response = raw.read_response()
    assert response.status == 200 and len(response.body) == 1024
    assert raw.is_closed_by_server()


def test_request_split_across_writes(target, raw):
    payload = get_bytes("/split/path?size=10")
    for index in range(len(payload)):
        raw.send(payload[index : index + 1])
    assert len(raw.read_response().body) == 10


def test_pipelined_plain_requests_all_answered_and_counted(target, raw):
    target.reset()
    raw.send(get_bytes("/one") * 200 + get_bytes("/?size=3") + get_bytes("/two") * 5)
    responses = [raw.read_response() for _ in range(206)]
    assert all(r.status == 200 for r in responses)
    assert [len(r.body) for r in responses] == [1024] * 200 + [3] + [1024] * 5
    assert target.stats() == 206


def send_apart(connection: RawConnection, *pieces: bytes) -> None:
    """Send each piece in its own segment, so the server most likely reads them one by one."""
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in pieces:
        connection.send(piece)
        time.sleep(0.03)


def test_repeated_requests_are_each_answered_once(target, raw):
    target.reset()
    request_bytes = get_bytes("/same")
    for _ in range(20):
        raw.send(request_bytes)
        response = raw.read_response()
        assert response.status == 200 and len(response.body) == 1024
    assert target.stats() == 20


def test_a_repeat_that_continues_an_unfinished_request_is_parsed(target, raw):
    # The server answers a read equal to an earlier one-request read without
    # parsing it, but only between requests: here the same bytes complete a
    # request begun in the read before (as a header value), so it is one
    # request, not two.
    target.reset()
    request_bytes = get_bytes("/same")
    send_apart(raw, request_bytes, request_bytes)
    assert [raw.read_response().status for _ in range(2)] == [200, 200]
    send_apart(raw, b"GET /?size=7 HTTP/1.1\r\nX-Pad: ", request_bytes, get_bytes("/?size=9"))
    assert len(raw.read_response().body) == 7
    assert len(raw.read_response().body) == 9
    assert target.stats() == 4


def test_a_repeat_after_a_body_is_answered_in_order(target, raw):
    request_bytes = get_bytes("/same")
    send_apart(
        raw,
        request_bytes,
        b"POST /?delay=0.1&size=5 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(request_bytes),
        request_bytes,  # the body of the POST, not a request
        request_bytes,
    )
    sizes = [len(raw.read_response().body) for _ in range(3)]
    assert sizes == [1024, 5, 1024]
    raw.sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        raw._fill()  # and nothing else


# -- counting ---------------------------------------------------------------


def test_stats_counts_exactly_and_reset_works(target):
    target.reset()
    assert target.stats() == 0
    connection = http.client.HTTPConnection(target.host, target.port, timeout=IO_TIMEOUT_S)
    try:
        for index in range(50):
            connection.request("GET", f"/item/{index}")
            connection.getresponse().read()
    finally:
        connection.close()
    assert target.stats() == 50
    assert target.stats() == 50  # control requests are not counted
    response, body = request(target, "/__runner/reset")
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert body == b'{"requests": 0}'
    assert target.stats() == 0


# -- process lifecycle ------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stops_cleanly_on_signal(signum):
    lifecycle = BuiltinTarget()
    lifecycle.start()
    try:
        assert lifecycle.url == f"http://127.0.0.1:{lifecycle.port}"
        request(lifecycle, "/")
        lifecycle._process.send_signal(signum)
        assert lifecycle._process.wait(timeout=5) == 0
        assert lifecycle.stderr_text() == ""  # no traceback
    finally:
        lifecycle.stop()
        lifecycle._close_stderr()


def test_config_is_validated():
    with pytest.raises(ValueError):
        TargetConfig(delay_min_s=0.5, delay_max_s=0.1)
    with pytest.raises(ValueError):
        TargetConfig(body_size=-1)
