"""Captures: values taken from a response into a virtual user's variables.

Each capture compiles to a small picklable extractor
``(status, headers, body) -> value`` that returns :data:`MISSING` when the
response does not hold the value; the virtual user then fails the step as
``capture_failed`` and skips the rest of the iteration, because later steps
would be sent with a value that does not exist.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import orjson

from .cookies import parse_set_cookie

MISSING = object()
#: Body bytes kept for a capture that reads the body (as for checks).
CAPTURE_BODY_LIMIT = 1 << 20


def _from_status(status: int, headers, body) -> Any:
    return status


def _from_header(name: str, status: int, headers, body) -> Any:
    if headers is None:
        return MISSING
    value = headers.get(name)
    return MISSING if value is None else value


def _from_cookie(name: str, status: int, headers, body) -> Any:
    raw = headers.get("set-cookie") if headers is not None else None
    if raw is None:
        return MISSING
    for line in raw.split("\n"):
        parsed = parse_set_cookie(line)
        if parsed is not None and parsed[0] == name:
            return parsed[1]
    return MISSING


def _from_regex(pattern: re.Pattern, status: int, headers, body) -> Any:
    if not body:
        return MISSING
    match = pattern.search(body.decode("utf-8", "replace"))
    if match is None:
        return MISSING
    return match.group(1) if pattern.groups else match.group(0)


def _from_json(steps: tuple, status: int, headers, body) -> Any:
    try:
        document = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return MISSING
    for step in steps:
        if isinstance(step, int):
            if not isinstance(document, list) or not -len(document) <= step < len(document):
                return MISSING
        elif not isinstance(document, dict) or step not in document:
            return MISSING
        document = document[step]
    return document


def compile_capture(spec) -> tuple[Any, bool, bool]:
    """``runner.schemas.scenario.Capture`` (or "status") -> (extractor, needs_headers, needs_body)."""
    if spec == "status" or getattr(spec, "status", None):
        return _from_status, False, False
    if spec.json_path is not None:
        steps = tuple(int(token[1:-1]) if token.startswith("[") else token[1:]
                      for token in re.findall(r"\.[^.\[]+|\[-?\d+\]", spec.json_path))
        return partial(_from_json, steps), False, True
    if spec.header is not None:
        return partial(_from_header, spec.header.lower()), True, False
    if spec.cookie is not None:
        return partial(_from_cookie, spec.cookie), True, False
    return partial(_from_regex, re.compile(spec.regex)), False, True


__all__ = ["CAPTURE_BODY_LIMIT", "MISSING", "compile_capture"]
