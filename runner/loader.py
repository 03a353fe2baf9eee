"""Scenario file -> validated :class:`schemas.scenario.Scenario`.

YAML is composed into nodes (safe tags only) so that every value keeps its
line and column; command-line overrides are applied to the plain data; then
Pydantic validates everything at once. Every problem found, whether YAML,
Pydantic or a cross-field rule, is reported together as a :class:`ScenarioError`
naming ``file:line:col`` and the field path, so a user fixes a file in one
round instead of one error at a time.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from schemas.scenario import Scenario

from .errors import Problem, ScenarioError

FieldPath = tuple[Any, ...]


@dataclass
class _Marked:
    """Plain data from YAML plus where each value came from."""

    data: Any
    marks: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)
    origins: dict[FieldPath, str] = field(default_factory=dict)  # overridden paths -> "--set ..."


def format_path(path: Iterable[Any]) -> str:
    """``("stages", 1, "concurrency")`` -> ``stages[1].concurrency``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _compose(text: str, source: str) -> _Marked:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = (exc.problem or str(exc)).strip()
        if "'\\t'" in problem:
            problem += " (YAML indentation must use spaces, not tabs)"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            problem += (f" ({exc.context} that starts at line {exc.context_mark.line + 1},"
                        f" column {exc.context_mark.column + 1})")
        raise ScenarioError([Problem(source, mark.line + 1 if mark else None,
                                     mark.column + 1 if mark else None, "", f"YAML syntax error: {problem}")])
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(source, None, None, "", f"YAML error: {exc}")])
    finally:
        loader.dispose()
    if node is None:
        raise ScenarioError([Problem(source, 1, 1, "", "the file is empty; a scenario starts with 'version: 1'")])
    marked = _Marked(None)
    problems: list[Problem] = []
    marked.data = _build(node, (), loader, marked.marks, problems, source)
    if problems:
        raise ScenarioError(problems)
    return marked


_PLAIN_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _build(node: yaml.Node, path: FieldPath, loader: yaml.SafeLoader,
           marks: dict, problems: list[Problem], source: str) -> Any:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_COLLECTION_TAGS:
        problems.append(Problem(source, node.start_mark.line + 1, node.start_mark.column + 1, format_path(path),
                                f"unsupported YAML tag {node.tag!r}: scenarios are plain data"))
        return None
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # YAML merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                problems.append(Problem(source, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                                        format_path(path), "mapping keys must be plain scalars"))
                continue
            if key in result:
                problems.append(Problem(source, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                                        format_path(path + (key,)), "duplicate key (it appears twice in this mapping)"))
                continue
            result[key] = _build(value_node, path + (key,), loader, marks, problems, source)
            marks[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), loader, marks, problems, source) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        reason = getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(source, node.start_mark.line + 1, node.start_mark.column + 1,
                                format_path(path), f"unsupported value: {reason.strip()} (scenarios are plain data)"))
        return None


def _parse_set_path(dotted: str) -> FieldPath:
    return tuple(int(part) if part.isdigit() else part for part in dotted.split("."))


def apply_override(marked: _Marked, dotted: str, value: Any, origin: str) -> None:
    """Set ``dotted`` (e.g. ``stages.1.requests``) in the data; lists are indexed by number."""
    path = _parse_set_path(dotted)
    if not dotted or any(part == "" for part in path):
        raise ScenarioError([Problem(origin, None, None, "", f"empty key in {dotted!r}")])
    node = marked.data
    for depth, part in enumerate(path[:-1]):
        child = _child(node, part)
        if child is None:
            if isinstance(node, dict):
                node[part] = child = {}
            else:
                raise ScenarioError([Problem(origin, None, None, format_path(path[: depth + 1]),
                                             _no_such_item(node, part))])
        node = child
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise ScenarioError([Problem(origin, None, None, format_path(path), _no_such_item(node, last))])
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ScenarioError([Problem(origin, None, None, format_path(path[:-1]), "is not a mapping or a list")])
    for known in [p for p in marked.origins if p[: len(path)] == path]:
        del marked.origins[known]
    marked.origins[path] = origin


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _no_such_item(node: Any, part: Any) -> str:
    if isinstance(node, list):
        return f"no item {part} (the list has {len(node)} item(s), numbered from 0)"
    return "is not a mapping or a list"


