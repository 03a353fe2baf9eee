"""Shared fixtures: real HTTP servers on loopback, never mocks.

The runner under test owns the main thread's event loop (as it does in
production), so test servers run either in a child process (the built-in
target) or in a thread with an event loop of its own (aiohttp.web).

Every runner result a test produces is checked against the published
``schemas/result.schema.json`` after the test, without the test asking for
it: result dicts built in this process (``RunResult.to_dict``) and JSON
result files written anywhere under the session's temporary directories
(also by child processes). A test that writes a hand-made, deliberately
invalid result file says so with ``@pytest.mark.hand_made_results``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
import time
from collections import Counter
from pathlib import Path

import jsonschema
import orjson
import pytest
from aiohttp import web

from runner.target.process import BuiltinTarget
from runner.target.server import TargetConfig

REPO = Path(__file__).resolve().parent.parent
RESULT_SCHEMA = REPO / "schemas" / "result.schema.json"


class ThreadedServer:
    """An aiohttp.web app served on 127.0.0.1 from a background thread (https with ``ssl_context``)."""

    def __init__(self, app: web.Application, ssl_context=None, backlog: int = 2048):
        self.app = app
        self.port = 0
        self.ssl_context = ssl_context
        self.backlog = backlog
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=self.backlog, ssl_context=self.ssl_context)
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


# -- every result checked against the published schema ---------------------------


@functools.cache
def result_validator() -> jsonschema.protocols.Validator:
    """A validator for the committed result schema (itself checked to be a valid JSON Schema)."""
    schema = orjson.loads(RESULT_SCHEMA.read_bytes())
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator_class.check_schema(schema)
    return validator_class(schema)


def _specific(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For "not valid under any of" an ``anyOf`` (an object-or-null field, say), the errors
    inside the branch of the value's own type, which name the field that is wrong."""
    if not error.context:
        return [error]
    inside = [e for e in error.context if e.relative_path or e.validator != "type"]
    return [specific for e in inside for specific in _specific(e)] or [error]


def schema_errors(document: object) -> list[str]:
    """Every way ``document`` differs from the published result schema, as "json/path: message"."""
    errors = [specific for error in result_validator().iter_errors(document) for specific in _specific(error)]
    errors.sort(key=lambda error: list(map(str, error.absolute_path)))
    return [f"{'/'.join(map(str, error.absolute_path)) or '(top level)'}: {error.message}" for error in errors]


def looks_like_result(document: object) -> bool:
    """A JSON object carrying any top-level key that only runner results have.

    Deliberately loose: a result missing most of its fields must still be
    recognised (and then fail validation), while other JSON a test writes
    (schemas, a plugin reporter's output) is left alone.
    """
    return isinstance(document, dict) and bool({"format_version", "totals", "stages"} & document.keys())


class ResultWatch:
    """Collects the runner results of a test session so that none escapes the schema check.

    Two sources: result dicts built in this process (snapshotted as the JSON
    reporter would write them, so later changes by the test do not count),
    and ``*.json`` files under ``root`` that are new or changed since the
    last look (this catches results written by child processes too).
    """

    def __init__(self, root: Path):
        self.root = root
        self.documents: list[bytes] = []
        self._seen: dict[Path, tuple[int, int]] = {}

    def capture(self, document: dict) -> None:
        from runner.reporters.json import JsonReporter

        self.documents.append(JsonReporter().render(document))

    def new_files(self) -> list[Path]:
        found = []
        for directory, _, names in os.walk(self.root):
            for name in names:
                path = Path(directory, name)
                if not name.endswith(".json") or not path.is_file():
                    continue
                status = path.stat()
                stamp = (status.st_mtime_ns, status.st_size)
                if self._seen.get(path) != stamp:
                    self._seen[path] = stamp
                    found.append(path)
        return sorted(found)

    def problems(self, *, check_files: bool = True) -> list[str]:
        """Schema errors of everything collected since the last call, which is then forgotten."""
        problems = [f"result dict #{number}: {error}"
                    for number, document in enumerate(self.documents, 1)
                    for error in schema_errors(orjson.loads(document))]
        self.documents.clear()
        for path in self.new_files():
            if not check_files:
                continue
            try:
                document = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                continue  # not JSON at all: not a result (a truncated result would be caught by its own test)
            if looks_like_result(document):
                problems += [f"{path}: {error}" for error in schema_errors(document)]
        return problems


@pytest.fixture(scope="session", autouse=True)
def result_watch(tmp_path_factory):
    """Installed before any other fixture, so results built by module-scoped fixtures are caught too."""
    from runner.result import RunResult

    watch = ResultWatch(tmp_path_factory.getbasetemp())
    unwatched = RunResult.to_dict

    @functools.wraps(unwatched)
    def watched_to_dict(self):
        document = unwatched(self)
        watch.capture(document)
        return document

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunResult, "to_dict", watched_to_dict)
        yield watch


@pytest.fixture(autouse=True)
def results_match_published_schema(request, result_watch):
    """After each test: every result it produced must validate against schemas/result.schema.json."""
    yield
    hand_made = request.node.get_closest_marker("hand_made_results") is not None
    problems = result_watch.problems(check_files=not hand_made)
    if problems:
        pytest.fail("runner wrote results that schemas/result.schema.json does not describe "
                    "(fix runner or schemas/result.py + 'runner schema'):\n  " + "\n  ".join(problems[:20]),
                    pytrace=False)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "hand_made_results: the test writes result files that are not runner output "
                   "(they are not schema-checked; result dicts runner builds still are)")


#: Two parts (processes or shards) and two stages: the first stage's 3 requests are slow and split 2 + 1, so
#: one part ends it 0.6 s before the other; the open stage after it must still start together in both.
STAGES_MEET = """\
version: 1
name: stages-start-together
target: {target}
workers: {workers}
flow:
  - name: step
    path: /{{vu}}/{{seq}}
stages:
  - name: uneven
    requests: 3
    concurrency: 2
  - name: open
    rate: 40/s
    duration: 1s
    max_in_flight: 20
"""


@contextlib.contextmanager
def slow_first_stage_server():
    """A server whose first 3 requests take 0.6 s each; yields (server, arrivals as (vu, monotonic time))."""
    arrivals: list[tuple[int, float]] = []

    async def handle(request: web.Request) -> web.Response:
        arrivals.append((int(request.match_info["vu"]), time.monotonic()))
        if len(arrivals) <= 3:
            await asyncio.sleep(0.6)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{vu}/{seq}", handle)
    with ThreadedServer(app) as server:
        yield server, arrivals


def assert_stages_met(result: dict, arrivals: list[tuple[int, float]]) -> None:
    """Nobody began the open stage before the slow part ended the first, and both parts began it together."""
    assert result["totals"]["requests"] == len(arrivals) == 3 + 40
    slow_done = arrivals[2][1] + 0.6
    later = arrivals[3:]
    early = slow_done - min(at for _, at in later)
    assert early <= 0.05, f"a part began the open stage {early:.3f} s before the other ended the first"
    first = {parity: min(at for vu, at in later if vu % 2 == parity) for parity in (0, 1)}  # {vu} = local * 2 + part
    assert abs(first[0] - first[1]) < 0.2, f"the open stage began {abs(first[0] - first[1]):.3f} s apart"
