"""Scenario file -> validated :class:`runner.schemas.scenario.Scenario`.

YAML is composed into nodes (safe tags only) so that every value keeps its
line and column; command-line overrides are applied to the plain data; then
Pydantic validates everything at once. Every problem found, whether YAML,
Pydantic or a cross-field rule, is reported together as a :class:`ScenarioError`
naming ``file:line:col`` and the field path, so a user fixes a file in one
round instead of one error at a time.

A scenario may come from anyone (a pull request, a generator), so reading
one is bounded: a file larger than :data:`MAX_FILE_BYTES`, lists and
mappings nested deeper than :data:`MAX_DEPTH`, or a document that expands to
more than :data:`MAX_VALUES` values once every alias is copied (the "billion
laughs") is a located error found in a fraction of a second, never a
process that eats memory or dies of a ``RecursionError``. Messages quote
values only in short excerpts, and never values that may be secrets.
"""

from __future__ import annotations

import difflib
import re
import reprlib
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from runner.schemas.scenario import Scenario

from .errors import Problem, ScenarioError

FieldPath = tuple[Any, ...]

#: Largest scenario file read. Pure-Python YAML costs seconds per MiB, and a
#: large payload belongs in its own file (``body: ${file:payload.json}``).
MAX_FILE_BYTES = 1 << 20
#: Most values (scalars, lists, mappings) a document may expand to, counting
#: every use of an alias in full: far above any hand-written or generated
#: scenario, far below what it takes to exhaust memory.
MAX_VALUES = 50_000
#: Deepest nesting of lists and mappings; real scenarios stay under ten.
MAX_DEPTH = 64
#: Problems listed at most, so that one broken generated file does not flood the terminal.
MAX_PROBLEMS = 100
#: Longest excerpt of a value (or key) quoted in a message.
EXCERPT_CHARS = 60
#: Longest ``--set`` value echoed in a message; longer ones are shown as ``***``.
SHOWN_SET_VALUE_CHARS = 32
_MASK = "***"
#: Fields whose values may be credentials (request headers and bodies, names that say so): never quoted.
_SECRET_FIELDS = re.compile(r"^(headers|body)$|auth|token|secret|passw|cookie|credential|api.?key|session",
                            re.IGNORECASE)


@dataclass
class _Marked:
    """Plain data from YAML plus where each value came from."""

    data: Any
    marks: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)
    origins: dict[FieldPath, str] = field(default_factory=dict)  # overridden paths -> "--set ..."
    hidden: set[FieldPath] = field(default_factory=set)  # overridden paths whose values messages must not quote


