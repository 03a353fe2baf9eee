"""The scenario file format, version 1, as Pydantic models.

This is the only place the format is defined: the loader validates YAML with
these models, ``runner schema`` exports them as JSON Schema for editors, and
the compiler turns a validated :class:`Scenario` into a plain plan. Nothing on
the request path imports this module.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, WithJsonSchema,
                      field_validator, model_validator)

from runner.target.faults import FAULT_KINDS
from runner.target.responses import MAX_BODY_SIZE

from .base import SCHEMA_ID_BASE
from .checks import Checks
from .data import DataSpec
from .thresholds import AbortOnFail, ThresholdSpec
from .units import Duration, Rate, Size

#: Variables every request template may use besides ``vars``; filled per request.
RUNTIME_VARIABLES = ("seq", "worker", "vu", "iteration")
#: Value generators a template may use: ``{uuid}``, ``{timestamp}``, ``{randint:1:100}``.
GENERATORS = ("uuid", "timestamp", "randint")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_TEMPLATE_FIELD = re.compile(r"(?<!\$)\{([^{}]*)\}")
#: An HTTP header name (RFC 9110 "token"); anything else is refused by servers, or by the engines mid-run.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: Characters an HTTP header value may not hold: line breaks would smuggle a second header.
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Largest body the built-in target serves: the server's own limit.
BUILTIN_MAX_BODY_SIZE = MAX_BODY_SIZE


def _header_name(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"invalid header name {name!r}: letters, digits and !#$%&'*+-.^_`|~ only, "
                         "no spaces or colons")
    return name


def _header_value(value: str) -> str:
    """Never quotes the value: header values are where credentials live."""
    if _HEADER_VALUE_FORBIDDEN.search(value):
        raise ValueError("the header value contains a line break or another control character; HTTP cannot send it")
    return value


def _output_path(path: str) -> str:
    if not path.strip():
        raise ValueError("empty path; give a file path, or '-' for standard output")
    if not path.isprintable():
        raise ValueError("the path contains a control character")
    return path


#: Headers as both engines can send them: checked here, so that a run never fails on them mid-way.
Headers = dict[Annotated[str, AfterValidator(_header_name)], Annotated[str, AfterValidator(_header_value)]]


#: Dask comm schemes a scheduler address may use (runner.cluster); tcp when none is written.
CLUSTER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def check_cluster(value: str) -> str:
    """A Dask scheduler address, ``tcp://HOST:PORT`` (or ``HOST:PORT``): refused here, not at connect time."""
    example = "a Dask scheduler address such as tcp://scheduler.example:8786"
    text = value.strip()
    if not text or not text.isprintable() or any(c.isspace() for c in text):
        raise ValueError(f"expected {example}, without spaces")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    if scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}: use one of {', '.join(CLUSTER_SCHEMES)} ({example})")
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"expected {example}: {exc}") from None
    if not parts.hostname or port is None or parts.path or parts.query or parts.fragment:
        raise ValueError(f"expected {example}: a host and a port, nothing after them (got {value!r})")
    return text


def check_target(value: str) -> str:
    """``builtin``, or an http(s) base URL that both engines can connect to as written.

    Everything a run would refuse before its first request is refused here,
    so that ``runner validate`` and ``runner run`` agree: the scheme, a host
    (an IPv6 address in brackets, a name that IDNA can encode), a port in
    1..65535, no query or fragment (the flow's paths are appended to the
    target). ``user:password@`` is allowed and never shown in messages.
    """
    if value == "builtin":
        return value
    shown = re.sub(r"//[^/\s]*@", "//***@", value)
    example = "an http(s) URL such as http://127.0.0.1:8080"
    if not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError(f"target must be 'builtin' or {example}, without spaces or control characters")
    if not re.match(r"^https?://", value, re.IGNORECASE):
        raise ValueError(f"target must be 'builtin' or {example} (got {shown!r})")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        reason = "the port must be a number within 1..65535" if "port" in str(exc).lower() else str(exc)
        raise ValueError(f"{shown!r} is not a valid URL: {reason}") from None
    _check_host(parts.hostname, parts.netloc, shown)
    if port == 0:
        raise ValueError(f"{shown!r}: the port must be a number within 1..65535")
    if "?" in value or "#" in value:
        raise ValueError(f"{shown!r} has a query or fragment: the target is a base URL; put queries in the paths")
    return value.rstrip("/")


