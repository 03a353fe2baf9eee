"""The fast engine and the aiohttp engine must measure the same things.

Every case runs one plan through the real Executor on BOTH engines against a
real loopback server -- the built-in target, an aiohttp.web app, or a raw
asyncio socket server for the faults no proper server commits -- and asserts
that request counts, status-code counts, byte counts and error classes are
identical (and, where the server can tell, equal to what the server saw).
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Awaitable, Callable

import pytest
import uvloop
from aiohttp import web

from runner.compile import compile_scenario
from runner.engines import TransportError, select_engine
from runner.engines.aiohttp_engine import AiohttpEngine
from runner.engines.fast import FastEngine, FastEngineUnsupported
from runner.loader import load_scenario
from runner.metrics.recorder import RequestStats

from .conftest import ThreadedServer, run_plan

ENGINES = ("fast", "aiohttp")

SCENARIO = """\
version: 1
name: differential
target: {target}
engine: {engine}
defaults:
  timeout: {timeout}
flow:
  - method: {method}
    path: "{path}"
{extra}stages:
  - requests: {requests}
    concurrency: {concurrency}
"""


def build_plan(tmp_path: Path, target: str, engine: str, *, path: str = "/", method: str = "GET",
               requests: int = 200, concurrency: int = 4, timeout: float = 10.0, body: str | None = None):
    extra = f"    body: {body!r}\n" if body is not None else ""
    text = SCENARIO.format(target=target, engine=engine, path=path, method=method, requests=requests,
                           concurrency=concurrency, timeout=timeout, extra=extra)
    file = tmp_path / f"{engine}.yaml"
    file.write_text(text)
    return compile_scenario(load_scenario(file), file)


def run_engine(tmp_path: Path, target: str, engine: str, **plan_options) -> RequestStats:
    """Run one plan on one engine through the Executor; return the run's totals."""
    plan = build_plan(tmp_path, target, engine, **plan_options)
    engine_class, _ = select_engine(plan, target)
    assert engine_class is {"fast": FastEngine, "aiohttp": AiohttpEngine}[engine]

    return run_plan(plan, target)[0]


def summary(stats: RequestStats) -> tuple:
    return stats.requests, stats.ok, stats.failed, stats.bytes, dict(stats.status_codes), dict(stats.errors)


def run_both(tmp_path: Path, target: str, **plan_options) -> dict[str, RequestStats]:
    results = {engine: run_engine(tmp_path, target, engine, **plan_options) for engine in ENGINES}
    fast, reference = summary(results["fast"]), summary(results["aiohttp"])
    assert fast == reference, f"fast {fast} != aiohttp {reference}"
    return results


def run_both_on_builtin(tmp_path: Path, target, **plan_options) -> RequestStats:
    """Both engines on the built-in target; each engine's count must equal the server's."""
    results = {}
    for engine in ENGINES:
        target.reset()
        results[engine] = run_engine(tmp_path, target.url, engine, **plan_options)
        assert target.stats() == results[engine].requests
    assert summary(results["fast"]) == summary(results["aiohttp"])
    return results["fast"]


# -- the built-in target -------------------------------------------------------


def test_small_bodies(tmp_path, builtin_target):
    stats = run_both_on_builtin(tmp_path, builtin_target, path="/page/{seq}", requests=2000, concurrency=20)
    assert summary(stats) == (2000, 2000, 0, 2000 * 1024, {200: 2000}, {})


def test_varied_sizes_including_empty(tmp_path, builtin_target):
    stats = run_both_on_builtin(tmp_path, builtin_target, path="/x?size={seq}", requests=300, concurrency=7)
    assert stats.bytes == sum(range(300))
    assert stats.status_codes == {200: 300}


def test_chunked(tmp_path, builtin_target):
    stats = run_both_on_builtin(tmp_path, builtin_target, path="/c?chunked=1&size=40000", requests=300, concurrency=5)
    assert summary(stats) == (300, 300, 0, 300 * 40000, {200: 300}, {})


