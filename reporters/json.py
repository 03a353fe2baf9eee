"""JSON reporter: the documented result shape (``schemas/result.schema.json``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from runner.result import RunResult


class JsonReporter:
    name = "json"

    def render(self, result: "RunResult") -> bytes:
        return orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"
