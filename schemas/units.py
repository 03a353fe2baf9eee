"""Human units in scenario files: durations (``500ms``, ``30s``, ``2m``, ``1h30m``) and sizes (``1KiB``).

They are parsed once, at validation, into plain numbers (seconds as float,
bytes as int), so nothing after the loader ever sees a unit string.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}


def parse_duration(value: Any) -> float:
    """Return seconds for ``30s``, ``1m30s``, ``250ms`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 30s, 2m or 1h")
    if isinstance(value, (int, float)):
        return _finite(value, "duration")
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 500ms, 30s, 2m or 1h")
    text = value.strip().replace(" ", "")
    if text.startswith("-"):
        raise ValueError(f"a duration cannot be negative (got {value!r})")
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r}: use a number with a unit, e.g. 500ms, 30s, 2m, 1h")
    return _finite(total, "duration")


def _finite(number: float | int, what: str) -> float:
    """Infinity and NaN (YAML's .inf, .nan, or digits enough to overflow) are no time, rate or size a run can use."""
    try:
        number = float(number)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"a {what} must be a finite number (got {number})")
    return number


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(ms|s|sec|m|min|h)\s*$")
_RATE_UNITS = {"ms": 1000.0, "s": 1.0, "sec": 1.0, "m": 1 / 60.0, "min": 1 / 60.0, "h": 1 / 3600.0}


def parse_rate(value: Any) -> float:
    """Return arrivals per second for ``2000/s``, ``120/m``, ``1/ms`` or a bare number (per second)."""
    if isinstance(value, bool):
        raise ValueError("expected a rate such as 100/s, 6000/m or 2/ms")
    if isinstance(value, (int, float)):
        return _finite(value, "rate")
    if isinstance(value, str):
        match = _RATE.match(value)
        if match:
            return _finite(float(match.group(1)) * _RATE_UNITS[match.group(2)], "rate")
    raise ValueError(f"invalid rate {value!r}: use requests per time unit, e.g. 100/s, 6000/m, 2/ms")


def parse_size(value: Any) -> int:
    """Return bytes for ``1024``, ``1KiB``, ``2MB``, ``1.5MiB``."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512, 1KiB or 2MB")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            unit = (match.group(2) or "B").lower()
            return int(_finite(float(match.group(1)) * _SIZE_UNITS[unit], "size"))
    raise ValueError(f"invalid size {value!r}: use bytes or a unit, e.g. 512, 1KiB, 2MB")


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(ge=0),
    WithJsonSchema({
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": r"^(\d+(\.\d+)?(us|ms|s|m|h))+$"},
        ],
        "description": "A duration: seconds as a number, or a string like 500ms, 30s, 2m, 1h30m.",
    }),
]

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    Field(ge=0),
    WithJsonSchema({
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": r"^\d+(\.\d+)?\s*([KMGkmg]i?B|B)?$"},
        ],
        "description": "A size: bytes as an integer, or a string like 512B, 1KiB, 2MB.",
    }),
]

Rate = Annotated[
    float,
    BeforeValidator(parse_rate),
    Field(gt=0),
    WithJsonSchema({
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0},
            {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*/\s*(ms|s|sec|m|min|h)\s*$"},
        ],
        "description": "Arrivals per time unit: a number (per second) or a string like 100/s, 6000/m.",
    }),
]
