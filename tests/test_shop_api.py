"""The built-in target's shop API (log in, list items, fill a cart), over real sockets.

The target runs as a child process, as in test_builtin_target.py; these tests
are plain HTTP clients (http.client, and a raw socket for chunked bodies and
pipelining), so they also pin down the contract another server must follow
to stand in for the built-in one with ``--target``.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from runner.target.process import BuiltinTarget
from runner.target.server import TargetConfig
from runner.target.shop import ITEMS_PER_USER, MAX_BODY_BYTES, MAX_CART_LENGTH, item_ids, password_for

IO_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def target():
    with BuiltinTarget(TargetConfig(body_size=1024)) as running:
        yield running


class Client:
    """One keep-alive connection; JSON in, (status, headers, JSON or bytes) out."""

    def __init__(self, target: BuiltinTarget):
        self.connection = http.client.HTTPConnection(target.host, target.port, timeout=IO_TIMEOUT_S)

    def close(self) -> None:
        self.connection.close()

    def call(self, method: str, path: str, body=None, *, token: str | None = None,
             cookie: str | None = None, raw_body: bytes | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if cookie is not None:
            headers["Cookie"] = cookie
        payload = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        if payload is not None:
            headers.setdefault("Content-Type", "application/json")
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        document = json.loads(data) if response.getheader("Content-Type") == "application/json" and data else data
        return response.status, response, document

    def login(self, user: str, password: str | None = None):
        return self.call("POST", "/login", {"user": user, "password": password_for(user) if password is None
                                            else password})

    def token(self, user: str) -> str:
        status, _, document = self.login(user)
        assert status == 200, document
        return document["token"]


@pytest.fixture
def client(target):
    opened = Client(target)
    yield opened
    opened.close()


def sid_of(response: http.client.HTTPResponse) -> str:
    """The sid cookie value from a login's Set-Cookie, checking its attributes."""
    set_cookie = response.getheader("Set-Cookie")
    assert set_cookie is not None
    pair, *attributes = [part.strip() for part in set_cookie.split(";")]
    name, _, value = pair.partition("=")
    assert name == "sid" and value
    assert "Path=/" in attributes and "HttpOnly" in attributes
    return value


# -- login ------------------------------------------------------------------


def test_login_returns_a_token_and_a_session_cookie(client):
    status, response, document = client.login("ann")
    assert status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert set(document) == {"token"} and isinstance(document["token"], str) and document["token"]
    sid = sid_of(response)
    assert sid != document["token"]
    # Deterministic per user (no token table): logging in again gives the same token.
    assert client.token("ann") == document["token"]
    assert client.token("bob") != document["token"]


@pytest.mark.parametrize("user, password", [("ann", "pw-bob"), ("ann", "ann"), ("ann", ""), ("pw-", "pw-")])
def test_login_with_the_wrong_password_is_401(client, user, password):
    status, response, document = client.login(user, password)
    assert status == 401
    assert response.getheader("Set-Cookie") is None
    assert "error" in document


@pytest.mark.parametrize("raw_body", [
    b'{"user": "ann", "password": ',      # truncated JSON
    b"user=ann&password=pw-ann",          # a form, not JSON
    b"",                                  # no body at all
    b'["ann", "pw-ann"]',                 # JSON, not an object
    b'{"user": "ann"}',                   # no password
    b'{"user": 7, "password": "pw-7"}',   # not a string
    b'{"user": "", "password": "pw-"}',   # empty name
    b"\xff\xfe{}",                        # not UTF-8
])
def test_malformed_login_is_400(client, raw_body):
    status, response, document = client.call("POST", "/login", raw_body=raw_body)
    assert status == 400, document
    assert response.getheader("Content-Type") == "application/json"
    assert "error" in document


def test_wrong_method_is_405_with_allow(client):
    status, response, _ = client.call("GET", "/login")
    assert status == 405
    assert response.getheader("Allow") == "POST"
    status, response, _ = client.call("DELETE", "/cart", token=client.token("ann"))
    assert status == 405
    assert response.getheader("Allow") == "GET, HEAD, POST"


