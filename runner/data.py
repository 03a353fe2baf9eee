"""Data tables for virtual users: read a CSV or JSON Lines file once, hand out rows cheaply.

A table is read and checked entirely at load time, so a bad file is reported
before the run with the line to fix, and the run itself only indexes a tuple.
The loaded :class:`DataTable` is plain frozen data: it travels inside the plan
to worker processes by pickling, and each process makes its own
:class:`DataCursor`. Cursors need no locks because each process runs one
event loop; they coordinate across processes by arithmetic alone (process
*k* of *n* takes rows *k*, *k+n*, *k+2n*, ...), so no row is shared or
skipped without any message passing.

Limits: a data file may be at most :data:`MAX_FILE_BYTES` (256 MiB) and hold
at most :data:`MAX_ROWS` (10 million) rows. Every worker process holds the
whole table in memory, as Python objects that take several times the file's
size, so larger inputs belong in a database the target reads, not in the
load generator.

Nothing here imports Pydantic: the spec passed to :func:`load_table` is read
by attribute (``file``, ``mode``, ``per``), as :class:`runner.schemas.data.DataSpec`
provides.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: Largest data file accepted, in bytes.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Most rows accepted in one data file.
MAX_ROWS = 10_000_000

MODES = ("sequential", "random", "unique")
PER = ("vu", "iteration")

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_UTF8_BOM = b"\xef\xbb\xbf"


class DataFileError(Exception):
    """A data file cannot be used; ``line`` (1-based, in the data file) says where when it is inside it."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class DataTable:
    """The rows of one data file, in file order, plus how virtual users draw them.

    ``rows`` holds one tuple per row, values in ``columns`` order: strings for
    CSV, JSON values as parsed for JSON Lines. It is left out of ``repr`` so a
    table with millions of rows cannot flood a log or a traceback.
    """

    name: str
    path: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...] = field(repr=False)
    mode: str = "sequential"
    per: str = "vu"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown data mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.per not in PER:
            raise ValueError(f"unknown data 'per' {self.per!r}; use one of {', '.join(PER)}")

    def __len__(self) -> int:
        return len(self.rows)

    def column_index(self, name: str) -> int | None:
        """Position of column ``name`` in every row, or None when the table has no such column."""
        try:
            return self.columns.index(name)
        except ValueError:
            return None

    def describe(self) -> str:
        """One line for dry runs: ``users: data/users.csv, 1000 rows, columns user,password, unique per vu``."""
        count = len(self.rows)
        return (f"{self.name}: {self.path}, {count} row{'' if count == 1 else 's'},"
                f" columns {','.join(self.columns)}, {self.mode} per {self.per}")

    def share(self, process_index: int = 0, process_count: int = 1) -> int:
        """How many rows process ``process_index`` of ``process_count`` may use in unique mode."""
        _check_process(process_index, process_count)
        return len(range(process_index, len(self.rows), process_count))

    def cursor(self, process_index: int = 0, process_count: int = 1, seed: int = 0) -> "DataCursor":
        """A fresh row source for one worker process (see :class:`DataCursor` for each mode)."""
        _check_process(process_index, process_count)
        if self.mode == "sequential":
            return _SequentialCursor(self.rows, process_index, process_count)
        if self.mode == "random":
            return _RandomCursor(self.rows, random.Random(seed + process_index))
        return _UniqueCursor(self.rows, process_index, process_count)


def _check_process(process_index: int, process_count: int) -> None:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process {process_index} of {process_count}: need 0 <= index < count")


class DataCursor(ABC):
    """Hands out the rows of one table within one worker process.

    ``next()`` is called once per virtual user (``per: vu``) or once per flow
    iteration (``per: iteration``) and does constant work:

    * sequential: rows in file order, starting over after the last; process
      *k* of *n* starts at row *k* and steps by *n*, so that the processes
      together walk the file in order.
    * random: a uniformly drawn row from ``random.Random(seed + process_index)``,
      the same sequence for the same seed.
    * unique: process *k* of *n* takes rows *k*, *k+n*, *k+2n*, ... once each,
      so no row is used twice anywhere; then ``next()`` returns None and
      ``exhausted`` is true.

    ``used`` counts the rows handed out, for the report.
    """

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = 0

    @abstractmethod
    def next(self) -> tuple | None:
        """The next row for a user, or None when a unique table has none left for this process."""

    @property
    def exhausted(self) -> bool:
        """True when ``next()`` would return None (only ever in unique mode)."""
        return False

    @property
    def remaining(self) -> int | None:
        """Rows this process may still use, or None when rows never run out."""
        return None


