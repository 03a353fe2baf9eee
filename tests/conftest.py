"""Shared fixtures: real HTTP servers on loopback, never mocks.

The runner under test owns the main thread's event loop (as it does in
production), so test servers run either in a child process (the built-in
target) or in a thread with an event loop of its own (aiohttp.web).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from runner.target.process import BuiltinTarget
from runner.target.server import TargetConfig

REPO = Path(__file__).resolve().parent.parent


class ThreadedServer:
    """An aiohttp.web app served on 127.0.0.1 from a background thread."""

    def __init__(self, app: web.Application):
        self.app = app
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=2048)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> "ThreadedServer":
        self._thread.start()
        assert self._ready.wait(10), "test server did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def counting_app(counter: Counter) -> web.Application:
    """Counts every request by path; ``/status/N`` answers N, anything else 200."""

    async def handle(request: web.Request) -> web.Response:
        counter[request.path] += 1
        counter["__all__"] += 1
        if request.path.startswith("/status/"):
            return web.Response(status=int(request.path.rsplit("/", 1)[1]), text="status")
        return web.Response(text="hello from the test server")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
def counting_server():
    counter: Counter = Counter()
    with ThreadedServer(counting_app(counter)) as server:
        server.counter = counter
        yield server


@pytest.fixture(scope="session")
def builtin_target():
    with BuiltinTarget(TargetConfig()) as target:
        yield target


def run_plan(plan, url: str):
    """Run ``plan`` on the engine it selects, through the real Executor, on uvloop.

    Returns the merged totals and the summed stage durations, after checking
    that every request was counted exactly once.
    """
    import uvloop

    from runner.engines import select_engine
    from runner.executor import Executor
    from runner.metrics.recorder import RequestStats

    engine_class, _ = select_engine(plan, url)

    async def main():
        engine = engine_class(plan, url)
        try:
            return await Executor(plan, engine).run()
        finally:
            await engine.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        outcomes = runner.run(main())
    totals = RequestStats.merged([stats for outcome in outcomes for stats in outcome.stats])
    assert totals.requests == totals.ok + totals.failed
    assert totals.requests == sum(totals.status_codes.values()) + sum(totals.errors.values())
    return totals, sum(outcome.duration_s for outcome in outcomes)


def write_scenario(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
