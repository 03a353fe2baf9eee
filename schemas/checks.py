"""Response checks: what a response must look like to count as ok.

Checks sit on a request (or in ``defaults``) and are compiled into small
predicates by :mod:`runner.checks`; a response that fails one counts as
failed, with the check's name kept as the reason.
"""

from __future__ import annotations

import re
from typing import Any, Union

from pydantic import Field, field_validator

from .base import Model
from .units import Duration, Size

_STATUS_CLASS = re.compile(r"^[1-5]xx$")


def parse_status(value: Any) -> list[str]:
    """``200``, ``"2xx"``, ``[200, "3xx"]`` -> a list of exact codes or classes as strings."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("give at least one status code or class such as 200 or 2xx")
    parsed = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"invalid status {item!r}")
        text = str(item).strip().lower()
        if _STATUS_CLASS.match(text) or (text.isdigit() and 100 <= int(text) <= 599):
            parsed.append(text)
        else:
            raise ValueError(f"invalid status {item!r}: use a code (200) or a class (2xx)")
    return parsed


class TextMatch(Model):
    """How a header or body must look; every given condition must hold."""

    present: bool | None = None
    equals: str | None = None
    contains: str | None = None
    matches: str | None = Field(None, description="A Python regular expression searched in the text.")

    @field_validator("matches")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value


class JsonMatch(Model):
    """A JSON value at a path: ``exists`` and/or ``equals``."""

    exists: bool | None = None
    equals: Union[str, int, float, bool, None] = Field(
        None, description="Expected value; 'equals: null' checks for a JSON null.")

    @property
    def checks_equality(self) -> bool:
        return "equals" in self.model_fields_set


_JSON_PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])*$")


class Checks(Model):
    """Conditions on a response; all must hold for it to count as ok."""

    status: list[str] | None = Field(
        None, description="Expected status: 200, 2xx, or a list; replaces the default 'below 400' rule.")
    headers: dict[str, TextMatch] = Field(default_factory=dict)
    body: TextMatch | None = None
    json_paths: dict[str, JsonMatch] = Field(
        default_factory=dict, alias="json",
        description="JSON path ($.a.b, $.items[0].id) -> condition; the body must parse as JSON.")
    max_size: Size | None = Field(None, description="Largest acceptable body size.")
    max_duration: Duration | None = Field(None, description="Slowest acceptable response time.")

    model_config = {"extra": "forbid", "frozen": True, "populate_by_name": True}

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return None if value is None else parse_status(value)

    @field_validator("json_paths")
    @classmethod
    def _paths(cls, value: dict) -> dict:
        for path in value:
            if not _JSON_PATH.match(path):
                raise ValueError(f"unsupported JSON path {path!r}: use $.key.sub or $.list[0].key")
        return value
