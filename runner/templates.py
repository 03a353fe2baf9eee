"""Request templates, split once at compile time and rendered per request by a join.

A template is text with ``{field}`` parts. A field is a built-in
(``seq``, ``worker``, ``vu``, ``iteration``), a generator (``uuid``,
``timestamp``, ``randint:MIN:MAX``), a key of the scenario's ``vars`` (turned
into text right here), a data column (``users.user``) or a value an earlier
step captured (``token``). ``${env:NAME}`` / ``${file:PATH}`` secret
references are resolved here too, into literal text that is never parsed
again, so a ``{`` inside a secret is just a character.

Rendering takes the virtual user as its context: it has ``seq``, ``worker``,
``number``, ``iteration`` and a ``vars`` dict (captures and data columns).
Each piece of a compiled template is either a ``str`` or a picklable callable
of the user, so plans still travel to worker processes.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import orjson

from .secrets import resolve

#: ``{field}`` (not ``${...}``) or a ``${...}`` secret reference, in one pass. A field is a name
#: (``seq``, ``users.user``, ``randint:1:9``); any other brace is literal text, so a JSON string
#: in a header or body stays as written.
_TOKEN = re.compile(r"\$\{[^{}]*\}|\{([A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z0-9_\-]+)*)\}")
_RANDINT = re.compile(r"randint:(-?\d+):(-?\d+)\Z")
BUILTINS = ("seq", "worker", "vu", "iteration")
GENERATORS = ("uuid", "timestamp", "randint:MIN:MAX")


def fields_of(text: str) -> list[str]:
    """The ``{field}`` names in ``text``, in order (secret references excluded)."""
    return [m.group(1) for m in _TOKEN.finditer(text) if m.group(1) is not None]


def unbalanced(text: str) -> bool:
    """Braces left over once fields and secret references are taken out (``{seq``, ``seq}``, ``{a b}``)."""
    rest = _TOKEN.sub("", text)
    return "{" in rest or "}" in rest


def field_kind(name: str, variables: dict, defined: set[str]) -> str | None:
    """What ``name`` refers to, or None when nothing defines it.

    ``defined`` holds captures of earlier steps and ``table.column`` names.
    """
    if name in BUILTINS:
        return "builtin"
    if name in ("uuid", "timestamp") or _RANDINT.match(name):
        return "generator"
    if name in variables:
        return "var"
    if name in defined:
        return "runtime"
    return None


# -- per-request field renderers (module functions, so partials pickle) ------------------------

def _seq(user) -> str:
    return str(user.seq)


def _worker(user) -> str:
    return str(user.worker)


def _vu(user) -> str:
    return str(user.number)


def _iteration(user) -> str:
    return str(user.iteration)


def _uuid(user) -> str:
    return str(uuid.uuid4())


def _timestamp(user) -> str:
    return str(time.time_ns() // 1_000_000)


def _randint(low: int, high: int, user) -> str:
    return str(random.randint(low, high))


def _runtime(name: str, user) -> str:
    value = user.vars[name]
    return value if type(value) is str else _text(value)


def _text(value: Any) -> str:
    """A captured or data value as template text: JSON for structures and booleans, str() otherwise."""
    if isinstance(value, (dict, list, bool)) or value is None:
        return orjson.dumps(value).decode()
    return str(value)


#: Renderers whose output is always digits (a path using only these needs no quoting check).
DIGIT_FIELDS = frozenset({_seq, _worker, _vu, _iteration})
_BUILTIN_RENDERERS = {"seq": _seq, "worker": _worker, "vu": _vu, "iteration": _iteration,
                      "uuid": _uuid, "timestamp": _timestamp}


def _field_renderer(name: str, variables: dict) -> Callable | str:
    if name in _BUILTIN_RENDERERS:
        return _BUILTIN_RENDERERS[name]
    match = _RANDINT.match(name)
    if match:
        low, high = int(match.group(1)), int(match.group(2))
        return partial(_randint, min(low, high), max(low, high))
    if name in variables:
        return str(variables[name])
    return partial(_runtime, name)


def _constant_text(text: str, user) -> str:
    return text


def _around_seq(before: str, after: str, user) -> str:
    return f"{before}{user.seq}{after}"


def _joined(pieces: tuple, user) -> str:
    return "".join([p if type(p) is str else p(user) for p in pieces])


class Template:
    """A compiled template: literal strings and per-user renderers, in order.

    ``render(user)`` is chosen once, when the template is built: a constant
    returns its text, one field is its renderer called directly, the common
    ``/page/{seq}`` shape is one f-string, and anything else is a join.
    Templates are immutable and pickle by their pieces.
    """

    __slots__ = ("source", "pieces", "render")

    def __init__(self, source: str, pieces: tuple):
        self.source = source
        self.pieces = pieces
        self.render = _renderer(pieces)

    def __reduce__(self):
        return (Template, (self.source, self.pieces))

    def __eq__(self, other) -> bool:
        return isinstance(other, Template) and (self.source, self.pieces) == (other.source, other.pieces)

    def __hash__(self) -> int:
        return hash((self.source, self.pieces))

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    @property
    def constant(self) -> str | None:
        """The text when nothing varies per request, else None."""
        if not self.pieces:
            return ""
        if len(self.pieces) == 1 and type(self.pieces[0]) is str:
            return self.pieces[0]
        return None

    @property
    def fields(self) -> tuple:
        return tuple(p for p in self.pieces if type(p) is not str)


def _renderer(pieces: tuple) -> Callable:
    if not pieces:
        return partial(_constant_text, "")
    if len(pieces) == 1:
        piece = pieces[0]
        return partial(_constant_text, piece) if type(piece) is str else piece
    texts = [p for p in pieces if type(p) is str]
    fields = [p for p in pieces if type(p) is not str]
    if fields == [_seq] and len(pieces) - len(texts) == 1 and len(pieces) <= 3:
        before = pieces[0] if type(pieces[0]) is str else ""
        after = pieces[-1] if type(pieces[-1]) is str else ""
        return partial(_around_seq, before, after)
    return partial(_joined, pieces)


def compile_template(text: str, variables: dict, secrets: set[str], base_dir: Path | None) -> Template:
    """Split ``text`` once; secrets become literal text, ``vars`` are substituted now."""
    pieces: list = []
    position = 0
    for match in _TOKEN.finditer(text):
        pieces.append(text[position:match.start()])
        name = match.group(1)
        if name is None:  # a ${...} reference: its value is literal text from here on
            pieces.append(resolve(match.group(0), secrets, base_dir))
        else:
            pieces.append(_field_renderer(name, variables))
        position = match.end()
    pieces.append(text[position:])
    return Template(text, merge_literals(pieces))


def merge_literals(pieces: list) -> tuple:
    """Adjacent literal strings joined and empty ones dropped: the fewest pieces to join per request."""
    merged: list = []
    for piece in pieces:
        if type(piece) is str and merged and type(merged[-1]) is str:
            merged[-1] += piece
        elif piece != "":
            merged.append(piece)
    return tuple(merged)


# -- JSON bodies -------------------------------------------------------------------------------

def _whole_value(name: str, user) -> bytes:
    """A JSON string that is exactly one field keeps the value's own type: ``"{item}"`` -> 42."""
    return orjson.dumps(user.vars[name])


