"""Data files that feed virtual users rows of values (the scenario's ``data`` section).

A scenario names each table once::

    data:
      users:
        file: data/users.csv
        mode: unique
        per: vu

and templates refer to its columns as ``{users.user}``. Only the declaration
lives here; reading the file and handing out rows is :mod:`runner.data`, so
that nothing on the request path imports Pydantic.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Literal

from pydantic import Field, field_validator

from .base import Model

#: File name endings the reader understands; the format follows from the ending.
DATA_FILE_SUFFIXES = (".csv", ".jsonl", ".ndjson")
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DataSpec(Model):
    """One data table: a file of rows, and how virtual users draw from it."""

    file: str = Field(
        description="Path of the data file, relative to the scenario file. .csv (the first row names the"
                    " columns) or .jsonl / .ndjson (one JSON object per line).")
    mode: Literal["sequential", "random", "unique"] = Field(
        "sequential",
        description="sequential: rows in file order, starting over at the end; random: rows drawn at random"
                    " (reproducible with the scenario's seed); unique: every row used at most once across all"
                    " virtual users and worker processes, and users that find none left stop.")
    per: Literal["vu", "iteration"] = Field(
        "vu",
        description="vu: each virtual user draws one row when it starts and keeps it; iteration: a new row"
                    " for every pass through the flow.")

    @field_validator("file")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("file must name a data file, e.g. data/users.csv")
        suffix = PurePath(value).suffix.lower()
        if suffix not in DATA_FILE_SUFFIXES:
            raise ValueError(f"unsupported data file type {suffix or '(no extension)'!r} in {value!r};"
                             f" use one of {', '.join(DATA_FILE_SUFFIXES)}")
        return value


def check_table_name(name: object) -> str | None:
    """Why ``name`` cannot name a data table, or None when it can.

    Templates write ``{table.column}``, so a table name has to be one plain
    identifier: a dot, dash or space in it would make the reference ambiguous.
    """
    if not isinstance(name, str):
        return f"a data table name must be text (got {name!r})"
    if not _TABLE_NAME.fullmatch(name):
        return (f"invalid data table name {name!r}: use letters, digits and underscores,"
                " not starting with a digit (templates refer to it as {name.column})")
    return None