def _locate(marked: _Marked, path: FieldPath, source: str) -> tuple[str, int | None, int | None]:
    """Find the source of a field: the --set that wrote it, or its closest marked line."""
    for length in range(len(path), -1, -1):
        prefix = path[:length]
        if prefix in marked.origins:
            return marked.origins[prefix], None, None
        if prefix in marked.marks:
            line, column = marked.marks[prefix]
            return source, line, column
    return source, None, None


def _data_path(data: Any, loc: tuple) -> tuple[FieldPath, Any]:
    """Keep only the parts of a Pydantic error location that exist in the data.

    Pydantic inserts union member tags into locations; those are not fields.
    Returns the path and the first part that was missing (for 'missing' errors).
    """
    path: list[Any] = []
    node = data
    missing = None
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(part, str) and missing is None and isinstance(node, dict):
            missing = part
    return tuple(path), missing


def _model_fields_at(path: FieldPath) -> list[str]:
    """Field names of the model reached by following ``path`` from Scenario."""
    annotation: Any = Scenario
    for part in path:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(part)
            if info is None:
                return []
            annotation = info.annotation
        else:
            args = typing.get_args(annotation)
            annotation = args[-1] if args else None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated wrappers; lists and dicts stay for the caller."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = models[0] if models else members[0]
            if annotation is members[0] and not models:
                return annotation
        else:
            return annotation


def _message(error: dict, path: FieldPath, missing: str | None) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        unknown = path[-1] if path else "?"
        allowed = _model_fields_at(path[:-1])
        close = difflib.get_close_matches(str(unknown), allowed, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        return f"unknown field '{unknown}'{hint}"
    if kind == "missing":
        return "required field is missing"
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')} (got {error.get('input')!r})"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')} (got {error.get('input')!r})"
    if kind == "literal_error":
        got = error.get("input")
        hint = " (a number, not a quoted string)" if isinstance(got, str) and got.strip().isdigit() else ""
        return f"must be {ctx.get('expected')} (got {got!r}){hint}"
    if kind == "too_short":
        return "must not be empty"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of key: value pairs (got {error.get('input')!r})"
    if kind == "list_type":
        return f"expected a list (got {error.get('input')!r})"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    elif kind in ("int_type", "int_parsing", "int_from_float", "float_type", "float_parsing",
                  "string_type", "bool_type", "dict_type", "list_type", "model_type", "model_attributes_type"):
        message = f"{message[0].lower()}{message[1:]} (got {error.get('input')!r})"
    return message