class _SequentialCursor(DataCursor):
    __slots__ = ("_rows", "_count", "_step", "_position")

    def __init__(self, rows: tuple[tuple, ...], process_index: int, process_count: int):
        super().__init__()
        self._rows = rows
        self._count = len(rows)
        self._step = process_count % self._count or self._count
        self._position = process_index % self._count

    def next(self) -> tuple:
        row = self._rows[self._position]
        position = self._position + self._step
        self._position = position - self._count if position >= self._count else position
        self.used += 1
        return row


class _RandomCursor(DataCursor):
    __slots__ = ("_rows", "_choice")

    def __init__(self, rows: tuple[tuple, ...], rng: random.Random):
        super().__init__()
        self._rows = rows
        self._choice = rng.choice

    def next(self) -> tuple:
        self.used += 1
        return self._choice(self._rows)


class _UniqueCursor(DataCursor):
    __slots__ = ("_rows", "_count", "_step", "_position")

    def __init__(self, rows: tuple[tuple, ...], process_index: int, process_count: int):
        super().__init__()
        self._rows = rows
        self._count = len(rows)
        self._step = process_count
        self._position = process_index

    def next(self) -> tuple | None:
        position = self._position
        if position >= self._count:
            return None
        self._position = position + self._step
        self.used += 1
        return self._rows[position]

    @property
    def exhausted(self) -> bool:
        return self._position >= self._count

    @property
    def remaining(self) -> int:
        return len(range(self._position, self._count, self._step))


# --- reading ---------------------------------------------------------------------------------------------------


def load_table(name: str, spec: Any, base_dir: Path | str | None, *,
               max_bytes: int | None = None, max_rows: int | None = None) -> DataTable:
    """Read ``spec.file`` (relative to ``base_dir``) into a :class:`DataTable`, or raise :class:`DataFileError`.

    The file is read once, whole, and checked completely: a ragged CSV row or
    a JSON line with different keys fails here with its line number instead
    of surfacing as a wrong value in the middle of a run. ``max_bytes`` and
    ``max_rows`` default to :data:`MAX_FILE_BYTES` and :data:`MAX_ROWS`.
    """
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    max_rows = MAX_ROWS if max_rows is None else max_rows
    file_path = Path(spec.file).expanduser()
    if not file_path.is_absolute() and base_dir is not None:
        file_path = Path(base_dir) / file_path
    shown = str(file_path)
    reader = _READERS.get(file_path.suffix.lower())
    if reader is None:
        raise DataFileError(f"unsupported data file type {file_path.suffix or '(no extension)'!r};"
                            f" use one of {', '.join(_READERS)}", shown)
    data = _read_bytes(file_path, shown, max_bytes)
    text = _decode(data, shown)
    if not text.strip():
        raise DataFileError("the data file is empty", shown)
    columns, rows = reader(text, shown, max_rows)
    if not rows:
        raise DataFileError("no data rows" + (" (only a header line)" if file_path.suffix.lower() == ".csv"
                                              else ""), shown)
    return DataTable(name=name, path=shown, columns=columns, rows=tuple(rows), mode=spec.mode, per=spec.per)


def _read_bytes(path: Path, shown: str, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > max_bytes:  # refuse a huge file before reading any of it
                data = b""
                too_large = True
            else:
                # One byte past the limit still catches what stat() misjudges (pipes, /proc, a growing file).
                data = handle.read(max_bytes + 1)
                too_large = len(data) > max_bytes
    except FileNotFoundError:
        raise DataFileError("no such data file", shown) from None
    except IsADirectoryError:
        raise DataFileError("is a directory, not a data file", shown) from None
    except OSError as exc:
        raise DataFileError(f"cannot read the data file: {exc.strerror or exc}", shown) from None
    if too_large:
        raise DataFileError(f"the data file is larger than the limit of {_size(max_bytes)}; every worker process"
                            " holds the whole table in memory", shown)
    return data


def _size(count: int) -> str:
    if count >= 1024 * 1024 and count % (1024 * 1024) == 0:
        return f"{count // (1024 * 1024)} MiB"
    return f"{count} bytes"


def _decode(data: bytes, shown: str) -> str:
    if data.startswith(_UTF8_BOM):  # spreadsheet programs like to write one
        data = data[len(_UTF8_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = len(_LINE_BREAK.findall(data, 0, exc.start)) + 1
        raise DataFileError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} on this line cannot be decoded);"
                            " save the file as UTF-8", shown, line) from None