# -- items ------------------------------------------------------------------


def test_items_are_the_users_predictable_items(client):
    for user in ("ann", "bob", "zoë"):
        status, response, document = client.call("GET", "/items", token=client.token(user))
        assert status == 200
        assert response.getheader("Content-Type") == "application/json"
        ids = [item["id"] for item in document["items"]]
        assert ids == list(item_ids(user))
        assert len(set(ids)) == ITEMS_PER_USER
        assert all(isinstance(item["name"], str) and item["name"] for item in document["items"])
    assert item_ids("ann") != item_ids("bob")


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Basic YW5uOnB3LWFubg=="},
])
def test_items_without_a_valid_bearer_is_401(client, headers):
    status, response, document = client.call("GET", "/items", headers=headers)
    assert status == 401
    assert response.getheader("WWW-Authenticate") == "Bearer"
    assert "error" in document


def test_tokens_cannot_be_forged_or_swapped_for_the_cookie(client):
    ann = client.token("ann")
    name, _, mac = ann.rpartition(".")
    bob_name = client.token("bob").rpartition(".")[0]
    # Bob's name under Ann's signature, a flipped signature, the session cookie as a token.
    # (the first character: the last one of unpadded base64 has unused low bits, so A/B there can decode alike)
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    _, response, _ = client.login("ann")
    for forged in (f"{bob_name}.{mac}", f"{name}.{flipped}", sid_of(response)):
        status, _, _ = client.call("GET", "/items", token=forged)
        assert status == 401, forged


def test_a_token_from_another_server_process_is_rejected(client):
    with BuiltinTarget(TargetConfig()) as other:
        foreign = Client(other)
        try:
            token = foreign.token("ann")
        finally:
            foreign.close()
    status, _, _ = client.call("GET", "/items", token=token)
    assert status == 401


def test_head_items_has_headers_only(client):
    status, response, body = client.call("HEAD", "/items", token=client.token("ann"))
    assert status == 200
    assert int(response.getheader("Content-Length")) > 0
    assert body == b""


# -- cart -------------------------------------------------------------------


def test_cart_accepts_listed_items_as_integers_and_numeric_strings(client):
    token = client.token("carol")
    first, second = item_ids("carol")[:2]
    status, response, document = client.call("POST", "/cart", {"item": first}, token=token)
    assert status == 201
    assert response.getheader("Content-Type") == "application/json"
    assert document == {"cart": [first]}
    status, _, document = client.call("POST", "/cart", {"item": str(second)}, token=token)
    assert status == 201
    assert document == {"cart": [first, second]}
    status, _, document = client.call("GET", "/cart", token=token)
    assert status == 200
    assert document == {"cart": [first, second]}


def test_cart_refuses_items_not_listed_for_the_user(client):
    token = client.token("dave")
    unlisted = next(item for item in range(1, 1000) if item not in item_ids("dave"))
    status, _, document = client.call("POST", "/cart", {"item": unlisted}, token=token)
    assert status == 409
    assert "error" in document
    # Another user's item is not this user's.
    other = next(item for item in item_ids("erin") if item not in item_ids("dave"))
    status, _, _ = client.call("POST", "/cart", {"item": other}, token=token)
    assert status == 409
    status, _, document = client.call("GET", "/cart", token=token)
    assert document == {"cart": []}


@pytest.mark.parametrize("body", [{"item": True}, {"item": 1.5}, {"item": "12a"}, {"item": None}, {"id": 3}, [3]])
def test_cart_with_a_malformed_item_is_400(client, body):
    status, _, document = client.call("POST", "/cart", body, token=client.token("ann"))
    assert status == 400
    assert "error" in document


def test_cart_without_a_token_is_401(client):
    listed = item_ids("ann")[0]
    for method, body in (("POST", {"item": listed}), ("GET", None)):
        status, response, _ = client.call(method, "/cart", body)
        assert status == 401
        assert response.getheader("WWW-Authenticate") == "Bearer"