def test_large_body(tmp_path, builtin_target):
    stats = run_both_on_builtin(tmp_path, builtin_target, path="/big?size=1048576", requests=24, concurrency=3)
    assert summary(stats) == (24, 24, 0, 24 * 1048576, {200: 24}, {})


def test_large_chunked_body(tmp_path, builtin_target):
    stats = run_both_on_builtin(tmp_path, builtin_target, path="/big?size=1048577&chunked=1",
                                requests=12, concurrency=3)
    assert summary(stats) == (12, 12, 0, 12 * 1048577, {200: 12}, {})


def test_head_has_no_body(tmp_path, builtin_target):
    stats = run_both_on_builtin(tmp_path, builtin_target, method="HEAD", path="/h/{seq}", requests=500, concurrency=5)
    assert summary(stats) == (500, 500, 0, 0, {200: 500}, {})


def test_head_of_chunked_response(tmp_path, builtin_target):
    stats = run_both_on_builtin(tmp_path, builtin_target, method="HEAD", path="/h?chunked=1",
                                requests=100, concurrency=2)
    assert summary(stats) == (100, 100, 0, 0, {200: 100}, {})


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(tmp_path, builtin_target, status):
    stats = run_both_on_builtin(tmp_path, builtin_target, path=f"/n?status={status}", requests=300, concurrency=3)
    assert summary(stats) == (300, 300, 0, 0, {status: 300}, {})


@pytest.mark.parametrize("status", [404, 500])
def test_error_statuses_count_as_failed(tmp_path, builtin_target, status):
    stats = run_both_on_builtin(tmp_path, builtin_target, path=f"/e?status={status}", requests=300, concurrency=3)
    assert summary(stats) == (300, 0, 300, 300 * 1024, {status: 300}, {})


def test_post_with_body(tmp_path, builtin_target):
    stats = run_both_on_builtin(tmp_path, builtin_target, method="POST", path="/p/{worker}", body="x" * 5000,
                                requests=300, concurrency=3)
    assert summary(stats) == (300, 300, 0, 300 * 1024, {200: 300}, {})


def test_base_url_path_prefix(tmp_path, builtin_target):
    # The server answers any path; a recording server below checks the exact target.
    for engine in ENGINES:
        builtin_target.reset()
        stats = run_engine(tmp_path, builtin_target.url + "/api/", engine, path="/v/{seq}", requests=50)
        assert builtin_target.stats() == 50 and stats.status_codes == {200: 50}


# -- raw socket servers for what well-behaved servers never do -----------------------


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "RawServer"], Awaitable[None]]


class RawServer:
    """A plain asyncio TCP server in a thread; ``handler`` owns each connection."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.port = 0
        self.connections = 0
        self.request_heads: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._writers: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=512))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        for writer in self._writers:
            writer.transport.abort()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            # (a cancelled handler at shutdown ends quietly)
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """Read one request (head and Content-Length body); None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if match:
            await reader.readexactly(int(match.group(1)))
        self.request_heads.append(head)
        return head

    def __enter__(self) -> "RawServer":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def answer_each(response: bytes, *, close: bool = False) -> Handler:
    async def handler(reader, writer, server: RawServer) -> None:
        while await server.read_request(reader) is not None:
            writer.write(response)
            await writer.drain()
            if close:
                return
    return handler


def test_connection_close_on_every_response(tmp_path):
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    with RawServer(answer_each(response, close=True)) as server:
        for engine in ENGINES:
            server.connections = 0
            stats = run_engine(tmp_path, server.url, engine, requests=200, concurrency=4)
            assert summary(stats) == (200, 200, 0, 1000, {200: 200}, {})
            assert server.connections == 200  # one new connection per request