def _check_host(host: str | None, netloc: str, shown: str) -> None:
    if not host:
        raise ValueError(f"{shown!r} has no host")
    if netloc.rpartition("@")[2].startswith("["):
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise ValueError(f"{shown!r}: '[{host}]' is not an IPv6 address") from None
        return
    if not host.isascii():
        try:
            host.encode("idna")
        except UnicodeError:
            raise ValueError(f"{shown!r}: the host name cannot be encoded for DNS (IDNA)") from None
    elif any(not label for label in host.rstrip(".").split(".")) or not re.match(r"^[A-Za-z0-9._~!$&'()*+,;=%-]+$",
                                                                                  host):
        raise ValueError(f"{shown!r}: {host!r} is not a valid host name or address")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DelayRange(_Model):
    """A uniform random delay range; the same ``seed`` gives the same delays."""

    min: Duration = 0.0
    max: Duration = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> "DelayRange":
        if self.max < self.min:
            raise ValueError(f"max ({self.max}s) must be >= min ({self.min}s)")
        return self


#: TLS versions a scenario may require as the least one; older ones are obsolete and current OpenSSL refuses them.
TLS_VERSIONS = ("1.2", "1.3")


def _tls_version(value: Any) -> Any:
    """``min_version: 1.2`` is a YAML number; versions are names, so ``1.2`` and ``"1.2"`` mean the same."""
    if isinstance(value, float):
        value = format(value, "g")
    if isinstance(value, str) and value not in TLS_VERSIONS:
        shown = repr(value[:20])
        if value.strip().lower().removeprefix("tlsv") in ("1", "1.0", "1.1"):
            raise ValueError(f"must be 1.2 or 1.3 (got {shown}): TLS 1.0 and 1.1 are obsolete, "
                             "and current TLS libraries refuse them")
        raise ValueError(f"must be 1.2 or 1.3 (got {shown}): the version number alone")
    return value


def _tls_file(path: str) -> str:
    if not path.strip():
        raise ValueError("empty path; give a PEM file's path (relative paths start at the scenario's directory)")
    if not path.isprintable():
        raise ValueError("the path contains a control character")
    return path


def _server_name(name: str) -> str:
    """A host name (or IP address) to send as SNI and to match the certificate against; never a URL."""
    if not name or not name.isprintable() or any(c.isspace() or c in "/@?#" for c in name):
        raise ValueError("must be a host name such as api.example.com: no spaces, slashes, scheme or path")
    if ":" in name:
        try:
            ipaddress.IPv6Address(name.strip("[]"))
        except ValueError:
            raise ValueError("must be a host name without a port (the port comes from the target)") from None
        return name.strip("[]")
    labels = name.rstrip(".").split(".")
    if any(not label for label in labels):
        raise ValueError(f"{name[:60]!r} has an empty label (two dots in a row, or a leading dot)")
    if not name.isascii():
        try:
            name.encode("idna")
        except UnicodeError:
            raise ValueError("cannot be encoded for DNS (IDNA)") from None
    elif not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"{name[:60]!r} is not a host name: letters, digits, '-' and '.' only (no wildcards)")
    return name


TlsVersion = Annotated[
    Literal["1.2", "1.3"],
    BeforeValidator(_tls_version),
    WithJsonSchema({"enum": ["1.2", "1.3", 1.2, 1.3], "type": ["string", "number"]}),
]
TlsFile = Annotated[str, AfterValidator(_tls_file)]


