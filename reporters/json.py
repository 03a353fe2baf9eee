"""JSON reporter: the documented result shape (``schemas/result.schema.json``)."""

from __future__ import annotations

from typing import Any

import orjson


class JsonReporter:
    name = "json"

    def render(self, result: dict[str, Any]) -> bytes:
        return orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