def test_two_users_have_separate_carts(target):
    ann_client, bob_client = Client(target), Client(target)
    try:
        ann, bob = ann_client.token("cart-ann"), bob_client.token("cart-bob")
        ann_item, bob_item = item_ids("cart-ann")[0], item_ids("cart-bob")[-1]
        assert ann_client.call("POST", "/cart", {"item": ann_item}, token=ann)[0] == 201
        assert bob_client.call("POST", "/cart", {"item": bob_item}, token=bob)[0] == 201
        assert ann_client.call("GET", "/cart", token=ann)[2] == {"cart": [ann_item]}
        assert bob_client.call("GET", "/cart", token=bob)[2] == {"cart": [bob_item]}
        # The cart belongs to the user, not to the connection.
        assert bob_client.call("GET", "/cart", token=ann)[2] == {"cart": [ann_item]}
    finally:
        ann_client.close()
        bob_client.close()


def test_cart_keeps_only_the_latest_items(client):
    token = client.token("hoarder")
    ids = item_ids("hoarder")
    added = [ids[index % len(ids)] for index in range(MAX_CART_LENGTH + 7)]
    for item in added:
        status, _, document = client.call("POST", "/cart", {"item": item}, token=token)
        assert status == 201
    assert document == {"cart": added[-MAX_CART_LENGTH:]}


# -- cookie and whoami --------------------------------------------------------


def test_whoami_by_cookie_or_bearer(client):
    _, response, document = client.login("frank")
    sid = sid_of(response)
    status, response, document = client.call("GET", "/whoami", cookie=f"sid={sid}")
    assert status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert document == {"user": "frank"}
    # Among other cookies, and by bearer instead.
    assert client.call("GET", "/whoami", cookie=f"theme=dark; sid={sid}; lang=en")[2] == {"user": "frank"}
    assert client.call("GET", "/whoami", token=client.token("gina"))[2] == {"user": "gina"}


@pytest.mark.parametrize("cookie", [None, "sid=", "sid=forged.value", "theme=dark"])
def test_whoami_without_a_valid_session_is_401(client, cookie):
    status, _, document = client.call("GET", "/whoami", cookie=cookie)
    assert status == 401
    assert "error" in document


def test_a_token_is_not_a_session_cookie(client):
    status, _, _ = client.call("GET", "/whoami", cookie=f"sid={client.token('ann')}")
    assert status == 401


def test_each_users_cookie_names_that_user(client):
    sessions = {}
    for user in ("user-1", "user-2", "user-3"):
        _, response, _ = client.login(user)
        sessions[user] = sid_of(response)
    assert len(set(sessions.values())) == 3
    for user, sid in sessions.items():
        assert client.call("GET", "/whoami", cookie=f"sid={sid}")[2] == {"user": user}


# -- bodies, framing, neighbours ------------------------------------------------


