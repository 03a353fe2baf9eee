"""The ``runner`` command: flags, files, signals and exit codes, and nothing else.

Every load-test decision lives in the library modules; this shell parses the
command line, layers overrides onto the scenario (file < ``--set`` <
``--target``), checks output paths before the run, and maps outcomes to the
documented exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from pathlib import Path
from typing import Callable, Iterator

from . import __version__
from .errors import RunnerError, UsageError, install_hint

EXIT_OK = 0
EXIT_THRESHOLDS_FAILED = 1
EXIT_USAGE = 2
EXIT_TARGET_UNREACHABLE = 3
EXIT_ENVIRONMENT = 4
EXIT_SHARD_LOST = 5
EXIT_INTERNAL = 70
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

EXIT_CODES_HELP = """exit codes:
  0    the run completed (and every threshold passed)
  1    a threshold failed, abort_on_fail stopped the run, or compare found a regression
  2    usage or scenario error (bad flag, invalid YAML, unwritable output path)
  3    no request got an HTTP response (every one failed: refused, reset, timed out...)
  4    this machine cannot run the scenario as asked (e.g. open-file limit too low)
  5    a shard of a distributed run was lost (its worker died or left); the numbers are partial
  70   internal error in runner (a bug: please report it)
  130  interrupted by SIGINT (Ctrl-C); reports are still written
  143  interrupted by SIGTERM; reports are still written
