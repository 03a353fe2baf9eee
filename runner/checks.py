"""Response checks compiled into plain predicates.

Each check is a ``(name, predicate)`` pair; the predicate takes
``(status, body_bytes, latency_us, headers, body)`` and returns a bool.
Predicates are ``functools.partial`` objects over module functions, so plans
stay picklable for worker processes, and everything that can be prepared
(regexes, JSON paths, status sets) is prepared here, once.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Callable

import orjson

from runner.schemas.checks import Checks

Predicate = Callable[[int, int, int, "dict[str, str] | None", "bytes | None"], bool]
#: Bytes of body kept for body and JSON checks; larger bodies are checked on this prefix.
CHECK_BODY_LIMIT = 1 << 20
_MISSING = object()


def _status_in(codes: frozenset, classes: frozenset, status, size, latency, headers, body) -> bool:
    return status in codes or (status // 100) in classes


def _size_at_most(limit: int, status, size, latency, headers, body) -> bool:
    return size <= limit


def _duration_at_most(limit_us: int, status, size, latency, headers, body) -> bool:
    return latency <= limit_us


def _text_ok(text: str | None, present, equals, contains, pattern) -> bool:
    if present is not None and (text is not None) != present:
        return False
    if text is None:
        return present is False or (equals is None and contains is None and pattern is None)
    if equals is not None and text != equals:
        return False
    if contains is not None and contains not in text:
        return False
    return pattern is None or pattern.search(text) is not None


def _header(name: str, present, equals, contains, pattern, status, size, latency, headers, body) -> bool:
    return _text_ok((headers or {}).get(name), present, equals, contains, pattern)


def _body(present, equals, contains, pattern, status, size, latency, headers, body) -> bool:
    text = body.decode("utf-8", "replace") if body is not None else None
    return _text_ok(text, present, equals, contains, pattern)


def _json_value(document: Any, steps: tuple) -> Any:
    for step in steps:
        if isinstance(step, int):
            if not isinstance(document, list) or step >= len(document):
                return _MISSING
        elif not isinstance(document, dict) or step not in document:
            return _MISSING
        document = document[step]
    return document


def _json(steps: tuple, exists, check_equality: bool, expected, status, size, latency, headers, body) -> bool:
    try:
        document = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return False
    value = _json_value(document, steps)
    found = value is not _MISSING
    if exists is not None and found != exists:
        return False
    if check_equality:  # 1 == True in Python; a JSON check must not confuse them
        return found and value == expected and isinstance(value, bool) == isinstance(expected, bool)
    return True


def _json_steps(path: str) -> tuple:
    """``$.items[0].id`` -> ``("items", 0, "id")``."""
    return tuple(int(token[1:-1]) if token.startswith("[") else token[1:]
                 for token in re.findall(r"\.[^.\[]+|\[\d+\]", path))


def _describe(match) -> list[tuple[str, tuple]]:
    parts = []
    if match.present is not None:
        parts.append(("present" if match.present else "absent", (match.present, None, None, None)))
    if match.equals is not None:
        parts.append((f"equals {match.equals!r}", (None, match.equals, None, None)))
    if match.contains is not None:
        parts.append((f"contains {match.contains!r}", (None, None, match.contains, None)))
    if match.matches is not None:
        parts.append((f"matches /{match.matches}/", (None, None, None, re.compile(match.matches))))
    return parts


def compile_checks(checks: Checks | None) -> tuple[tuple[tuple[str, Predicate], ...], bool, bool, bool]:
    """Return (checks, has_status_check, needs_headers, needs_body)."""
    if checks is None:
        return (), False, False, False
    compiled: list[tuple[str, Predicate]] = []
    if checks.status is not None:
        codes = frozenset(int(s) for s in checks.status if s.isdigit())
        classes = frozenset(int(s[0]) for s in checks.status if not s.isdigit())
        label = checks.status[0] if len(checks.status) == 1 else "[" + ", ".join(checks.status) + "]"
        verb = "in" if len(checks.status) > 1 else "is"
        compiled.append((f"status {verb} {label}", partial(_status_in, codes, classes)))
    for name, match in checks.headers.items():
        lower = name.lower()
        for text, args in _describe(match) or [("present", (True, None, None, None))]:
            compiled.append((f"header {lower} {text}", partial(_header, lower, *args)))
    if checks.body is not None:
        for text, args in _describe(checks.body):
            compiled.append((f"body {text}", partial(_body, *args)))
    for path, match in checks.json_paths.items():
        steps = _json_steps(path)
        if match.exists is not None:
            compiled.append((f"json {path} {'exists' if match.exists else 'is absent'}",
                             partial(_json, steps, match.exists, False, None)))
        if match.checks_equality:
            compiled.append((f"json {path} equals {match.equals!r}", partial(_json, steps, None, True, match.equals)))
    if checks.max_size is not None:
        compiled.append((f"size <= {checks.max_size} B", partial(_size_at_most, checks.max_size)))
    if checks.max_duration is not None:
        compiled.append((f"duration <= {checks.max_duration * 1000:g} ms",
                         partial(_duration_at_most, int(checks.max_duration * 1e6))))
    needs_headers = bool(checks.headers)
    needs_body = checks.body is not None or bool(checks.json_paths)
    return tuple(compiled), checks.status is not None, needs_headers, needs_body