def _json_string(template: Template, user) -> bytes:
    return orjson.dumps(template.render(user))


@dataclass(frozen=True, slots=True)
class JsonTemplate:
    """A JSON body: constant bytes around the rendered parts, serialised once at compile time."""

    pieces: tuple  # bytes | callable(user) -> bytes

    @property
    def constant(self) -> bytes | None:
        if len(self.pieces) == 1 and type(self.pieces[0]) is bytes:
            return self.pieces[0]
        return None if self.pieces else b""

    def render(self, user) -> bytes:
        return b"".join([p if type(p) is bytes else p(user) for p in self.pieces])


def compile_json(value: Any, variables: dict, secrets: set[str], base_dir: Path | None) -> JsonTemplate:
    """Serialise ``value`` with a marker for every templated string, then split the bytes at the markers."""
    holes: list[Callable] = []
    marker = "\x00hole-%d\x00"

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {str(k): walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            template = compile_template(node, variables, secrets, base_dir)
            constant = template.constant
            if constant is not None:
                return constant
            fields = fields_of(node)
            if len(template.pieces) == 1 and len(fields) == 1 and field_kind(fields[0], variables, set()) is None:
                holes.append(partial(_whole_value, fields[0]))
            else:
                holes.append(partial(_json_string, template))
            return marker % (len(holes) - 1)
        return node

    encoded = orjson.dumps(walk(value))
    pieces: list = []
    position = 0
    for match in re.finditer(rb'"\\u0000hole-(\d+)\\u0000"', encoded):
        pieces.append(encoded[position:match.start()])
        pieces.append(holes[int(match.group(1))])
        position = match.end()
    pieces.append(encoded[position:])
    return JsonTemplate(tuple(p for p in pieces if p != b""))