"""

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep its wording short
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="runner",
        description="Declarative HTTP load tests: a YAML scenario in, truthful numbers and CI artifacts out.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a scenario", epilog=EXIT_CODES_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("--target", help="base URL that replaces the scenario's target (or 'builtin')")
    run.add_argument("--out", action="append", default=[], metavar="NAME=PATH",
                     help="add a reporter writing to PATH (repeatable); NAME alone writes to stdout")
    run.add_argument("--set", action="append", default=[], metavar="dotted.key=value", dest="overrides",
                     help="override a scenario field, e.g. --set stages.0.requests=5000 (repeatable)")
    run.add_argument("--quiet", action="store_true", help="no live view on stderr and no console summary")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     help="serve the running test's metrics for Prometheus at http://HOST:PORT/metrics "
                          "until the reports are written (0: a free port, printed on stderr; "
                          f"needs {install_hint('metrics')})")
    run.add_argument("--metrics-host", metavar="HOST", default=None,
                     help="the address --metrics-port listens on (default 127.0.0.1; 0.0.0.0 or :: lets a "
                          "Prometheus on another host scrape it)")
    run.add_argument("--cluster", metavar="ADDRESS",
                     help="run sharded over the Dask scheduler at ADDRESS, e.g. tcp://scheduler.example:8786 "
                          "(also RUNNER_CLUSTER or 'cluster:' in the scenario; "
                          f"needs {install_hint('cluster')})")
    run.add_argument("--shards", type=int, metavar="N",
                     help="with a cluster: how many shards (default: one per Dask worker)")
    run.add_argument("--dry-run", action="store_true",
                     help="validate, compile and print what the run would send; send nothing (= runner plan)")

    plan = commands.add_parser("plan", help="print what a run would send, per stage, without sending anything")
    plan.add_argument("scenario", help="scenario YAML file")
    plan.add_argument("--target", help="base URL that replaces the scenario's target (or 'builtin')")
    plan.add_argument("--out", action="append", default=[], metavar="NAME=PATH",
                      help="a reporter the run would add (checked and listed; nothing is written)")
    plan.add_argument("--set", action="append", default=[], metavar="dotted.key=value", dest="overrides",
                      help="override a scenario field, as for run (repeatable)")
    plan.add_argument("--shards", type=int, metavar="N",
                      help="show the run as N shards on a Dask cluster, each shard's share per stage")

    report = commands.add_parser("report", help="re-render a saved JSON result with any reporters")
    report.add_argument("result", help="a result written by --out json=PATH")
    report.add_argument("--out", action="append", default=[], metavar="NAME=PATH",
                        help="reporter and destination (repeatable); default: console on stdout")

    compare = commands.add_parser("compare", help="compare a result with a baseline; exit 1 on a regression")
    compare.add_argument("baseline", help="baseline result JSON")
    compare.add_argument("current", help="current result JSON")
    compare.add_argument("--max-regression", action="append", default=[], metavar="METRIC=LIMIT",
                         help="e.g. p95=10%%, rps=5%%, error_rate=1%%, 'p95(ttfb)=10%%' for a timing phase "
                              "(repeatable; default p95, p99, error_rate and rps limits)")

    validate = commands.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("scenarios", nargs="+")
    validate.add_argument("--set", action="append", default=[], metavar="dotted.key=value", dest="overrides")

    schema = commands.add_parser("schema", help="write the JSON Schema files of scenarios and results")
    schema.add_argument("--dir", default="schemas", help="output directory (default: schemas)")

    serve = commands.add_parser("serve", help="run the built-in target server in the foreground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--body-size", type=int, default=1024)
    serve.add_argument("--delay-min", type=float, default=0.0, help="seconds")
    serve.add_argument("--delay-max", type=float, default=0.0, help="seconds")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--tls", action="store_true",
                       help="serve https with a throwaway certificate for 127.0.0.1, ::1 and localhost; "
                            "prints the CA file to trust (curl --cacert FILE), removed on exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler = {"run": _cmd_run, "validate": _cmd_validate, "schema": _cmd_schema, "serve": _cmd_serve,
                   "report": _cmd_report, "compare": _cmd_compare, "plan": _cmd_plan}
        return handler[args.command](args)
    except RunnerError as exc:
        trace = getattr(exc, "trace", None)  # a worker process's own traceback (see runner.launch.WorkerFailed)
        if trace:
            print(trace, file=sys.stderr, end="" if trace.endswith("\n") else "\n")
        print(f"runner: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except Exception:
        traceback.print_exc()
        print("runner: internal error (this is a bug in runner; please report it with the trace above)",
              file=sys.stderr)
        return EXIT_INTERNAL


def _cmd_plan(args: argparse.Namespace) -> int:
    """``runner plan`` / ``runner run --dry-run``: load, compile, print; no socket, no built-in target."""
    from runner.reporters.base import available_reporters

    from .cluster import cluster_address
    from .compile import compile_scenario
    from .describe import describe
    from .loader import load_scenario
    from .output import Output, combine, parse_out
    from .secrets import redact_text

    known = set(available_reporters())
    scenario = load_scenario(args.scenario, overrides=args.overrides, target=args.target, known_reporters=known)
    plan = compile_scenario(scenario, args.scenario)
    outputs = combine([Output(n, p) for n, p in plan.outputs], [parse_out(item, known) for item in args.out])
    shards = args.shards
    if shards is not None and shards < 1:
        raise UsageError(f"--shards must be at least 1, not {shards}")
    cluster = cluster_address(plan, getattr(args, "cluster", None))
    text = describe(plan, tuple((output.reporter, output.path) for output in outputs), shards=shards,
                    cluster=cluster)
    print(redact_text(text, plan.secrets), end="", flush=True)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _cmd_plan(args)
    from runner.reporters.base import available_reporters

    from .compile import compile_scenario
    from .launch import execute
    from .loader import load_scenario
    from .output import Output, check_writable, combine, parse_out, scrub_stderr, write_atomic
    from .secrets import redact

    reporters = available_reporters()
    known = set(reporters)
    scenario = load_scenario(args.scenario, overrides=args.overrides, target=args.target, known_reporters=known)
    plan = compile_scenario(scenario, args.scenario)
    scrub_stderr(plan.secrets)  # progress, errors and tracebacks from here on
    outputs = combine([Output(n, p) for n, p in plan.outputs], [parse_out(item, known) for item in args.out])
    if not args.quiet and not any(o.reporter == "console" and o.path == "-" for o in outputs):
        outputs.insert(0, Output("console", "-"))
    for output in outputs:
        check_writable(output)

    instances = {output: reporters[output.reporter]() for output in outputs}
    listeners = [r for r in instances.values() if callable(getattr(r, "interval", None))]
    consumers = _snapshot_consumers(args, plan, listeners)
    with _watching(consumers, announce=not args.quiet) as on_snapshot:
        result = execute(plan, on_snapshot=on_snapshot, cluster=args.cluster, shards=args.shards,
                         on_lost=_each(consumers, "mark_lost"), on_shards=_each(consumers, "expect_sources"))
        _run_over(consumers)  # the live view leaves the terminal; the metrics endpoint serves on until the end
        document = result.to_dict()
        for output, reporter in instances.items():
            write_atomic(output.path, redact(reporter.render(document), plan.secrets))
            if output.path != "-" and not args.quiet:
                print(f"wrote {output.reporter} report to {output.path}", file=sys.stderr)
    return exit_code_for(document)


def _snapshot_consumers(args: argparse.Namespace, plan, listeners: list) -> list:
    """Everything that watches a run, each fed the run's interval snapshots through ``snapshot(snap)``.

    One list, so a new watcher is one more entry here: the metrics endpoint
    (``--metrics-port``; first, so a port that is taken fails the command
    before anything is drawn), the live view on stderr unless ``--quiet``,
    and the reporters that listen to intervals.
    """
    from .liveview import LiveView
    from .progress import IntervalFeed

    consumers: list = []
    if args.metrics_host is not None and args.metrics_port is None:
        raise UsageError("--metrics-host needs --metrics-port")
    if args.metrics_port is not None:
        from .metrics_endpoint import LOOPBACK, MetricsEndpoint

        consumers.append(MetricsEndpoint(plan, args.metrics_port, args.metrics_host or LOOPBACK))
    if not args.quiet:
        consumers.append(LiveView(plan))
    if listeners:
        consumers.append(IntervalFeed(listeners))
    return consumers


def _each(consumers: list, method: str):
    """One callback that calls ``method`` on every consumer that has it (lost shards, the shard count)."""
    targets = [getattr(consumer, method) for consumer in consumers if callable(getattr(consumer, method, None))]

    def call(value) -> None:
        for target in targets:
            target(value)

    return call


@contextlib.contextmanager
def _watching(consumers: list, announce: bool = False) -> Iterator:
    """Start the consumers that have ``start``, yield one snapshot callback for all, then end them all.

    They end (``finish``, then ``stop``) however the command ends, so a live
    view always gives the terminal back before an error is printed, and a
    consumer that fails to start stops the ones started before it. With
    ``announce``, a consumer with a ``url`` (the metrics endpoint) says where
    it listens, which matters with port 0.
    """
    started = []
    try:
        for consumer in consumers:
            if callable(getattr(consumer, "start", None)):
                consumer.start()
            started.append(consumer)
            url = getattr(consumer, "url", None)
            if announce and isinstance(url, str):
                print(f"metrics on {url}", file=sys.stderr, flush=True)
        yield _fan_out(started) if started else None
    finally:
        _run_over(started)
        _call_all(started, "stop")


def _run_over(consumers: list) -> None:
    """The run has ended: consumers with ``finish`` (the live view) take it now, before any report is printed."""
    _call_all(consumers, "finish")


def _call_all(consumers: list, method: str) -> None:
    """Call ``method`` on each consumer that has it, last started first; one failing must not hide the rest
    (nor the run's outcome and reports)."""
    for consumer in reversed(consumers):
        if callable(getattr(consumer, method, None)):
            try:
                getattr(consumer, method)()
            except Exception:
                traceback.print_exc()


def _fan_out(consumers: list) -> Callable:
    """One snapshot callback for every consumer; runs on the load's event loop or a collector thread."""
    feeds = [consumer.snapshot for consumer in consumers]

    def notify(snapshot) -> None:
        for feed in feeds:
            try:
                feed(snapshot)
            except Exception:  # a watcher's bug must not stop the load test
                pass

    return notify


def exit_code_for(document: dict) -> int:
    """Which outcome wins when several apply: interrupted, a lost shard, no HTTP response at all, thresholds.

    "No response at all" is judged by status codes alone: a target that
    resets, hangs up on or times out every request is as unusable as one
    that refuses connections, whatever the error class.
    """
    if document["interrupted"]:
        return EXIT_SIGTERM if document["interrupt_signal"] == "SIGTERM" else EXIT_SIGINT
    if any(shard.get("status") == "lost" for shard in document.get("shards") or ()):
        return EXIT_SHARD_LOST
    totals = document["totals"]
    if totals["requests"] and not totals["status_codes"]:
        return EXIT_TARGET_UNREACHABLE
    if not document.get("passed", True):
        return EXIT_THRESHOLDS_FAILED
    return EXIT_OK


def _load_result(path: str) -> dict:
    import orjson

    try:
        document = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found")
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable JSON result ({exc})")
    if not isinstance(document, dict) or "totals" not in document or "stages" not in document:
        raise UsageError(f"{path}: not a runner result (no 'totals' and 'stages')")
    return document


def _cmd_report(args: argparse.Namespace) -> int:
    from runner.reporters.base import available_reporters

    from .output import check_writable, parse_out, write_atomic

    reporters = available_reporters()
    document = _load_result(args.result)
    outputs = [parse_out(item, set(reporters)) for item in args.out] or [parse_out("console", set(reporters))]
    for output in outputs:
        check_writable(output)
    for output in outputs:
        write_atomic(output.path, reporters[output.reporter]().render(document))
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import DEFAULT_LIMITS, compare, parse_limit, render_comparison

    baseline, current = _load_result(args.baseline), _load_result(args.current)
    try:
        limits = dict(parse_limit(item) for item in args.max_regression) or dict(DEFAULT_LIMITS)
    except ValueError as exc:
        raise UsageError(f"--max-regression: {exc}")
    comparison = compare(baseline, current, limits)
    print(render_comparison(comparison))
    return EXIT_THRESHOLDS_FAILED if comparison.regressed else EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from runner.reporters.base import available_reporters

    from .compile import compile_scenario
    from .loader import load_scenario

    known = set(available_reporters())
    failed = 0
    for path in args.scenarios:
        try:
            scenario = load_scenario(path, overrides=args.overrides, known_reporters=known)
            plan = compile_scenario(scenario, path)  # all that run checks before sending, without servers or DNS
            _check_engine_fits(plan, scenario.source_of(("engine",), path))
        except UsageError as exc:
            failed += 1
            print(exc, file=sys.stderr)
        else:
            print(f"{path}: ok")
    return EXIT_USAGE if failed else EXIT_OK


def _check_engine_fits(plan, where: str) -> None:
    """``engine: fast`` with a target it cannot speak: run refuses that when it builds the engine; validate says so."""
    from .engines.fast import unsupported_reason

    reason = unsupported_reason(plan, None) if plan.engine == "fast" else None
    if reason is not None:
        raise UsageError(f"{where}: engine: the fast engine does not support {reason}; "
                         "use 'engine: aiohttp' or 'engine: auto'")


def _cmd_schema(args: argparse.Namespace) -> int:
    from runner.schemas.export import write_schemas

    for path in write_schemas(Path(args.dir)):
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from .target.server import TargetConfig, run_server, server_tls_context

    if args.delay_max < args.delay_min:
        raise UsageError("--delay-max must be >= --delay-min")
    config = TargetConfig(body_size=args.body_size, delay_min_s=args.delay_min,
                          delay_max_s=args.delay_max, seed=args.seed, tls=args.tls)
    certificate = None
    if args.tls:
        from .target.certificate import ThrowawayCertificate

        certificate = ThrowawayCertificate()

    def listening(host: str, port: int) -> None:
        # Printed once bound, so --port 0 shows the port it picked.
        shown = f"[{host}]" if ":" in host else host
        print(f"built-in target on {'https' if args.tls else 'http'}://{shown}:{port}/ (Ctrl-C to stop)",
              file=sys.stderr)
        if certificate is not None:
            print(f"CA certificate: {certificate.ca_file} (trust only it: curl --cacert {certificate.ca_file}; "
                  "removed on exit)", file=sys.stderr)
        sys.stderr.flush()

    try:
        tls = server_tls_context(certificate.cert_file, certificate.key_file) if certificate is not None else None
        run_server(args.host, args.port, config, announce=False, tls=tls, on_listening=listening)
    finally:
        if certificate is not None:
            certificate.remove()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