class TlsSettings(_Model):
    """How to speak TLS to an https target.

    In ``defaults`` it applies to every request; on a request, each field it
    sets replaces that one field of the defaults (the others still apply).
    File paths are relative to the scenario file's directory and are checked
    when the scenario is loaded, so a missing or mismatched file never
    surfaces as thousands of failed handshakes.
    """

    verify: bool = Field(
        True, description="Check the server's certificate chain and host name; false accepts any certificate.")
    ca: TlsFile | None = Field(
        None, description="A PEM file of CA certificates to trust instead of the system's (a private CA).")
    cert: TlsFile | None = Field(
        None, description="A PEM client certificate for mutual TLS; it may hold its private key too.")
    key: TlsFile | None = Field(
        None, description="The client certificate's PEM private key, when not in 'cert'; must not be encrypted.")
    server_name: Annotated[str, AfterValidator(_server_name)] | None = Field(
        None, description="Host name sent as SNI and matched against the certificate, instead of the target's host.")
    min_version: TlsVersion | None = Field(
        None, description="Least TLS version to accept: \"1.2\" or \"1.3\" (default: the TLS library's own).")


class BuiltinTarget(_Model):
    """Options of the built-in target server, used when ``target: builtin``."""

    body_size: Size = Field(1024, le=BUILTIN_MAX_BODY_SIZE, description="Bytes of HTML in each response body.")
    delay: DelayRange = Field(default_factory=DelayRange, description="Random delay per response.")
    seed: int = Field(0, description="Seed of the delay and fault sequences.")
    faults: dict[str, float] = Field(
        default_factory=dict,
        description="Fault kind -> probability for ordinary requests, e.g. {reset: 0.01, status-burst: 0.05}.")
    tls: bool = Field(
        False, description="Serve https with a throwaway certificate that only this run trusts.")

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: dict[str, float]) -> dict[str, float]:
        kinds = FAULT_KINDS  # the server's own list
        for kind, probability in value.items():
            if kind not in kinds:
                raise ValueError(f"unknown fault {kind!r}; kinds: {', '.join(kinds)}")
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"fault {kind!r}: probability must be between 0 and 1 (got {probability})")
        if sum(value.values()) > 1.0:
            raise ValueError("fault probabilities add up to more than 1")
        return value


class Defaults(_Model):
    """Settings every request inherits unless it sets its own."""

    headers: Headers = Field(default_factory=dict)
    timeout: Duration = Field(30.0, gt=0, description="Total time allowed for one request, connect included.")

    connect_timeout: Duration = Field(10.0, gt=0, description="Time allowed to establish a connection.")
    read_timeout: Duration | None = Field(
        None, gt=0, description="Longest silence allowed while waiting for response bytes (default: total only).")
    max_response_size: Size = Field(
        0, description="A response body larger than this fails as body_too_large; 0 means no limit.")
    checks: Checks | None = Field(None, description="Checks every request gets unless it sets its own.")
    cookies: bool | None = Field(
        None, description="Keep a cookie jar per virtual user (default: on with 'flows:', off with 'flow:').")
    tls: TlsSettings | None = Field(
        None, description="TLS settings of every request to an https target (verify, ca, cert, key, ...).")
    keepalive: bool = Field(
        True, description="Reuse connections between requests; false opens a new connection for every request.")