def _semantic_problems(data: Any, marked: _Marked, source: str, known_reporters: Iterable[str] | None) -> list[Problem]:
    """Rules across fields that Pydantic cannot see alone, checked on the raw data."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return problems
    problems += _threshold_problems(data, marked, source)
    problems += _reference_problems(data, marked, source)
    outputs = data.get("outputs")
    if known_reporters is not None and isinstance(outputs, dict):
        known = sorted(known_reporters)
        for name in outputs:
            if name not in known:
                where = _locate(marked, ("outputs", name), source)
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(Problem(*where, f"outputs.{name}",
                                        f"unknown reporter '{name}'{hint}; available: {', '.join(known)}"))
    return problems


def _reference_problems(data: dict, marked: _Marked, source: str) -> list[Problem]:
    """``${env:NAME}`` / ``${file:PATH}`` that cannot be resolved: named, never shown with a value."""
    from .flowcheck import step_lists, step_templates
    from .secrets import missing_references

    base_dir = Path(source).parent
    places: list[tuple[FieldPath, Any]] = [(("target",), data.get("target"))]  # its password, if any
    defaults = data.get("defaults")
    if isinstance(defaults, dict) and isinstance(defaults.get("headers"), dict):
        places += [(("defaults", "headers", k), v) for k, v in defaults["headers"].items()]
    for base, steps in step_lists(data):
        for path, step in steps:
            if isinstance(step, dict):
                places += [(base + path + field_path, text) for field_path, text in step_templates(step)]
    problems = []
    for path, value in places:
        if isinstance(value, str):
            for reason in missing_references(value, base_dir, path):
                problems.append(Problem(*_locate(marked, path, source), format_path(path), reason))
    return problems


def load_scenario(path: str | Path, *, overrides: Iterable[str] = (), target: str | None = None,
                  known_reporters: Iterable[str] | None = None) -> Scenario:
    """Read, override and validate a scenario; raise :class:`ScenarioError` listing every problem.

    Args:
        overrides: ``dotted.key=value`` strings; values are read as YAML scalars
            (``--set stages.0.requests=5000`` sets an int).
        target: replaces the scenario's ``target`` (``--target``).
        known_reporters: names accepted in ``outputs``; None skips that check.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([Problem(source, None, None, "", "file not found")])
    except UnicodeDecodeError as exc:
        raw = Path(path).read_bytes()[: exc.start]
        line, column = raw.count(b"\n") + 1, exc.start - (raw.rfind(b"\n") + 1) + 1
        raise ScenarioError([Problem(source, line, column, "",
                                     f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8")])
    except OSError as exc:
        raise ScenarioError([Problem(source, None, None, "", f"cannot read file: {exc.strerror or exc}")])
    marked = _compose(text, source)
    if not isinstance(marked.data, dict):
        line, column = marked.marks.get((), (1, 1))
        raise ScenarioError([Problem(source, line, column, "",
                                     "a scenario must be a YAML mapping starting with 'version: 1'")])
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError([Problem("--set", None, None, "", f"expected dotted.key=value, got {item!r}")])
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        apply_override(marked, key.strip(), value, f"--set {key.strip()}={raw}")
    if target is not None:
        apply_override(marked, "target", target, f"--target {target}")
    return validate_data(marked, source, known_reporters)


def validate_data(marked: _Marked, source: str, known_reporters: Iterable[str] | None) -> Scenario:
    from .flowcheck import flow_problems

    data = marked.data
    problems = _semantic_problems(data, marked, source, known_reporters)
    tables: dict = {}
    if isinstance(data, dict):
        flow_issues, tables = flow_problems(data, lambda path: _locate(marked, path, source), source)
        problems += flow_issues
    scenario = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path, missing = _data_path(data, tuple(error["loc"]))
            origin, line, column = _locate(marked, path, source)
            shown = path + ((missing,) if error["type"] == "missing" and missing else ())
            if error["type"] == "missing" and "version" in shown and len(shown) == 1:
                message = "required field is missing; a scenario starts with 'version: 1'"
            else:
                message = _message(error, path, missing)
            problem = Problem(origin, line, column, format_path(shown), message)
            if not any((p.source, p.line, p.field) == (problem.source, problem.line, problem.field) for p in problems):
                problems.append(problem)  # a union reports each member's error; the first is enough
    if problems:
        raise ScenarioError(problems)
    assert scenario is not None
    scenario._sources.update(_threshold_sources(scenario, marked, source))
    scenario._tables.update(tables)  # read once, here; the compiler takes them from the scenario
    return scenario


def _threshold_sources(scenario: Scenario, marked: _Marked, source: str) -> dict:
    sources = {}
    for index in range(len(scenario.thresholds)):
        origin, line, _ = _locate(marked, ("thresholds", index), source)
        sources[("thresholds", index)] = f"{origin}:{line}" if line is not None else origin
    return sources


def _threshold_problems(data: dict, marked: _Marked, source: str) -> list[Problem]:
    """A threshold naming a stage, request or flow that does not exist would silently never judge anything."""
    from schemas.thresholds import parse_threshold

    stages = [(stage.get("name") if isinstance(stage, dict) else None) or f"stage-{i + 1}"
              for i, stage in enumerate(data.get("stages") or [] if isinstance(data.get("stages"), list) else [])]
    from .flowcheck import step_lists

    requests = []
    for _, steps in step_lists(data):
        for _, request in steps:
            if isinstance(request, dict) and "think" not in request:
                method = str(request.get("method", "GET")).upper()
                requests.append(request.get("name") or f"{method} {request.get('path', '/')}")
    # as Scenario.all_flows() names them: a plain 'flow:' list is the one flow 'default'
    if isinstance(data.get("flows"), list):
        flows = [str(named["name"]) for named in data["flows"] if isinstance(named, dict) and "name" in named]
    else:
        flows = ["default"] if isinstance(data.get("flow"), list) else []
    problems = []
    thresholds = data.get("thresholds")
    for index, text in enumerate(thresholds if isinstance(thresholds, list) else []):
        try:
            parsed = parse_threshold(text)
        except ValueError:
            continue  # Pydantic reports the syntax error itself
        if not isinstance(parsed, dict) or parsed["scope"] == "total":
            continue
        known = {"stage": stages, "request": requests, "flow": flows}[parsed["scope"]]
        if parsed["target"] not in known:
            origin, line, column = _locate(marked, ("thresholds", index), source)
            close = difflib.get_close_matches(parsed["target"] or "", known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(Problem(origin, line, column, f"thresholds[{index}]",
                                    f"no {parsed['scope']} named '{parsed['target']}'{hint}; "
                                    f"{parsed['scope']}s: {', '.join(known) or '(none)'}"))
    return problems
