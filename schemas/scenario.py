"""The scenario file format, version 1, as Pydantic models.

This is the only place the format is defined: the loader validates YAML with
these models, ``runner schema`` exports them as JSON Schema for editors, and
the compiler turns a validated :class:`Scenario` into a plain plan. Nothing on
the request path imports this module.
"""

from __future__ import annotations

import re
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .units import Duration, Size

#: Variables every request template may use besides ``vars``; filled per request.
RUNTIME_VARIABLES = ("seq", "worker")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")


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


class BuiltinTarget(_Model):
    """Options of the built-in target server, used when ``target: builtin``."""

    body_size: Size = Field(1024, description="Bytes of HTML in each response body.")
    delay: DelayRange = Field(default_factory=DelayRange, description="Random delay per response.")
    seed: int = Field(0, description="Seed of the delay sequence.")


class Defaults(_Model):
    """Settings every request inherits unless it sets its own."""

    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = Field(30.0, gt=0, description="Total time allowed for one request.")


class Request(_Model):
    """One HTTP request of the flow.

    ``path`` is a template: ``{seq}`` is the request's sequence number in its
    stage (0-based), ``{worker}`` the worker's number, and ``{name}`` any key
    of the scenario's ``vars``.
    """

    name: str | None = Field(None, description="Name used in per-request results; default 'METHOD path'.")
    method: str = "GET"
    path: str = Field("/", description="Path and query, may contain {seq}, {worker} and {var} fields.")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    timeout: Duration | None = Field(None, gt=0)

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


class Stage(_Model):
    """A closed-model stage: ``concurrency`` workers send requests back to back.

    The stage ends after ``requests`` requests in total, or after
    ``duration``, whichever comes first; at least one of them is required.
    """

    name: str | None = None
    requests: int | None = Field(None, gt=0, description="Total requests the stage sends.")
    duration: Duration | None = Field(None, gt=0, description="How long the stage runs.")
    concurrency: int = Field(gt=0, description="Number of workers, each with one request in flight.")

    @model_validator(mode="after")
    def _bounded(self) -> "Stage":
        if self.requests is None and self.duration is None:
            raise ValueError("a stage needs 'requests' or 'duration' (or both), so that it ends by itself")
        return self


class Scenario(_Model):
    """A load-test scenario (format version 1)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"title": "runner scenario", "$id": "https://runner.invalid/scenario.schema.json"},
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
    flow: list[Request] = Field(min_length=1, description="Requests each worker sends, in order, round and round.")
    stages: list[Stage] = Field(min_length=1)
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Reporter name to output path, e.g. {json: results/run.json}.",
    )

    @field_validator("target")
    @classmethod
    def _target_url(cls, value: str) -> str:
        if value == "builtin":
            return value
        if not re.match(r"^https?://[^/\s:]+(:\d{1,5})?(/\S*)?$", value):
            raise ValueError(f"target must be 'builtin' or an http(s) URL such as http://127.0.0.1:8080 (got {value!r})")
        return value.rstrip("/")

    @field_validator("vars")
    @classmethod
    def _no_reserved_vars(cls, value: dict) -> dict:
        clash = sorted(set(value) & set(RUNTIME_VARIABLES))
        if clash:
            raise ValueError(f"vars may not redefine the built-in template fields {clash}")
        return value
