"""Validated :class:`Scenario` -> immutable :class:`Plan`.

Templates are split here, once (:mod:`runner.templates`): a path like
``/page/{seq}`` becomes literal pieces and field renderers, so rendering a
request is a join, not a parse. Scenario variables (``vars``) and secret
references are substituted at this point too; JSON and form bodies are
serialised around their templated values; captures become extractors.
Every request step of every flow gets one index in ``Plan.flow``, which is
what metrics are kept by. Secret references are resolved only after the
split: a secret value is data, so a ``{`` in it is sent as is and never read
as a template field.

Credentials in the target URL (``http://user:password@host``) become an
``Authorization: Basic ...`` header here; the plan's URL has no userinfo, so
no engine and no report ever sees them.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from urllib.parse import quote_plus

from runner.schemas.scenario import ConcurrencyRamp, DelayRange, RateRamp, Scenario, Stage, TlsSettings
from runner.schemas.thresholds import AbortOnFail

from .captures import compile_capture
from .checks import CHECK_BODY_LIMIT, compile_checks
from .plan import FlowPlan, Plan, RequestPlan, StagePlan, ThinkPlan, TlsPlan
from .target.config import TargetConfig
from .errors import Problem, ScenarioError
from .secrets import (MIN_SECRET_LENGTH, SENSITIVE_HEADERS, basic_authorization, too_short, url_credentials,
                      url_secrets)
from .templates import Template, compile_json, compile_template, fields_of, merge_literals
from .tlscheck import resolve_tls_path

_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"


def compile_scenario(scenario: Scenario, source: str | Path = "<scenario>", *, load_data: bool = True) -> Plan:
    """Make every per-run decision now, so the request loop only executes.

    ``load_data=False`` skips reading data files (for callers that only
    describe a plan); templates are still compiled against their columns.
    """
    secrets: set[str] = set()
    base_dir = Path(source).parent if source != "<scenario>" else None
    tables = _data_tables(scenario, base_dir) if load_data else ()
    target_url, authorization = _split_target(scenario.target, secrets)
    context = _Context(scenario, secrets, base_dir, authorization)
    flows = []
    for flow_index, flow in enumerate(scenario.all_flows()):
        once = tuple(context.step(step, flow_index) for step in flow.once)
        steps = tuple(context.step(step, flow_index) for step in flow.steps)
        used = context.tables_used(flow)
        per_iteration = tuple(i for i, (name, spec) in enumerate(scenario.data.items())
                              if name in used and spec.per == "iteration")
        per_user = tuple(i for i, (name, spec) in enumerate(scenario.data.items())
                         if name in used and spec.per == "vu")
        flows.append(FlowPlan(flow_index, flow.name, flow.weight, once, steps, per_iteration, per_user))
    _refuse_short_secrets(secrets, source)
    stages = tuple(_stage_plan(i, stage) for i, stage in enumerate(scenario.stages))
    builtin = scenario.builtin
    return Plan(
        scenario_name=scenario.name,
        source=str(source),
        target_url=target_url,
        builtin=TargetConfig(body_size=builtin.body_size, delay_min_s=builtin.delay.min,
                             delay_max_s=builtin.delay.max, seed=builtin.seed, faults=tuple(builtin.faults.items()),
                             tls=builtin.tls),
        engine=scenario.engine,
        flow=tuple(context.requests),
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
        flows=tuple(flows),
        data=tables,
        seed=builtin.seed,
        cluster=scenario.cluster,
    )


def _data_tables(scenario: Scenario, base_dir: Path | None) -> tuple:
    """The scenario's data tables: as the loader read them, or read now for a scenario built in code."""
    from .data import DataFileError, load_table
    from .errors import UsageError

    tables = []
    for name, spec in scenario.data.items():
        if name in scenario._tables:
            tables.append(scenario._tables[name])
            continue
        try:
            tables.append(load_table(name, spec, base_dir))
        except DataFileError as exc:  # the loader checks files first; this is a file changed since
            raise UsageError(str(exc)) from None
    return tuple(tables)