def test_body_read_until_close(tmp_path):
    response = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"z" * 3000
    with RawServer(answer_each(response, close=True)) as server:
        stats = run_both(tmp_path, server.url, requests=100, concurrency=4)["fast"]
    assert summary(stats) == (100, 100, 0, 300000, {200: 100}, {})


@pytest.mark.parametrize("connection", [b"", b"Connection: close\r\n"])
def test_close_mid_body_is_closed_early(tmp_path, connection):
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n" + connection + b"\r\n" + b"y" * 50
    with RawServer(answer_each(response, close=True)) as server:
        stats = run_both(tmp_path, server.url, requests=60, concurrency=3)["fast"]
    assert summary(stats) == (60, 0, 60, 0, {}, {"closed_early": 60})


def test_close_mid_chunked_body_is_closed_early(tmp_path):
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n"
    with RawServer(answer_each(response, close=True)) as server:
        stats = run_both(tmp_path, server.url, requests=60, concurrency=3)["fast"]
    assert summary(stats) == (60, 0, 60, 0, {}, {"closed_early": 60})


def test_interim_responses_are_skipped(tmp_path):
    response = (b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    with RawServer(answer_each(response)) as server:
        stats = run_both(tmp_path, server.url, requests=100, concurrency=2)["fast"]
    assert summary(stats) == (100, 100, 0, 300, {200: 100}, {})


@pytest.mark.parametrize("headers, connections", [
    (b"", 2),
    (b"Content-Length: 7\r\n", 2),
    (b"Transfer-Encoding: chunked\r\n", 2),
    (b"Content-Length: 7\r\nConnection: close\r\n", 100),
])
def test_head_response_framing_and_keep_alive(tmp_path, headers, connections):
    # A HEAD response ends with its head whatever it announces; the connection
    # is kept unless the server says close (2 workers: 2 connections).
    response = b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n"
    with RawServer(answer_each(response, close=b"close" in headers)) as server:
        stats = run_both(tmp_path, server.url, method="HEAD", requests=100, concurrency=2)["fast"]
        assert summary(stats) == (100, 100, 0, 0, {200: 100}, {})
        server.connections = 0
        run_engine(tmp_path, server.url, "fast", method="HEAD", requests=100, concurrency=2)
        assert server.connections == connections


def test_redirect_is_not_followed(tmp_path):
    # A real redirect (with a Location the client could follow): the server
    # must see only the requested path, and the 302 is reported as it came.
    response = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
    with RawServer(answer_each(response)) as server:
        stats = run_both(tmp_path, server.url, path="/r", requests=50, concurrency=2)["fast"]
        targets = Counter(head.split(b" ", 2)[1] for head in server.request_heads)
    assert summary(stats) == (50, 50, 0, 0, {302: 50}, {})
    assert targets == {b"/r": 100}  # 50 per engine, none to /elsewhere


def test_invalid_response_is_protocol_error(tmp_path):
    with RawServer(answer_each(b"HTTP/1.1 2x0 Nope\r\n\r\n")) as server:
        stats = run_both(tmp_path, server.url, requests=30, concurrency=3)["fast"]
    assert summary(stats) == (30, 0, 30, 0, {}, {"protocol_error": 30})


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",  # a Content-Length shorter than the body
    b"HTTP/1.1 204 No Content\r\n\r\nbody",  # a body where none is allowed
])
def test_bytes_after_a_response_fail_that_response_not_the_next(tmp_path, response):
    # Each response is followed by bytes that are no response: every request fails on its own
    # response (concurrency 1, so before the fix every other request was blamed for the one before).
    with RawServer(answer_each(response)) as server:
        stats = run_both(tmp_path, server.url, requests=40, concurrency=1)["fast"]
    assert summary(stats) == (40, 0, 40, 0, {}, {"protocol_error": 40})
    assert stats.error_samples["protocol_error"][0].startswith("bytes after the end of the response: ")


