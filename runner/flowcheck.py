"""Load-time checks of flows: every template field defined, every data file readable.

The loader calls :func:`flow_problems` on the raw scenario data (before
Pydantic), so each problem carries the ``file:line`` of the template or data
entry it concerns. A field is defined when it is a built-in, a generator, a
key of ``vars``, a column of a data table (``users.user``), or a capture made
by an *earlier* step of the same flow (``once`` steps come before ``steps``).
Data files are read here, once; the tables travel to the compiler on the
validated scenario.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable

from .errors import Problem
from .templates import BUILTINS, GENERATORS, field_kind, fields_of, unbalanced

Locate = Callable[[tuple], tuple]


def flow_problems(data: dict, locate: Locate, source: str) -> tuple[list[Problem], dict]:
    """Problems of every flow's templates and data files, and the tables read (name -> DataTable)."""
    problems: list[Problem] = []
    tables = _read_tables(data, locate, source, problems)
    columns = {f"{name}.{column}" for name, table in tables.items() for column in table.columns}
    variables = data.get("vars") if isinstance(data.get("vars"), dict) else {}
    for base, steps in step_lists(data):
        defined: set[str] = set()
        for path, step in steps:
            if not isinstance(step, dict):
                continue
            for field_path, text in step_templates(step):
                where = base + path + field_path
                problems += _field_problems(text, where, locate, variables, defined | columns, tables)
            capture = step.get("capture")
            if isinstance(capture, dict):
                defined |= {str(name) for name in capture}
    return problems, tables


def step_lists(data: dict):
    """(path prefix, [(step path, step)]) for the plain flow and each named flow."""
    flow = data.get("flow")
    if isinstance(flow, list):
        yield ("flow",), [((index,), step) for index, step in enumerate(flow)]
    flows = data.get("flows")
    if isinstance(flows, list):
        for index, named in enumerate(flows):
            if not isinstance(named, dict):
                continue
            steps = []
            for part in ("once", "steps"):
                if isinstance(named.get(part), list):
                    steps += [((part, position), step) for position, step in enumerate(named[part])]
            yield ("flows", index), steps


def step_templates(step: dict):
    """(field path, text) of every template in one step."""
    if isinstance(step.get("path"), str):
        yield ("path",), step["path"]
    for key in ("headers", "query", "form"):
        if isinstance(step.get(key), dict):
            for name, value in step[key].items():
                if isinstance(value, str):
                    yield (key, name), value
    if isinstance(step.get("body"), str):
        yield ("body",), step["body"]
    if "json" in step:
        yield from _json_texts(step["json"], ("json",))


def _json_texts(value: Any, path: tuple):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_texts(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_texts(item, path + (index,))
    elif isinstance(value, str):
        yield path, value


def _field_problems(text: str, where: tuple, locate: Locate, variables: dict, defined: set[str],
                    tables: dict) -> list[Problem]:
    from .loader import format_path

    if where[-1] == "path" and unbalanced(text):  # elsewhere a stray brace is literal text (JSON, say)
        return [Problem(*locate(where), format_path(where),
                        "unbalanced '{' or '}' in the path template (or a brace around something that is not a "
                        "field name); fields look like '/item/{seq}'")]
    problems = []
    for name in fields_of(text):
        if field_kind(name, variables, defined) is not None:
            continue
        problems.append(Problem(*locate(where), format_path(where), _undefined(name, variables, defined, tables)))
    return problems


def _undefined(name: str, variables: dict, defined: set[str], tables: dict) -> str:
    from .loader import _key_text  # names are quoted as short excerpts, like every loader message

    table, dot, column = name.partition(".")
    if dot and table in tables:
        columns = ", ".join(_key_text(c) for c in tables[table].columns[:10])
        return f"data table '{table}' has no column '{_key_text(column)}' (its columns: {columns})"
    known = sorted(set(BUILTINS) | {str(k) for k in variables} | defined | {"uuid", "timestamp"})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{{{_key_text(close[0])}}}'?)" if close else ""
    return (f"template field '{{{_key_text(name)}}}' is not defined{hint}; use a built-in ({', '.join(BUILTINS)}), "
            f"a generator ({', '.join(GENERATORS)}), a key of 'vars', a data column (table.column) "
            f"or a value captured by an earlier step")


def _read_tables(data: dict, locate: Locate, source: str, problems: list[Problem]) -> dict:
    from runner.schemas.data import check_table_name

    from .data import DataFileError, load_table

    specs = data.get("data")
    if not isinstance(specs, dict):
        return {}
    base_dir = Path(source).parent
    tables = {}
    for name, spec in specs.items():
        reason = check_table_name(name)
        if reason is not None:
            problems.append(Problem(*locate(("data", name)), f"data.{name}", reason))
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
            continue  # the schema reports it
        try:
            tables[name] = load_table(name, _Spec(spec), base_dir)
        except DataFileError as exc:
            if exc.line is not None and exc.path is not None:
                problems.append(Problem(exc.path, exc.line, None, "", exc.message))
            else:
                problems.append(Problem(*locate(("data", name, "file")), f"data.{name}.file", exc.message))
        except ValueError:
            continue  # a bad mode or per: the schema reports it
    return tables


class _Spec:
    """The raw ``data.NAME`` mapping seen through the attributes load_table reads."""

    def __init__(self, raw: dict):
        self.file = raw.get("file")
        self.mode = raw.get("mode", "sequential")
        self.per = raw.get("per", "vu")