class _Context:
    """What compiling one step needs from the scenario; collects every request step in order."""

    def __init__(self, scenario: Scenario, secrets: set[str], base_dir: Path | None, authorization: str | None):
        self.scenario = scenario
        self.authorization = authorization  # from credentials in the target URL
        self.secrets = secrets
        self.base_dir = base_dir
        self.requests: list[RequestPlan] = []
        self.cookies = scenario.cookies_enabled

    def template(self, text: str) -> Template:
        return compile_template(text, self.scenario.vars, self.secrets, self.base_dir)

    def tables_used(self, flow) -> set[str]:
        """Data tables the flow's templates name (``{users.user}`` -> users)."""
        names = set()
        for step in list(flow.once) + list(flow.steps):
            for text in _texts(step):
                names.update(field.partition(".")[0] for field in fields_of(text) if "." in field)
        return names & set(self.scenario.data)

    def step(self, step, flow_index: int):
        if step.think is not None:
            think = step.think
            if isinstance(think, DelayRange):
                return ThinkPlan(think.min, think.max)
            return ThinkPlan(think, think)
        return self.request(step, flow_index)

    def request(self, step, flow_index: int) -> RequestPlan:
        scenario = self.scenario
        defaults = scenario.defaults
        headers = {**defaults.headers, **step.headers}
        body_template = self._body(step)
        names = {name.lower() for name in headers}
        if self.authorization and "authorization" not in names:
            headers["Authorization"] = self.authorization
        if "content-type" not in names:
            if step.json_body is not None:
                headers["Content-Type"] = _JSON
            elif step.form is not None:
                headers["Content-Type"] = _FORM
        constant_headers, header_templates = [], []
        for name, value in headers.items():
            template = self.template(value)
            if template.constant is not None:
                constant_headers.append((name, template.constant))
            else:
                header_templates.append((name, template))
            if name.lower() in SENSITIVE_HEADERS and template.constant is not None:
                self.secrets.add(template.constant)
        target = self._target(step.path, step.query)
        body = body_template.constant if body_template is not None else None
        if isinstance(body, str):
            body = body.encode()
        checks, has_status_check, needs_headers, needs_body = compile_checks(step.checks or defaults.checks)
        captures = []
        for variable, spec in step.capture.items():
            extractor, wants_headers, wants_body = compile_capture(spec)
            captures.append((variable, extractor))
            needs_headers = needs_headers or wants_headers
            needs_body = needs_body or wants_body
        request = RequestPlan(
            index=len(self.requests),
            name=step.display_name(),
            method=step.method,
            path_template=step.path,
            target=target,
            headers=tuple(constant_headers),
            body=body,
            timeout_s=step.timeout or defaults.timeout,
            is_static=target.constant is not None and not header_templates
            and (body_template is None or body is not None) and not self.cookies,
            connect_timeout_s=defaults.connect_timeout,
            read_timeout_s=defaults.read_timeout,
            max_response_bytes=defaults.max_response_size,
            capture_headers=needs_headers,
            capture_body=max(CHECK_BODY_LIMIT if needs_body else 0, 0),
            checks=checks,
            has_status_check=has_status_check,
            header_templates=tuple(header_templates),
            body_template=None if body is not None else body_template,
            captures=tuple(captures),
            send_cookies=self.cookies,
            flow=flow_index,
            tls=tls_plan(defaults.tls, step.tls, self.base_dir),
            keepalive=defaults.keepalive if step.keepalive is None else step.keepalive,
        )
        self.requests.append(request)
        return request

    def _target(self, path: str, query: dict) -> Template:
        """Path and query as one template: query keys and values are form-encoded, rendered values per request."""
        pieces = list(self.template(path).pieces)
        for position, (key, value) in enumerate(query.items()):
            separator = "&" if position or "?" in path else "?"
            pieces.append(separator + quote_plus(str(key)) + "=")
            for piece in self.template(str(value)).pieces:
                pieces.append(quote_plus(piece) if type(piece) is str else partial(_form_quoted, piece))
        return Template(path + _query_suffix(query, path), merge_literals(pieces))

    def _body(self, step):
        if step.json_body is not None:
            return compile_json(step.json_body, self.scenario.vars, self.secrets, self.base_dir)
        if step.form is not None:
            pieces = []
            for position, (key, value) in enumerate(step.form.items()):
                pieces.append(("&" if position else "") + quote_plus(str(key)) + "=")
                pieces.append(self.template(str(value)))
            return _FormTemplate(tuple(pieces))
        if step.body is not None:
            return self.template(step.body)
        return None


def tls_plan(defaults: TlsSettings | None, own: TlsSettings | None, base_dir: Path | None) -> TlsPlan | None:
    """One request's TLS settings: the fields its own block sets, the rest from ``defaults.tls``.

    None when neither block exists, so that engines use their one default
    context. Paths become absolute here (relative ones start at the scenario
    file's directory, as the loader checked them), so a plan means the same
    files whatever directory a worker process runs in.
    """
    if defaults is None and own is None:
        return None
    fields: dict = {}
    for block in (defaults, own):
        if block is not None:
            fields.update({name: getattr(block, name) for name in block.model_fields_set})
    for name in ("ca", "cert", "key"):
        if fields.get(name) is not None:
            fields[name] = resolve_tls_path(fields[name], base_dir)
    return TlsPlan(**fields)


def _query_suffix(query: dict, path: str) -> str:
    """``{a: 1, b: "{x}"}`` -> ``?a=1&b={x}`` (keys quoted now, values rendered per request)."""
    if not query:
        return ""
    parts = [f"{quote_plus(str(k))}={v}" for k, v in query.items()]
    return ("&" if "?" in path else "?") + "&".join(parts)


def _form_quoted(render, user) -> str:
    return quote_plus(render(user))


def _texts(step) -> list[str]:
    """Every template text of a step (for finding the data tables it uses)."""
    texts = [step.path, *map(str, step.query.values()), *step.headers.values()]
    if step.body is not None:
        texts.append(step.body)
    if step.form is not None:
        texts += [str(v) for v in step.form.values()]
    if step.json_body is not None:
        texts += _json_strings(step.json_body)
    return texts


def _json_strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _json_strings(v)]
    return [value] if isinstance(value, str) else []


class _FormTemplate:
    """A urlencoded form body: keys fixed, each value rendered and quoted per request."""

    __slots__ = ("pieces",)

    def __init__(self, pieces: tuple):
        self.pieces = pieces

    def __reduce__(self):
        return (_FormTemplate, (self.pieces,))

    @property
    def constant(self) -> bytes | None:
        if all(type(p) is str or p.constant is not None for p in self.pieces):
            return "".join(p if type(p) is str else quote_plus(p.constant) for p in self.pieces).encode()
        return None

    def render(self, user) -> bytes:
        return "".join([p if type(p) is str else quote_plus(p.render(user)) for p in self.pieces]).encode()


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