def test_a_response_started_unasked_leaves_the_answered_one_ok(tmp_path):
    # The start of a second response right after the first: the first stands; the fast engine
    # drops the connection (the next request gets a new one) rather than read the stray bytes as its answer.
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 2"
    with RawServer(answer_each(response)) as server:
        stats = run_both(tmp_path, server.url, requests=40, concurrency=1)["fast"]
        server.connections = 0
        run_engine(tmp_path, server.url, "fast", requests=40, concurrency=1)
        assert server.connections == 40
    assert summary(stats) == (40, 40, 0, 80, {200: 40}, {})


def test_connection_refused(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stats = run_both(tmp_path, f"http://127.0.0.1:{port}", requests=50, concurrency=5)["fast"]
    assert summary(stats) == (50, 0, 50, 0, {}, {"connect_refused": 50})


def test_unresolvable_host_is_dns(tmp_path):
    # .invalid never resolves (RFC 6761); the timeout bounds a slow resolver.
    stats = run_both(tmp_path, "http://no-such-host.invalid", timeout=3.0, requests=20, concurrency=4)["fast"]
    assert summary(stats) == (20, 0, 20, 0, {}, {"dns": 20})


def test_host_name_is_resolved(tmp_path, builtin_target):
    url = builtin_target.url.replace("127.0.0.1", "localhost")
    builtin_target.reset()
    stats = run_both(tmp_path, url, requests=100, concurrency=4)["fast"]
    assert summary(stats) == (100, 100, 0, 100 * 1024, {200: 100}, {})
    assert builtin_target.stats() == 200


def test_server_that_never_answers_is_read_timeout(tmp_path):
    async def silent(reader, writer, server: RawServer) -> None:
        await reader.read()  # hold the connection open until the client gives up

    with RawServer(silent) as server:
        results = run_both(tmp_path, server.url, timeout=0.5, requests=4, concurrency=2)
    assert summary(results["fast"]) == (4, 0, 4, 0, {}, {"read_timeout": 4})
    latency = results["fast"].latency
    assert 0.5e6 <= latency.min_us <= latency.max_us < 0.75e6  # the watchdog fires promptly


def test_idle_keep_alive_close_is_retried_once(tmp_path):
    # The server answers one request per connection but, unlike above, without
    # saying so: the second request on a connection finds it closed and is
    # retried on a new one, so nothing fails (both engines; RFC 9112 9.3.1).
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def one_then_close(reader, writer, server: RawServer) -> None:
        if await server.read_request(reader) is not None:
            writer.write(response)
            await writer.drain()
            await asyncio.sleep(0.01)

    # One worker: with more, aiohttp's shared pool may hand the retry another
    # stale connection, which makes its count racy (the fast engine always
    # retries on a new connection).
    with RawServer(one_then_close) as server:
        stats = run_both(tmp_path, server.url, requests=30, concurrency=1)["fast"]
        assert summary(stats) == (30, 30, 0, 60, {200: 30}, {})
        stats = run_engine(tmp_path, server.url, "fast", requests=40, concurrency=4)
        assert summary(stats) == (40, 40, 0, 80, {200: 40}, {})


def test_cancelled_request_leaves_a_usable_channel(tmp_path):
    # Requests 1 (connect path) and 2 (keep-alive path) of the first connection
    # are answered late; a worker cancelled while waiting (a second Ctrl-C)
    # must not leave its channel stuck on the half-answered connection.
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def slow_at_first(reader, writer, server: RawServer) -> None:
        number = server.connections
        answered = 0
        while await server.read_request(reader) is not None:
            if number == 1 or (number == 2 and answered == 1):
                await asyncio.sleep(5)
            writer.write(response)
            await writer.drain()
            answered += 1

    plan = build_plan(tmp_path, "http://127.0.0.1:9", "fast")
    request = plan.flow[0]

    async def main(url: str) -> tuple:
        engine = FastEngine(plan, url)
        channel = await engine.open_channel(0)
        async def send(seq: int) -> tuple[int, int]:
            return await channel.send(request, seq, 0)

        async def cancel_stuck(seq: int) -> None:
            stuck = asyncio.ensure_future(send(seq))
            await asyncio.sleep(0.2)
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck

        try:
            await cancel_stuck(0)  # while connecting-and-sending: connection 1
            assert await asyncio.wait_for(send(1), 2) == (200, 2)  # connection 2
            await cancel_stuck(2)  # a keep-alive request on connection 2
            return await asyncio.wait_for(send(3), 2)  # connection 3
        finally:
            await channel.aclose()
            await engine.aclose()

    with RawServer(slow_at_first) as server:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            assert runner.run(main(server.url)) == (200, 2)
        assert server.connections == 3


def test_request_bytes_on_the_wire(tmp_path):
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    with RawServer(answer_each(response)) as server:
        heads = {}
        for engine in ENGINES:
            server.request_heads.clear()
            run_engine(tmp_path, server.url + "/api", engine, method="POST", path="/caf\u00e9 x/{seq}?q=1",
                       body="hello", requests=3, concurrency=1)
            heads[engine] = list(server.request_heads)
    fast = heads["fast"]
    assert [h.split(b"\r\n", 1)[0] for h in fast] == [
        b"POST /api/caf%%C3%%A9%%20x/%d?q=1 HTTP/1.1" % n for n in range(3)
    ]
    assert [h.split(b"\r\n", 1)[0] for h in heads["aiohttp"]] == [h.split(b"\r\n", 1)[0] for h in fast]
    lines = fast[0].lower().split(b"\r\n")
    assert b"host: 127.0.0.1:%d" % server.port in lines
    assert b"user-agent: runner" in lines
    assert b"content-length: 5" in lines


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "GET"])
def test_bodiless_requests_send_the_same_head_on_both_engines(tmp_path, method):
    # Without a body, POST, PUT, PATCH and DELETE announce "Content-Length: 0"; GET and OPTIONS send none.
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    with RawServer(answer_each(response)) as server:
        heads = {}
        for engine in ENGINES:
            server.request_heads.clear()
            run_engine(tmp_path, server.url, engine, method=method, path="/x", requests=2, concurrency=1)
            heads[engine] = [sorted(line.lower() for line in head.split(b"\r\n")[1:] if line)
                             for head in server.request_heads]
    assert heads["fast"] == heads["aiohttp"]
    assert (b"content-length: 0" in heads["fast"][0]) == (method not in ("GET", "OPTIONS"))


