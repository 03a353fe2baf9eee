"""Validated :class:`Scenario` -> immutable :class:`Plan`.

Templates are split here, once: a path like ``/page/{seq}`` becomes a closure
that joins three pieces, so rendering a URL per request is a string concat,
not a parse. Scenario variables (``vars``) are substituted at this point too.
Secret references are resolved only after the split: a secret value is data,
so a ``{`` in it is sent as is and never read as a template field.

Credentials in the target URL (``http://user:password@host``) become an
``Authorization: Basic ...`` header here; the plan's URL has no userinfo, so
no engine and no report ever sees them.
"""

from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path
from typing import Callable

from schemas.scenario import ConcurrencyRamp, RateRamp, Scenario, Stage
from schemas.thresholds import AbortOnFail

from .checks import CHECK_BODY_LIMIT, compile_checks
from .errors import Problem, ScenarioError
from .secrets import (MIN_SECRET_LENGTH, SENSITIVE_HEADERS, basic_authorization, resolve, too_short,
                      url_credentials, url_secrets)
from .plan import BuiltinTargetPlan, PathRenderer, Plan, RequestPlan, StagePlan

#: A template field; ``${`` starts a secret reference, not a field (as the loader reads it).
_FIELD = re.compile(r"(?<!\$)\{([^{}]*)\}")


def _constant(path: str, seq: int, worker: int) -> str:
    return path


def _with_seq(before: str, after: str, seq: int, worker: int) -> str:
    return f"{before}{seq}{after}"


def _with_worker(before: str, after: str, seq: int, worker: int) -> str:
    return f"{before}{worker}{after}"


def _joined(pieces: tuple, seq: int, worker: int) -> str:
    values = (seq, worker)
    return "".join(p if isinstance(p, str) else str(values[p]) for p in pieces)


def _unchanged(text: str) -> str:
    return text


def compile_path(template: str, variables: dict[str, object],
                 literal: Callable[[str], str] = _unchanged) -> tuple[PathRenderer, bool]:
    """Return a renderer ``(seq, worker) -> path`` and whether the path is constant.

    ``literal`` maps each piece of literal text after the split (the compiler
    resolves secret references with it), so what it returns is never parsed.

    Renderers are ``functools.partial`` objects over module functions: as fast
    to call as closures, and picklable, so a plan can be shipped to worker
    processes. The loader has already checked that every field is ``seq``,
    ``worker`` or a key of ``variables``.
    """
    pieces: list[str | int] = []  # literal strings; 0 = seq, 1 = worker
    position = 0
    for match in _FIELD.finditer(template):
        pieces.append(literal(template[position:match.start()]))
        name = match.group(1)
        if name == "seq":
            pieces.append(0)
        elif name == "worker":
            pieces.append(1)
        else:
            pieces.append(str(variables[name]))
        position = match.end()
    pieces.append(literal(template[position:]))
    merged: list[str | int] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        elif piece != "":
            merged.append(piece)
    dynamic = [p for p in merged if isinstance(p, int)]
    if not dynamic:
        return partial(_constant, "".join(str(p) for p in merged)), True
    if len(merged) <= 3 and len(dynamic) == 1:
        before = merged[0] if isinstance(merged[0], str) else ""
        after = merged[-1] if isinstance(merged[-1], str) else ""
        return partial(_with_seq if dynamic[0] == 0 else _with_worker, before, after), False
    return partial(_joined, tuple(merged)), False