def _too_many_rows(shown: str, line: int, max_rows: int) -> DataFileError:
    return DataFileError(f"more than {max_rows:,} rows, the limit for one data file", shown, line)


def _read_csv(text: str, shown: str, max_rows: int) -> tuple[tuple[str, ...], list[tuple]]:
    # newline="" keeps line breaks inside quoted fields as written and lets csv count
    # physical lines itself, so reader.line_num stays the file's line number.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataFileError(f"malformed CSV header: {exc}", shown, 1) from None
    if not header:  # None cannot happen: load_table rejects an empty file first
        raise DataFileError("the first line is blank; a CSV data file starts with a header line naming the columns",
                            shown, 1)
    columns = tuple(column.strip() for column in header)
    for number, column in enumerate(columns, 1):
        if not column:
            raise DataFileError(f"column {number} of the header has no name", shown, 1)
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise DataFileError(f"column {column!r} appears twice in the header", shown, 1)
        seen.add(column)

    width = len(columns)
    rows: list[tuple] = []
    append = rows.append
    blank_line = None
    while True:
        start = reader.line_num + 1  # a quoted newline makes a row span lines; report where it starts
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            reason = str(exc)
            if "unexpected end of data" in reason:
                reason += " (a quoted field that starts on this line is never closed)"
            raise DataFileError(f"malformed CSV: {reason}", shown, start) from None
        if not row or (width > 1 and len(row) == 1 and not row[0].strip()):
            blank_line = blank_line or start
            continue
        if blank_line is not None:
            raise DataFileError("blank line between rows; only the end of the file may have blank lines"
                                " (write \"\" for an empty value)", shown, blank_line)
        if len(row) != width:
            raise DataFileError(f"this row has {len(row)} field{'' if len(row) == 1 else 's'} but the header"
                                f" has {width} column{'' if width == 1 else 's'} ({','.join(columns)})",
                                shown, start)
        if len(rows) >= max_rows:
            raise _too_many_rows(shown, start, max_rows)
        append(tuple(row))
    return columns, rows


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for the whole file: json.loads with any option builds a new decoder per call, 6x slower here.
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _read_jsonl(text: str, shown: str, max_rows: int) -> tuple[tuple[str, ...], list[tuple]]:
    columns: tuple[str, ...] | None = None
    keys: Any = None
    rows: list[tuple] = []
    append = rows.append
    blank_line = None
    loads = _DECODER.decode
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            blank_line = blank_line or number
            continue
        if blank_line is not None:
            raise DataFileError("blank line between rows; only the end of the file may have blank lines",
                                shown, blank_line)
        try:
            value = loads(line)
        except RecursionError:
            raise DataFileError("not valid JSON: nested too deeply", shown, number) from None
        except ValueError as exc:
            reason = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise DataFileError(f"not valid JSON: {reason}", shown, number) from None
        if not isinstance(value, dict):
            raise DataFileError(f"expected a JSON object {{...}} on each line, got {_json_kind(value)}",
                                shown, number)
        if columns is None:
            if not value:
                raise DataFileError("the first object has no keys, so the table would have no columns",
                                    shown, number)
            columns = tuple(value)
            keys = value.keys()
        if len(rows) >= max_rows:
            raise _too_many_rows(shown, number, max_rows)
        if tuple(value) == columns:  # the usual case: same keys, same order
            append(tuple(value.values()))
        elif value.keys() == keys:
            append(tuple(value[column] for column in columns))
        else:
            missing = [column for column in columns if column not in value]
            extra = [key for key in value if key not in keys]
            parts = []
            if missing:
                parts.append("missing " + ", ".join(map(repr, missing)))
            if extra:
                parts.append("unexpected " + ", ".join(map(repr, extra)))
            raise DataFileError(f"keys differ from the first object's ({', '.join(columns)}): {'; '.join(parts)}",
                                shown, number)
    return columns or (), rows


_READERS: dict[str, Callable[[str, str, int], tuple[tuple[str, ...], list[tuple]]]] = {
    ".csv": _read_csv,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
}