def test_aiohttp_web_server_statuses(tmp_path):
    counter: Counter = Counter()

    async def handle(request: web.Request) -> web.StreamResponse:
        counter["all"] += 1
        if request.path.startswith("/stream"):
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(3):
                await response.write(b"a" * 1000)
            await response.write_eof()
            return response
        return web.Response(status=int(request.path.rsplit("/", 1)[1]), body=b"b" * 10)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    with ThreadedServer(app) as server:
        for path, expect in (("/stream", (200, 3000)), ("/s/201", (201, 10)), ("/s/503", (503, 10))):
            counter.clear()
            stats = run_both(tmp_path, server.url, path=path, requests=100, concurrency=4)["fast"]
            assert counter["all"] == 200
            assert stats.status_codes == {expect[0]: 100} and stats.bytes == 100 * expect[1]


# -- timeouts, size cap and captures agree ------------------------------------------


def captured_on(tmp_path: Path, url: str, engine: str, requests: int = 2, method: str = "GET", **fields) -> list:
    """Send on one channel; return [(status, bytes) or error class, captured] per request."""
    plan = build_plan(tmp_path, url, engine, method=method)
    plan = replace(plan, flow=tuple(replace(r, **fields) for r in plan.flow))
    engine_class, _ = select_engine(plan, url)

    async def main() -> list:
        instance = engine_class(plan, url)
        channel = await instance.open_channel(0)
        results = []
        try:
            for seq in range(requests):
                try:
                    result = await channel.send(plan.flow[0], seq, 0)
                except TransportError as exc:
                    result = exc.error_class
                results.append((result, channel.captured))
        finally:
            await channel.aclose()
            await instance.aclose()
        return results

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