def format_path(path: Iterable[Any]) -> str:
    """``("stages", 1, "concurrency")`` -> ``stages[1].concurrency``."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            shown = _key_text(part)
            text += f".{shown}" if text else shown
    return text


def _key_text(key: Any) -> str:
    """A key as written when it is short and printable, else as a clipped ``repr``."""
    text = str(key)
    return text if len(text) <= EXCERPT_CHARS and text.isprintable() else excerpt(text)


def _excerpt_repr() -> reprlib.Repr:
    shortened = reprlib.Repr()  # renders only what it shows: no 50,000-value repr cut to 60 characters
    shortened.maxstring = shortened.maxother = EXCERPT_CHARS
    shortened.maxlist = shortened.maxtuple = shortened.maxset = 4
    shortened.maxdict, shortened.maxlevel = 3, 3
    return shortened


_EXCERPT_REPR = _excerpt_repr()


def excerpt(value: Any) -> str:
    """A short ``repr`` of ``value``: a message names a value, it does not dump it."""
    text = _EXCERPT_REPR.repr(value)
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."


class _LimitExceeded(yaml.MarkedYAMLError):
    """The document goes past one of the loader's limits (it may be valid YAML)."""


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer stops at :data:`MAX_DEPTH` and :data:`MAX_VALUES`.

    Composing shares an anchored node between its aliases, but the plain data
    built from the nodes holds a full copy per alias. So the expanded size and
    height of every anchored node are measured as it is composed, each alias
    adds its anchor's full size, and the error points at the alias that
    crosses a limit, before anything large exists.
    """

    def __init__(self, text: str):
        super().__init__(text)
        self._depth = 0  # nodes open around the one being composed
        self._deepest = 0  # deepest level reached inside the innermost open node, aliases expanded
        self._values = 0  # values composed so far, aliases counted in full
        self._extent: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (values, height)

    def compose_node(self, parent: Any, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            return self._compose_alias(parent, index)
        event = self.peek_event()
        level = self._depth + 1
        if level > MAX_DEPTH:
            raise _LimitExceeded(None, None, f"lists and mappings are nested more than {MAX_DEPTH} levels deep "
                                 "here; a scenario needs far fewer (is a bracket never closed?)", event.start_mark)
        self._count(1, event.start_mark, "")
        values_before, deepest_outside = self._values - 1, self._deepest
        self._depth, self._deepest = level, level
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth = level - 1
        height = self._deepest - level + 1
        self._deepest = max(deepest_outside, self._deepest)
        if event.anchor is not None:
            self._extent[id(node)] = (self._values - values_before, height)
        return node

    def _compose_alias(self, parent: Any, index: Any) -> yaml.Node:
        event = self.peek_event()
        node = self.anchors.get(event.anchor)
        if node is not None:  # an undefined alias is the composer's own error
            extent = self._extent.get(id(node))
            if extent is None:
                raise _LimitExceeded(None, None, f"alias *{event.anchor} is used inside its own anchor "
                                     f"&{event.anchor}; a scenario cannot contain itself", event.start_mark)
            values, height = extent
            level = self._depth + height
            if level > MAX_DEPTH:
                raise _LimitExceeded(None, None, f"alias *{event.anchor} nests lists and mappings more than "
                                     f"{MAX_DEPTH} levels deep", event.start_mark)
            self._deepest = max(self._deepest, level)
            self._count(values, event.start_mark, f"alias *{event.anchor} copies {values} value(s); ")
        return super().compose_node(parent, index)

    def _count(self, values: int, mark: yaml.Mark, what: str) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            raise _LimitExceeded(None, None, f"{what}the document expands to more than {MAX_VALUES} values here "
                                 "(every use of an alias counts its anchor's values again)", mark)


def _compose(text: str, source: str) -> _Marked:
    try:
        loader = _BoundedLoader(text)  # the reader checks every character of the text here
    except yaml.reader.ReaderError as exc:
        raise ScenarioError([_bad_character(exc, text, source)])
    try:
        node = loader.get_single_node()
    except _LimitExceeded as exc:
        mark = exc.problem_mark
        raise ScenarioError([Problem(source, mark.line + 1, mark.column + 1, "", exc.problem)])
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
    except yaml.reader.ReaderError as exc:
        raise ScenarioError([_bad_character(exc, text, source)])
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(source, None, None, "", f"YAML error: {exc}")])
    finally:
        loader.dispose()
    if node is None:
        raise ScenarioError([Problem(source, 1, 1, "", "the file is empty; a scenario starts with 'version: 1'")])
    builder = _Builder(loader, source)
    marked = _Marked(builder.build(node, ()), builder.marks)
    if builder.problems:
        raise ScenarioError(_capped(builder.problems, source))
    return marked


def _bad_character(exc: yaml.reader.ReaderError, text: str, source: str) -> Problem:
    """PyYAML refuses control characters; say where, and how to write one on purpose."""
    position = exc.position  # in characters: the reader was given a str
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    kind = "a control character" if unicodedata.category(chr(code)) == "Cc" else "not a printable character"
    escape = f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return Problem(source, line, column, "", f"character U+{code:04X} ({kind}) is not allowed in a YAML file; "
                                             f"remove it, or write the escape \"{escape}\" in a double-quoted string")


_PLAIN_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_SURROGATE = re.compile("[\ud800-\udfff]")
_INVALID = object()  # a value that could not be built; its problem is already recorded


class _Builder:
    """Composed nodes -> plain data, remembering the ``line:col`` of every value.

    Every alias becomes a full copy (the composer's limits bound how many
    values that makes). Merge keys (``<<: *common``) are applied here rather
    than by PyYAML, so that a key written in the mapping itself overrides a
    merged one instead of counting as a duplicate.
    """

    def __init__(self, loader: yaml.SafeLoader, source: str):
        self.loader = loader
        self.source = source
        self.marks: dict[FieldPath, tuple[int, int]] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: FieldPath) -> Any:
        self.marks[path] = _position(node)
        if isinstance(node, yaml.ScalarNode):
            value = self._scalar(node, path)
            return None if value is _INVALID else value
        if node.tag not in _PLAIN_COLLECTION_TAGS:
            self._problem(node, path, f"unsupported YAML tag {excerpt(node.tag)}: scenarios are plain data")
            return None
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._mapping(node, path)

    def _mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict:
        result = self._merged(node, path)
        own: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key is _INVALID:
                continue
            if key in own:
                self._problem(key_node, path + (key,), "duplicate key (it appears twice in this mapping)")
                continue
            own.add(key)
            result[key] = self.build(value_node, path + (key,))
            self.marks[path + (key,)] = _position(key_node)
        return result

    def _merged(self, node: yaml.MappingNode, path: FieldPath) -> dict:
        """The mappings named by this mapping's ``<<`` key; of two, the first listed wins."""
        merges = [(key, value) for key, value in node.value if key.tag == _MERGE_TAG]
        if not merges:
            return {}
        for key, _ in merges[1:]:
            self._problem(key, path, "duplicate key '<<' (list several mappings in one: <<: [*a, *b])")
        key_node, value_node = merges[0]
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        if not all(isinstance(source, yaml.MappingNode) for source in sources):
            self._problem(value_node, path, "a merge key (<<) takes a mapping or a list of mappings, "
                                            "e.g. <<: *common")
            return {}
        merged: dict = {}
        for source in reversed(sources):  # built last = wins, with its marks
            built = self.build(source, path)
            if isinstance(built, dict):
                merged.update(built)
        self.marks[path] = _position(node)
        return merged

    def _key(self, node: yaml.Node, path: FieldPath) -> Any:
        key = self._scalar(node, path) if isinstance(node, yaml.ScalarNode) else None
        if key is _INVALID:
            return _INVALID
        if not isinstance(key, (str, int, float, bool)):
            self._problem(node, path, "mapping keys must be plain scalars")
            return _INVALID
        return key

    def _scalar(self, node: yaml.ScalarNode, path: FieldPath) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            reason = (getattr(exc, "problem", None) or str(exc)).strip()
            if node.tag == _TIMESTAMP_TAG:
                self._problem(node, path, f"looks like a date but is not one ({reason}); quote it to make it text")
            else:
                self._problem(node, path, f"unsupported value: {reason} (scenarios are plain data)")
            return _INVALID
        if isinstance(value, str) and _SURROGATE.search(value):
            self._problem(node, path, "contains a lone surrogate escape (such as \"\\ud800\"): not valid Unicode text")
            return _INVALID
        return value

    def _problem(self, node: yaml.Node, path: FieldPath, message: str) -> None:
        line, column = _position(node)
        self.problems.append(Problem(self.source, line, column, format_path(path), message))


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _capped(problems: list[Problem], source: str) -> list[Problem]:
    """At most :data:`MAX_PROBLEMS` problems, the first ones by position, and a note of how many more."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    ordered = sorted(problems, key=lambda p: (p.source, p.line or 0, p.column or 0, p.field))
    note = Problem(source, None, None, "", f"{len(problems)} problems; the first {MAX_PROBLEMS} are listed")
    return [note] + ordered[:MAX_PROBLEMS]


def _parse_set_path(dotted: str) -> FieldPath:
    return tuple(int(part) if part.isdigit() else part for part in dotted.split("."))


def apply_override(marked: _Marked, dotted: str, value: Any, origin: str, *, hidden: bool = False) -> None:
    """Set ``dotted`` (e.g. ``stages.1.requests``) in the data; lists are indexed by number.

    ``hidden``: messages about this value must not quote it (see :func:`_set_origin`).
    """
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
        marked.hidden.discard(known)
    marked.origins[path] = origin
    if hidden:
        marked.hidden.add(path)


def _set_origin(key: str, raw: str) -> tuple[str, bool]:
    """How ``--set key=raw`` is named in messages, and whether its value must stay unquoted.

    The value is echoed only when it is short, printable, holds no secret
    reference and goes to a field that cannot carry a credential: a ``--set``
    of a header is how people pass tokens, and stderr ends up in CI logs.
    """
    shown_key = key if len(key) <= 2 * EXCERPT_CHARS and key.isprintable() else excerpt(key)
    hidden = (len(raw) > SHOWN_SET_VALUE_CHARS or not raw.isprintable() or "${" in raw
              or _secret_bearing(_parse_set_path(key)))
    return f"--set {shown_key}={_MASK if hidden else _without_userinfo(raw)}", hidden


def _secret_bearing(path: FieldPath) -> bool:
    """Whether a value at ``path`` may be a credential (a header, a body, a field named like a secret)."""
    return any(isinstance(part, str) and _SECRET_FIELDS.search(part) for part in path)


def _value_hidden(marked: _Marked, path: FieldPath) -> bool:
    """Whether messages about ``path`` must not quote its value."""
    return _secret_bearing(path) or any(path[:length] in marked.hidden for length in range(len(path) + 1))


def _without_userinfo(url: str) -> str:
    """``http://user:pw@host`` -> ``http://***@host``, for messages."""
    return re.sub(r"//[^/@\s]*@", f"//{_MASK}@", url)


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