def compile_scenario(scenario: Scenario, source: str | Path = "<scenario>") -> Plan:
    """Make every per-run decision now, so the request loop only executes."""
    secrets: set[str] = set()
    base_dir = Path(source).parent if source != "<scenario>" else None
    target_url, authorization = _split_target(scenario.target, secrets)
    default_headers = dict(scenario.defaults.headers)
    flow = []
    for index, request in enumerate(scenario.flow):
        headers = {name: resolve(value, secrets, base_dir)
                   for name, value in {**default_headers, **request.headers}.items()}
        if authorization and not any(name.lower() == "authorization" for name in headers):
            headers["Authorization"] = authorization
        secrets.update(value for name, value in headers.items() if name.lower() in SENSITIVE_HEADERS)
        body = resolve(request.body, secrets, base_dir) if request.body is not None else None
        render, static = compile_path(request.path, scenario.vars, partial(resolve, found=secrets, base_dir=base_dir))
        checks, has_status_check, needs_headers, needs_body = compile_checks(request.checks or scenario.defaults.checks)
        flow.append(RequestPlan(
            index=index,
            name=request.display_name(),
            method=request.method,
            path_template=request.path,
            render_path=render,
            headers=tuple(headers.items()),
            body=body.encode() if body is not None else None,
            timeout_s=request.timeout or scenario.defaults.timeout,
            is_static=static,
            connect_timeout_s=scenario.defaults.connect_timeout,
            read_timeout_s=scenario.defaults.read_timeout,
            max_response_bytes=scenario.defaults.max_response_size,
            capture_headers=needs_headers,
            capture_body=CHECK_BODY_LIMIT if needs_body else 0,
            checks=checks,
            has_status_check=has_status_check,
        ))
    _refuse_short_secrets(secrets, source)
    stages = tuple(_stage_plan(i, stage) for i, stage in enumerate(scenario.stages))
    builtin = scenario.builtin
    return Plan(
        scenario_name=scenario.name,
        source=str(source),
        target_url=target_url,
        builtin=BuiltinTargetPlan(builtin.body_size, builtin.delay.min, builtin.delay.max, builtin.seed,
                                  tuple(builtin.faults.items())),
        engine=scenario.engine,
        flow=tuple(flow),
        stages=stages,
        outputs=tuple(scenario.outputs.items()),
        workers=(os.cpu_count() or 1) if scenario.workers == "auto" else scenario.workers,
        thresholds=tuple(scenario.thresholds),
        threshold_sources=tuple(scenario.source_of(("thresholds", i), str(source))
                                for i in range(len(scenario.thresholds))),
        abort_on_fail=bool(scenario.abort_on_fail),
        secrets=tuple(sorted(secrets)),
        abort_delay_s=scenario.abort_on_fail.delay if isinstance(scenario.abort_on_fail, AbortOnFail) else 0.0,
        interval_s=scenario.interval,
    )


def _split_target(target: str, secrets: set[str]) -> tuple[str | None, str | None]:
    """``(URL without userinfo or None for builtin, Basic Authorization value or None)``.

    The password, ``user:password`` and its base64 join ``secrets``. This is
    the one place credentials leave the URL, whether they came from the file
    or from ``--target`` (the loader applies that before validation).
    """
    if target == "builtin":
        return None, None
    url, user, password = url_credentials(target)
    if user is None:
        return url, None
    secrets.update(url_secrets(target))
    return url, basic_authorization(user, password)


def _refuse_short_secrets(secrets: set[str], source: str | Path) -> None:
    """The loader names the field of a too-short secret; this catches plans built without it."""
    if too_short(secrets):
        raise ScenarioError([Problem(str(source), None, None, "", f"a secret value (from ${{env:...}}, "
                                     f"${{file:...}}, a credential header or the target URL) is shorter than "
                                     f"{MIN_SECRET_LENGTH} characters and could not be scrubbed from reports")])


#: In-flight cap of an open-model stage that does not set max_in_flight.
DEFAULT_MAX_IN_FLIGHT = 1000


def _stage_plan(index: int, stage: Stage) -> StagePlan:
    common = dict(index=index, name=stage.name or f"stage-{index + 1}", requests=stage.requests,
                  duration_s=stage.duration, grace_s=stage.grace)
    if stage.rate is not None:
        start, end = (stage.rate.start, stage.rate.end) if isinstance(stage.rate, RateRamp) else (stage.rate,) * 2
        return StagePlan(model="open", rate_start=start, rate_end=end,
                         max_in_flight=stage.max_in_flight or DEFAULT_MAX_IN_FLIGHT, **common)
    concurrency = stage.concurrency
    start, end = ((concurrency.start, concurrency.end) if isinstance(concurrency, ConcurrencyRamp)
                  else (concurrency, concurrency))
    return StagePlan(model="closed", concurrency_start=start, concurrency_end=end, **common)