@pytest.mark.parametrize("response, close, answer, body, headers", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello world!", False,
     (200, 12), b"hello wo", {"content-length": "12", "x-a": "1, 2"}),
    (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nETag: \"v1\"\r\n\r\n"
     b"5\r\nhello\r\n7\r\n world!\r\n0\r\n\r\n", False,
     (201, 12), b"hello wo", {"transfer-encoding": "chunked", "etag": '"v1"'}),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nuntil the end", True,
     (200, 13), b"until th", {"connection": "close", "content-type": "text/plain"}),
    (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
     b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nVary: a\r\nVary: b\r\n\r\nabc", False,
     (200, 3), b"abc", {"content-length": "3", "vary": "a, b"}),
])
def test_captures_agree(tmp_path, response, close, answer, body, headers):
    # Exactly the final response's headers, with lower-case names and repeats
    # joined: an interim 103's Link header must not leak into them.
    with RawServer(answer_each(response, close=close)) as server:
        results = {engine: captured_on(tmp_path, server.url, engine, capture_headers=True, capture_body=8)
                   for engine in ENGINES}
    assert results["fast"] == results["aiohttp"]
    assert results["fast"] == [(answer, (headers, body))] * 2


def test_body_too_large_agrees_for_every_framing(tmp_path):
    for response, close in (
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"a" * 3000, False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"bb8\r\n" + b"a" * 3000 + b"\r\n0\r\n\r\n",
         False),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"a" * 3000, True),
    ):
        with RawServer(answer_each(response, close=close)) as server:
            for limit, expected in ((2999, "body_too_large"), (3000, (200, 3000))):
                for engine in ENGINES:
                    results = captured_on(tmp_path, server.url, engine, max_response_bytes=limit)
                    assert results == [(expected, None)] * 2, (engine, limit, response[:40])


def test_read_timeout_is_silence_not_total(tmp_path):
    # 10 body bytes, one per 50 ms: never silent for 250 ms, so it completes.
    async def trickle(reader, writer, server: RawServer) -> None:
        while await server.read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            for _ in range(10):
                await asyncio.sleep(0.05)
                writer.write(b"x")
                await writer.drain()

    with RawServer(trickle) as server:
        for engine in ENGINES:
            results = captured_on(tmp_path, server.url, engine, read_timeout_s=0.25)
            assert results == [((200, 10), None)] * 2, engine
            results = captured_on(tmp_path, server.url, engine, requests=1, read_timeout_s=0.03)
            assert results == [("read_timeout", None)], engine


# -- engine selection --------------------------------------------------------------


def test_auto_selection(tmp_path):
    plan = build_plan(tmp_path, "http://127.0.0.1:9", "auto")
    engine_class, reason = select_engine(plan, "http://127.0.0.1:9")
    assert engine_class is FastEngine and "fast engine supports" in reason
    plan = build_plan(tmp_path, "https://example.invalid", "auto")
    engine_class, reason = select_engine(plan, "https://example.invalid")
    assert engine_class is FastEngine and "https on the fast engine" in reason
    plan = build_plan(tmp_path, "https://example.invalid", "aiohttp")
    assert select_engine(plan, "https://example.invalid")[0] is AiohttpEngine
    plan = build_plan(tmp_path, "https://example.invalid", "fast")
    assert select_engine(plan, "https://example.invalid")[0] is FastEngine
    with pytest.raises(FastEngineUnsupported, match="ftp"):
        FastEngine(plan, "ftp://example.invalid")


# -- flows: what a virtual user sends depends on what it received ----------------------------------