def read_response(sock_file) -> tuple[int, dict, bytes]:
    status = int(sock_file.readline().split(b" ", 2)[1])
    headers = {}
    while (line := sock_file.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, sock_file.read(int(headers.get("content-length", 0)))


def test_chunked_request_bodies_are_read(target):
    body = json.dumps({"user": "chunky", "password": "pw-chunky"}).encode()
    pieces = (body[:7], body[7:20], body[20:])
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    with socket.create_connection((target.host, target.port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        stream = sock.makefile("rb")
        status, headers, data = read_response(stream)
        assert status == 200
        token = json.loads(data)["token"]
        item = str(item_ids("chunky")[1]).encode()
        cart = b'{"item": "' + item + b'"}'
        sock.sendall(b"POST /cart HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + token.encode()
                     + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(cart), cart))
        status, _, data = read_response(stream)
        assert status == 201
        assert json.loads(data) == {"cart": [int(item)]}


def test_pipelined_shop_and_plain_requests_answer_in_order(target):
    login = json.dumps({"user": "pipe", "password": "pw-pipe"}).encode()
    plain = b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n"
    batch = (plain + b"POST /login HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(login), login)
             + plain + b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n" + plain)
    with socket.create_connection((target.host, target.port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(batch)
        stream = sock.makefile("rb")
        answers = [read_response(stream) for _ in range(5)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 401, 200]
    assert [headers["content-type"] for _, headers, _ in answers] == [
        "text/html; charset=utf-8", "application/json", "text/html; charset=utf-8",
        "application/json", "text/html; charset=utf-8",
    ]
    assert "token" in json.loads(answers[1][2])


def test_headers_do_not_carry_over_between_requests(target):
    token = Client(target)
    try:
        bearer = token.token("carry")
    finally:
        token.close()
    with socket.create_connection((target.host, target.port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + bearer.encode() + b"\r\n\r\n"
                     + b"GET /items HTTP/1.1\r\nHost: t\r\n\r\n")
        stream = sock.makefile("rb")
        assert read_response(stream)[0] == 200
        assert read_response(stream)[0] == 401


def login_bytes(user: str) -> bytes:
    body = json.dumps({"user": user, "password": password_for(user)}).encode()
    return b"POST /login HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def send_apart(sock: socket.socket, *pieces: bytes) -> None:
    """Each piece in its own segment, so the server most likely reads them one by one."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in pieces:
        sock.sendall(piece)
        time.sleep(0.03)


@pytest.mark.parametrize("cut", [5, 30, 60, -10, -1])
def test_a_shop_request_split_across_reads(target, cut):
    # Plain requests first (answered before the server knows the connection
    # needs headers), then a login that arrives in two reads.
    plain = b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n"
    login = login_bytes("split")
    with socket.create_connection((target.host, target.port), timeout=IO_TIMEOUT_S) as sock:
        send_apart(sock, plain, plain + login[:cut], login[cut:] + plain)
        stream = sock.makefile("rb")
        answers = [read_response(stream) for _ in range(4)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    assert json.loads(answers[2][2]) == {"token": Client(target).token("split")}
    assert [len(body) for _, _, body in answers[:2] + answers[3:]] == [1024] * 3


def test_a_long_request_then_the_shop_on_one_connection(target):
    # A plain upload larger than what a connection keeps before it parses
    # headers for good, then the shop and plain requests on the same connection.
    upload = b"x" * (300 * 1024)
    with socket.create_connection((target.host, target.port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(upload))
        for start in range(0, len(upload), 16 * 1024):
            sock.sendall(upload[start:start + 16 * 1024])
        sock.sendall(login_bytes("uploader") + b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        stream = sock.makefile("rb")
        answers = [read_response(stream) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert "token" in json.loads(answers[1][2])
    assert len(answers[2][2]) == 1024


def test_a_stream_never_between_requests_keeps_every_answer_right(target):
    # Pipelined requests sent in pieces that never end where a request ends:
    # the server can never tell it is between requests, and must still
    # answer every one, shop requests with their own headers.
    token = Client(target).token("streamer").encode()
    plain = b"GET /p HTTP/1.1\r\nHost: t\r\n\r\n"
    items = b"GET /items HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + token + b"\r\n\r\n"
    anonymous = b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n"
    requests = ([plain] * 3000 + [items, anonymous]) * 2 + [plain]
    stream_bytes = b"".join(requests)
    statuses: list[int] = []
    with socket.create_connection((target.host, target.port), timeout=IO_TIMEOUT_S) as sock:
        stream = sock.makefile("rb")
        # Read while sending, so neither side waits for the other to drain.
        reader = threading.Thread(target=lambda: statuses.extend(read_response(stream)[0] for _ in requests))
        reader.start()
        for start in range(0, len(stream_bytes), 997):
            sock.sendall(stream_bytes[start:start + 997])
        reader.join(timeout=30)
    assert statuses == [200 if r is not anonymous else 401 for r in requests]


def test_too_large_body_is_413_and_the_connection_goes_on(client):
    status, _, document = client.call("POST", "/login", raw_body=b"x" * (MAX_BODY_BYTES + 1))
    assert status == 413
    assert "error" in document
    assert client.login("after-413")[0] == 200


def test_shop_honours_the_delay_query(client):
    status, response, document = client.call("GET", "/whoami?delay=0.05", token=client.token("slow"))
    assert status == 200
    assert response.getheader("delay") == "0.050"
    assert document == {"user": "slow"}


@pytest.mark.parametrize("path", ["/cartoon", "/items/3", "/login/", "/whoami-not", "/Login", "/x/login"])
def test_neighbouring_paths_keep_the_ordinary_answer(client, path):
    status, response, body = client.call("POST", path, {"user": "ann", "password": "pw-ann"})
    assert status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert len(body) == 1024
    assert response.getheader("Set-Cookie") is None


def test_shop_requests_are_counted(target, client):
    token = client.token("counted")
    target.reset()
    client.call("GET", "/items", token=token)
    client.call("GET", "/cart", token=token)
    client.call("GET", "/whoami")
    assert target.stats() == 3


# -- lean and full parsing agree -------------------------------------------------


class _RecordingTransport:
    """Just enough of a transport for TargetProtocol, recording what it writes."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data) -> None:
        self.written += data

    def writelines(self, parts) -> None:
        for part in parts:
            self.written += part

    def get_extra_info(self, name, default=None):
        return default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_limits(self):
        return (0, 1 << 30)

    def get_write_buffer_size(self) -> int:
        return 0


def _random_requests(rng, token: bytes) -> list[bytes]:
    login = json.dumps({"user": "fuzz", "password": "pw-fuzz"}).encode()
    cart = b'{"item": %d}' % item_ids("fuzz")[0]
    choices = [
        b"GET /p/%d HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /same HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /same HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /p/%d HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + token + b"\r\n\r\n",
        b"HEAD /h/%d HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /old/%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET /q/%d?size=7 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /up/%d HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST /up/%d HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /login?n=%d HTTP/1.1\r\nHost: t\r\nContent-Length: " + b"%d" % len(login) + b"\r\n\r\n" + login,
        b"GET /items?n=%d HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + token + b"\r\n\r\n",
        b"GET /whoami?n=%d HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /cart?n=%d HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + token
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(cart) + cart + b"\r\n0\r\n\r\n",
    ]
    return [rng.choice(choices).replace(b"%d", str(index).encode(), 1) for index in range(rng.randint(1, 40))]


def _serve_in_process(state, stream: bytes, cuts: list[int], full_from_start: bool) -> bytes:
    from runner.target.server import TargetProtocol

    protocol = TargetProtocol(state)
    transport = _RecordingTransport()
    protocol.connection_made(transport)
    if full_from_start:
        protocol._go_full(b"", 0)
    start = 0
    for cut in [*cuts, len(stream)]:
        if cut > start:
            protocol.data_received(stream[start:cut])
            start = cut
    stayed_lean = protocol._lean
    protocol.connection_lost(None)
    return bytes(transport.written), stayed_lean


def test_lean_and_full_parsing_answer_every_split_stream_alike():
    import asyncio
    import random

    from runner.target.server import TargetConfig as Config
    from runner.target.server import _TargetState
    from runner.target.shop import Shop

    async def compare() -> None:
        rng = random.Random(1234)
        # Two servers in the same state (carts change alike: both see the same requests).
        lean_state, full_state = _TargetState(Config(body_size=64)), _TargetState(Config(body_size=64))
        full_state.shop = Shop(key=lean_state.shop._key)
        full_state.common_headers, full_state.default_response = (
            lean_state.common_headers, lean_state.default_response)
        token = lean_state.shop.token("fuzz").encode()
        lean_ends = set()
        for _ in range(300):
            requests = _random_requests(rng, token)
            stream = b"".join(requests)
            if rng.random() < 0.5:
                cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 12))))
            else:  # one read per request, the common case
                cuts, position = [], 0
                for request in requests:
                    position += len(request)
                    cuts.append(position)
            for _ in range(2):  # the second time, reads repeat what the server may have remembered
                lean, stayed_lean = _serve_in_process(lean_state, stream, cuts, full_from_start=False)
                full, _ = _serve_in_process(full_state, stream, cuts, full_from_start=True)
                lean_ends.add(stayed_lean)
                assert lean == full, (requests, cuts)
                assert lean.count(b"HTTP/1.1 ") == len(requests)
        assert lean_ends == {True, False}  # both kinds of connection were compared

    asyncio.run(compare())