class Request(_Model):
    """One HTTP request of the flow.

    ``path`` is a template: ``{seq}`` is the request's sequence number in its
    stage (0-based), ``{worker}`` the worker's number, and ``{name}`` any key
    of the scenario's ``vars``.
    """

    name: str | None = Field(None, description="Name used in per-request results; default 'METHOD path'.")
    method: str = "GET"
    path: str = Field("/", description="Path and query, may contain {seq}, {worker} and {var} fields.")
    headers: Headers = Field(default_factory=dict)
    body: str | None = None

    timeout: Duration | None = Field(None, gt=0)
    checks: Checks | None = Field(None, description="Conditions the response must meet to count as ok.")
    tls: TlsSettings | None = Field(
        None, description="TLS settings of this request; each field set here replaces that field of defaults.tls.")
    keepalive: bool | None = Field(
        None, description="false: a new connection for every send of this request (default: defaults.keepalive).")

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        upper = value.upper()
        if upper not in HTTP_METHODS:
            raise ValueError(f"unknown HTTP method {value!r}; use one of {', '.join(HTTP_METHODS)}")
        return upper

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path must start with '/' (got {value!r})")
        return value

    def display_name(self) -> str:
        return self.name or f"{self.method} {self.path}"

    def template_fields(self) -> list[str]:
        """Names of the ``{...}`` fields in the path template, in order."""
        return _TEMPLATE_FIELD.findall(self.path)