FLOW = """\
version: 1
name: differential-flow
target: {target}
engine: {engine}
vars: {{tenant: acme}}
flows:
  - name: journey
    once:
      - name: login
        method: POST
        path: /login
        form: {{user: "ann {{vu}}", tenant: "{{tenant}}"}}
        capture: {{token: {{json: $.token}}, session: {{cookie: sid}}}}
    steps:
      - name: list
        path: /list
        query: {{page: "{{iteration}}", q: "a b&c"}}
        headers: {{Authorization: "Bearer {{token}}"}}
        capture: {{first: {{json: "$.ids[0]"}}, etag: {{header: ETag}}, word: {{regex: 'w=(\\w+)'}}}}
      - name: add
        method: POST
        path: "/items/{{first}}"
        headers: {{If-Match: "{{etag}}", X-Word: "{{word}}"}}
        json: {{id: "{{first}}", note: "from {{session}}", tags: ["{{tenant}}", 2]}}
stages:
  - {{requests: 1, concurrency: 1}}
  - {{requests: 21, concurrency: 1}}
"""


def recording_app(seen: list) -> web.Application:
    """Answers each step of FLOW and records exactly what arrived (method, path, query, headers, body)."""
    async def record(request: web.Request) -> None:
        keep = ("authorization", "cookie", "if-match", "x-word", "content-type")
        headers = tuple(sorted((k.lower(), v) for k, v in request.headers.items() if k.lower() in keep))
        seen.append((request.method, request.path_qs, headers, await request.read()))

    async def login(request: web.Request) -> web.Response:
        await record(request)
        response = web.json_response({"token": "t-123"})
        response.set_cookie("sid", "s-9", path="/")
        response.set_cookie("theme", "dark", path="/")
        return response

    async def listing(request: web.Request) -> web.Response:
        await record(request)
        page = int(request.query["page"])
        return web.json_response({"ids": [40 + page, 7]}, headers={"ETag": f'"v{page}"'},
                                 text=None, dumps=lambda d: f'{{"ids": {d["ids"]}, "x": "w=word{page}"}}')

    async def add(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"ok": True}, status=201)

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_get("/list", listing)
    app.router.add_post("/items/{id}", add)
    return app


def test_flow_requests_arrive_identically_from_both_engines(tmp_path):
    received = {}
    for engine in ENGINES:
        seen: list = []
        with ThreadedServer(recording_app(seen)) as server:
            file = tmp_path / f"flow-{engine}.yaml"
            file.write_text(FLOW.format(target=server.url, engine=engine))
            plan = compile_scenario(load_scenario(file), file)
            totals, _ = run_plan(plan, server.url)
        assert totals.requests == 22 and totals.failed == 0 and totals.skipped == 0
        received[engine] = seen
    fast, reference = received["fast"], received["aiohttp"]
    assert len(fast) == 22 and fast == reference
    login, first_list, first_add = fast[0], fast[1], fast[2]
    assert login[0:2] == ("POST", "/login") and login[3] == b"user=ann+0&tenant=acme"
    assert ("content-type", "application/x-www-form-urlencoded") in login[2]
    # stage 1's budget ended iteration 0 after the login; the login is not repeated in stage 2
    assert [r[1] for r in fast].count("/login") == 1
    assert first_list[1] == "/list?page=1&q=a+b%26c" and ("authorization", "Bearer t-123") in first_list[2]
    assert ("cookie", "sid=s-9; theme=dark") in first_list[2]  # the user's jar, sent back
    assert first_add[1] == "/items/41"
    assert ("if-match", '"v1"') in first_add[2] and ("x-word", "word1") in first_add[2]
    assert first_add[3] == b'{"id":41,"note":"from s-9","tags":["acme",2]}'  # a captured number stays a number
    assert fast[-2][1] == "/items/50" and fast[-1][1].startswith("/list?page=11&")  # budget ends mid-iteration