def _message(error: dict, path: FieldPath, missing: str | None, show_input: bool = True) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = f" (got {excerpt(error.get('input'))})" if show_input else ""
    if kind == "extra_forbidden":
        unknown = path[-1] if path else "?"
        allowed = _model_fields_at(path[:-1])
        close = difflib.get_close_matches(str(unknown), allowed, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        return f"unknown field '{_key_text(unknown)}'{hint}"
    if kind == "missing":
        return "required field is missing"
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')}{got}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}{got}"
    if kind == "less_than":
        return f"must be < {ctx.get('lt')}{got}"
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')}{got}"
    if kind == "literal_error":
        value = error.get("input")
        hint = " (a number, not a quoted string)" if isinstance(value, str) and value.strip().isdigit() else ""
        return f"must be {ctx.get('expected')}{got}{hint}"
    if kind == "too_short":
        return "must not be empty"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of key: value pairs{got}"
    if kind == "list_type":
        return f"expected a list{got}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
        if not show_input:
            message = _scrubbed(message, error.get("input"))
    elif kind in ("int_type", "int_parsing", "int_from_float", "float_type", "float_parsing",
                  "string_type", "bool_type", "dict_type", "list_type", "model_type", "model_attributes_type"):
        message = f"{message[0].lower()}{message[1:]}{got}"
    return _clipped(message)


def _scrubbed(message: str, value: Any) -> str:
    """``message`` without ``value`` in it, quoted or not: for values messages must not show."""
    if isinstance(value, str) and value:
        message = message.replace(repr(value), _MASK).replace(value, _MASK)
    return message


def _clipped(message: str, limit: int = 8 * EXCERPT_CHARS) -> str:
    """A validator may quote a whole value; a message stays a line or two."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


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
                problems.append(Problem(*where, format_path(("outputs", name)),
                                        f"unknown reporter '{_key_text(name)}'{hint}; available: {_names(known)}"))
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
            try:
                reasons = missing_references(value, base_dir, path)
            except (OSError, ValueError) as exc:  # e.g. a ${file:...} name too long for the file system
                reasons = [_clipped(f"a secret reference cannot be checked: {getattr(exc, 'strerror', None) or exc}")]
            for reason in reasons:
                problems.append(Problem(*_locate(marked, path, source), format_path(path), reason))
    return problems


def _names(names: list[str], shown: int = 10) -> str:
    """Some names for a message: a generated file may have thousands."""
    listed = ", ".join(_key_text(name) for name in names[:shown])
    return listed + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def _text_or(value: Any, default: str) -> str:
    """A name as the run will use it: Pydantic rejects a name that is not text, so use the default meanwhile."""
    return value if isinstance(value, str) and value else default


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
    marked = _compose(_read_text(path, source), source)
    if not isinstance(marked.data, dict):
        line, column = marked.marks.get((), (1, 1))
        raise ScenarioError([Problem(source, line, column, "",
                                     "a scenario must be a YAML mapping starting with 'version: 1'")])
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            quotable = len(item) <= SHOWN_SET_VALUE_CHARS and item.isprintable() and not _secret_bearing((item,))
            shown = f", got {item!r}" if quotable else ""
            raise ScenarioError([Problem("--set", None, None, "", f"expected dotted.key=value{shown}")])
        origin, hidden = _set_origin(key.strip(), raw)
        apply_override(marked, key.strip(), _set_value(raw), origin, hidden=hidden)
    if target is not None:
        apply_override(marked, "target", target, f"--target {_without_userinfo(target)}")
    return validate_data(marked, source, known_reporters)


def _read_text(path: str | Path, source: str) -> str:
    """The file as text, read at most :data:`MAX_FILE_BYTES` (+1) bytes far: a FIFO or a huge file cannot stall us."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError([Problem(source, None, None, "", "file not found")])
    except OSError as exc:
        raise ScenarioError([Problem(source, None, None, "", f"cannot read file: {exc.strerror or exc}")])
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError([Problem(source, None, None, "", f"the file is larger than {MAX_FILE_BYTES // 1024} KiB, "
                                     "the most a scenario may be; load large bodies with ${file:PATH}")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line, column = before.count(b"\n") + 1, exc.start - (before.rfind(b"\n") + 1) + 1
        raise ScenarioError([Problem(source, line, column, "",
                                     f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8")])


def _set_value(raw: str) -> Any:
    """The value of ``--set key=raw``: one YAML value read within the loader's limits, else the text itself."""
    if not raw.strip():
        return ""
    try:
        loader = _BoundedLoader(raw)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError:
        return raw
    if node is None:
        return None
    builder = _Builder(loader, "--set")
    value = builder.build(node, ())
    return raw if builder.problems else value


def validate_data(marked: _Marked, source: str, known_reporters: Iterable[str] | None) -> Scenario:
    from .flowcheck import flow_problems
    from .tlscheck import tls_problems

    data = marked.data
    problems = _semantic_problems(data, marked, source, known_reporters)
    tables: dict = {}
    if isinstance(data, dict):
        flow_issues, tables = flow_problems(data, lambda path: _locate(marked, path, source), source)
        problems += flow_issues
        problems += tls_problems(data, lambda path: _locate(marked, path, source), source)
    scenario = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        reported = {(p.source, p.line, p.field) for p in problems}
        for error in exc.errors():
            path, missing = _data_path(data, tuple(error["loc"]))
            origin, line, column = _locate(marked, path, source)
            shown = path + ((missing,) if error["type"] == "missing" and missing else ())
            if error["type"] == "missing" and "version" in shown and len(shown) == 1:
                message = "required field is missing; a scenario starts with 'version: 1'"
            else:
                key_error = error["loc"][-1:] == ("[key]",)  # the input is a key: a name, not a secret
                message = _message(error, path, missing, show_input=key_error or not _value_hidden(marked, path))
            problem = Problem(origin, line, column, format_path(shown), message)
            if (problem.source, problem.line, problem.field) not in reported:
                reported.add((problem.source, problem.line, problem.field))
                problems.append(problem)  # a union reports each member's error; the first is enough
    if problems:
        raise ScenarioError(_capped(problems, source))
    assert scenario is not None
    scenario._sources.update(_field_sources(scenario, marked, source))
    scenario._tables.update(tables)  # read once, here; the compiler takes them from the scenario
    return scenario


def _field_sources(scenario: Scenario, marked: _Marked, source: str) -> dict:
    """"file:line" of the fields that later steps name in messages: thresholds, and engine and target."""
    sources = {}
    for path in [("thresholds", index) for index in range(len(scenario.thresholds))] + [("engine",), ("target",)]:
        origin, line, _ = _locate(marked, path, source)
        sources[path] = f"{origin}:{line}" if line is not None else origin
    return sources


def _threshold_problems(data: dict, marked: _Marked, source: str) -> list[Problem]:
    """A threshold naming a stage, request or flow that does not exist would silently never judge anything."""
    from runner.schemas.thresholds import parse_threshold

    from .flowcheck import step_lists

    stages = [_text_or((stage.get("name") if isinstance(stage, dict) else None), f"stage-{i + 1}")
              for i, stage in enumerate(data.get("stages") if isinstance(data.get("stages"), list) else [])]
    requests = []
    for _, steps in step_lists(data):
        for _, request in steps:
            if isinstance(request, dict) and "think" not in request:
                method = str(request.get("method", "GET")).upper()
                requests.append(_text_or(request.get("name"), f"{method} {request.get('path', '/')}"))
    # as Scenario.all_flows() names them: a plain 'flow:' list is the one flow 'default'
    if isinstance(data.get("flows"), list):
        flows = [str(named["name"]) for named in data["flows"] if isinstance(named, dict) and "name" in named]
    else:
        flows = ["default"] if isinstance(data.get("flow"), list) else []
    problems = []
    thresholds = data.get("thresholds")
    for index, text in enumerate(thresholds if isinstance(thresholds, list) else []):
        if not isinstance(text, str):
            continue  # Pydantic reports the type
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
            hint = f" (did you mean '{_key_text(close[0])}'?)" if close else ""
            problems.append(Problem(origin, line, column, f"thresholds[{index}]",
                                    f"no {parsed['scope']} named '{_key_text(parsed['target'])}'{hint}; "
                                    f"{parsed['scope']}s: {_names(known)}"))
    return problems