class Capture(_Model):
    """Where a captured value comes from; exactly one source.

    ``json: $.items[0].id`` (a JSON path into the body), ``header: ETag``,
    ``regex: 'id="(\\d+)"'`` (the first group, or the whole match), ``cookie: sid``,
    or ``status: true`` (the response status).
    """

    json_path: str | None = Field(None, alias="json", description="JSON path into the body, e.g. $.items[0].id.")
    header: str | None = Field(None, description="A response header's value.")
    regex: str | None = Field(None, description="A regular expression on the body: its first group, else the match.")
    cookie: str | None = Field(None, description="A cookie the response sets.")
    status: bool | None = Field(None, description="true: the response status code.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> "Capture":
        given = [name for name in ("json_path", "header", "regex", "cookie", "status")
                 if getattr(self, name) not in (None, False)]
        if len(given) != 1:
            raise ValueError("a capture needs exactly one of json, header, regex, cookie or status: true")
        if self.json_path is not None and not re.fullmatch(r"\$(\.[^.\[\]]+|\[-?\d+\])*", self.json_path):
            raise ValueError(f"unsupported JSON path {self.json_path!r}: use $.key.other[0] (keys and indexes)")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {self.regex!r}: {exc}") from None
        return self


class Step(Request):
    """One step of a flow: a request (with optional captures), or a pause (``think``).

    Requests may carry ``query`` parameters, a ``json`` body (written as YAML,
    sent as JSON) or a ``form`` body, and every string in them is a template.
    ``capture`` stores values from the response in the virtual user's
    variables for later steps.
    """

    think: Duration | DelayRange | None = Field(
        None, description="A pause: a duration (1s) or a uniform random range {min: 0.5s, max: 2s}.")
    query: dict[str, Union[str, int, float]] = Field(default_factory=dict, description="Query parameters (templates).")
    json_body: Any = Field(None, alias="json", description="A body written as YAML and sent as JSON (templates inside).")
    form: dict[str, Union[str, int, float]] | None = Field(None, description="A form body (templates), urlencoded.")
    capture: dict[str, Union[Capture, Literal["status"]]] = Field(
        default_factory=dict, description="Variable name -> where to take it from in the response.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _request_or_think(self) -> "Step":
        if self.think is not None:
            extra = sorted(set(self.model_fields_set) - {"think", "name"})
            if extra:
                raise ValueError(f"a think step only pauses; remove {', '.join(extra)} or make it a separate step")
            return self
        bodies = [key for key, value in (("body", self.body), ("json", self.json_body), ("form", self.form))
                  if value is not None]
        if len(bodies) > 1:
            raise ValueError(f"give one body: {' or '.join(bodies)}")
        for name in self.capture:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"capture name {name!r} must be an identifier (letters, digits, _)")
            if name in RUNTIME_VARIABLES or name in GENERATORS:
                raise ValueError(f"capture name {name!r} is a built-in template field")
        return self

    @property
    def is_think(self) -> bool:
        return self.think is not None


class Flow(_Model):
    """A named user journey: ``once`` runs once per virtual user, then ``steps`` loop."""

    name: str = Field(description="Name of the flow in results (per-flow iterations and duration).")
    weight: int = Field(1, gt=0, description="Share of virtual users (closed) or arrivals (open) running it.")
    once: list[Step] = Field(default_factory=list, description="Steps each virtual user runs once first (log in).")
    steps: list[Step] = Field(min_length=1, description="Steps of one iteration, run again and again.")

    @model_validator(mode="after")
    def _has_request(self) -> "Flow":
        if all(step.is_think for step in self.steps):
            raise ValueError("a flow's steps need at least one request")
        return self


class ConcurrencyRamp(_Model):
    """Concurrency that changes linearly from ``from`` to ``to`` over the stage's duration."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: int = Field(alias="from", ge=0)
    end: int = Field(alias="to", ge=0)

    @model_validator(mode="after")
    def _someone_works(self) -> "ConcurrencyRamp":
        if max(self.start, self.end) == 0:
            raise ValueError("'from' or 'to' must be > 0")
        return self


class RateRamp(_Model):
    """An arrival rate that changes linearly from ``from`` to ``to`` over the stage's duration."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: Rate = Field(alias="from")
    end: Rate = Field(alias="to")


class Stage(_Model):
    """One stage, in one of two load models.

    Closed model (``concurrency``): that many workers send back to back, each
    waiting for its answer; a ramp ``{from, to}`` changes the worker count
    linearly over ``duration``. Open model (``rate``): requests arrive on a
    fixed timeline whether or not earlier ones were answered, at most
    ``max_in_flight`` at once; arrivals that find no free slot are counted as
    dropped. A stage ends after ``requests`` requests or ``duration``,
    whichever comes first.
    """

    name: str | None = None
    requests: int | None = Field(None, gt=0, description="Total requests (closed) or arrivals (open) of the stage.")
    duration: Duration | None = Field(None, gt=0, description="How long the stage runs.")
    concurrency: int | ConcurrencyRamp | None = Field(
        None, description="Closed model: number of workers, or a ramp {from: 10, to: 500} over the duration.")
    rate: Rate | RateRamp | None = Field(
        None, description="Open model: arrivals per second (2000/s), or a ramp {from: 100/s, to: 5000/s}.")
    max_in_flight: int | None = Field(
        None, gt=0, description="Open model: most requests outstanding at once (default 1000).")
    grace: Duration = Field(
        5.0, description="How long in-flight requests may finish after a duration ends; the rest are cut off.")

    @field_validator("concurrency")
    @classmethod
    def _positive_concurrency(cls, value):
        if isinstance(value, int) and value <= 0:
            raise ValueError(f"must be > 0 (got {value})")
        return value

    @model_validator(mode="after")
    def _one_model_and_bounded(self) -> "Stage":
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("a stage needs exactly one of 'concurrency' (closed model) or 'rate' (open model)")
        if self.requests is None and self.duration is None:
            raise ValueError("a stage needs 'requests' or 'duration' (or both), so that it ends by itself")
        ramp = isinstance(self.concurrency, ConcurrencyRamp) or isinstance(self.rate, RateRamp)
        if ramp and self.duration is None:
            raise ValueError("a ramp ({from, to}) needs a 'duration' to ramp over")
        if self.max_in_flight is not None and self.rate is None:
            raise ValueError("'max_in_flight' applies to the open model only (a stage with 'rate')")
        return self


class Scenario(_Model):
    """A load-test scenario (format version 1)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"title": "runner scenario", "$id": SCHEMA_ID_BASE + "scenario.schema.json"},
    )

    version: Literal[1] = Field(description="Format version; must be 1.")
    name: str
    description: str | None = None
    target: str = Field(
        description="'builtin' to start the built-in target server, or a base URL such as http://127.0.0.1:8080.",
    )
    builtin: BuiltinTarget = Field(default_factory=BuiltinTarget)
    engine: Literal["auto", "fast", "aiohttp"] = Field(
        "auto", description="HTTP engine: auto picks fast when the scenario only uses what it supports.",
    )
    defaults: Defaults = Field(default_factory=Defaults)
    vars: dict[str, Union[str, int, float]] = Field(default_factory=dict)
    flow: list[Step] | None = Field(
        None, min_length=1, description="Requests each virtual user sends, in order, round and round (one flow).")
    flows: list[Flow] | None = Field(
        None, min_length=1, description="Named flows mixed by weight; each has 'once' and 'steps'.")
    data: dict[str, DataSpec] = Field(
        default_factory=dict, description="Data files feeding virtual users: name -> {file, mode, per}.")
    stages: list[Stage] = Field(min_length=1)
    workers: int | Literal["auto"] = Field(
        1, description="Processes that share the load (each with its own event loop); 'auto' = one per CPU.")
    cluster: Annotated[str, AfterValidator(check_cluster)] | None = Field(
        None, description=("Dask scheduler to run on, e.g. tcp://scheduler.example:8786: the plan is split into one "
                           "shard per Dask worker (runner run --cluster and RUNNER_CLUSTER override it)."))
    interval: Duration = Field(1.0, gt=0, description="Width of the time-series buckets in the results.")
    thresholds: list[ThresholdSpec] = Field(
        default_factory=list, description="Pass/fail rules; a failed one makes 'runner run' exit 1.")
    abort_on_fail: bool | AbortOnFail = Field(
        False, description="Stop early once a threshold has failed (true, or {delay: seconds}).")
    outputs: dict[str, Annotated[str, AfterValidator(_output_path)]] = Field(
        default_factory=dict, description="Reporter name to output path, e.g. {json: results/run.json}.",
    )

    @field_validator("target")
    @classmethod
    def _target_url(cls, value: str) -> str:
        return check_target(value)

    _sources: dict = PrivateAttr(default_factory=dict)  # field path -> "file:line", set by the loader
    _tables: dict = PrivateAttr(default_factory=dict)  # data table name -> runner.data.DataTable, read by the loader

    def source_of(self, path: tuple, default: str) -> str:
        """Where a field was written ("file:line"), for messages and reports."""
        return self._sources.get(path, default)

    @model_validator(mode="after")
    def _one_kind_of_flow(self) -> "Scenario":
        if (self.flow is None) == (self.flows is None):
            raise ValueError("a scenario needs exactly one of 'flow' (a list of requests) or 'flows' (named flows)")
        if self.flows is not None:
            names = [flow.name for flow in self.flows]
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise ValueError(f"flow names must be unique: {', '.join(twice)}")
        return self

    def all_flows(self) -> list[Flow]:
        """The scenario's flows; a plain ``flow:`` is one flow named 'default'."""
        if self.flows is not None:
            return list(self.flows)
        return [Flow(name="default", steps=list(self.flow or []))]

    @property
    def cookies_enabled(self) -> bool:
        if self.defaults.cookies is not None:
            return self.defaults.cookies
        return self.flows is not None

    @model_validator(mode="after")
    def _abort_needs_one_process(self) -> "Scenario":
        if self.abort_on_fail and self.workers != 1:
            raise ValueError("abort_on_fail needs workers: 1 (thresholds are judged on the merged numbers)")
        return self

    @field_validator("workers")
    @classmethod
    def _positive_workers(cls, value):
        if isinstance(value, int) and value <= 0:
            raise ValueError(f"must be > 0 or 'auto' (got {value})")
        return value

    @field_validator("vars")
    @classmethod
    def _no_reserved_vars(cls, value: dict) -> dict:
        clash = sorted(set(value) & set(RUNTIME_VARIABLES))
        if clash:
            raise ValueError(f"vars may not redefine the built-in template fields {clash}")
        return value
